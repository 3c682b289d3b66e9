/* metrics_server: /metrics, /healthz and /readyz over HTTP (libmicrohttpd),
 * for a worker whose config has metrics = { listen = ... }.
 *
 * Threads. The registry (base/metrics.h) belongs to the loop thread and is
 * never read by another. The server's threads (libmicrohttpd's, one per
 * connection, at most METRICS_SERVER_MAX_CONNECTIONS) see only what the
 * loop hands over, under `mu` (metrics_server.c):
 *   - /metrics: the handler asks the loop for a rendering (ev_async) and
 *     waits for it at most loop_stall_ms; the loop renders between two
 *     events and publishes the text as an immutable, reference-counted
 *     snapshot (the swap under `mu` is a pointer assignment, so the loop
 *     never waits on a scrape). If the loop does not answer in time, the
 *     last snapshot is served; shardrun_metrics_snapshot_age_seconds says
 *     how old it is. The process_* families are read by the handler itself
 *     from /proc (base/procstat.h).
 *   - /healthz: a timer on the loop (every loop_stall_ms / 4, 25 to 500
 *     ms) stores the time it fired (an atomic); 200 while the last one is
 *     within loop_stall_ms, else 503.
 *     Answered at once, without waiting on the loop.
 *   - /readyz: at each of those turns the loop asks the worker whether it
 *     is ready and stores the answer (and why not) under `mu`; 200 or 503
 *     with the reason as the body.
 * Anything else is 404. */
#ifndef SHARDRUN_METRICS_SERVER_H
#define SHARDRUN_METRICS_SERVER_H

#include <ev.h>
#include <stddef.h>

#include "base/errbuf.h"
#include "base/metrics.h"
#include "config/config.h"

#define METRICS_SERVER_MAX_CONNECTIONS 16

typedef struct metrics_server metrics_server_t;

/* The worker's readiness, asked on the loop thread at each heartbeat: 1 if
 * ready, else 0 with why filled (one line: "starting: ...", "draining"). */
typedef int (*metrics_ready_fn)(void *ud, char *why, size_t whysz);

/* Binds cfg->host:port and starts serving. registry is the loop's; it
 * must outlive the server. NULL with err set when the address cannot be
 * bound (in use, not on this host). Caller owns the server:
 * metrics_server_free, on the loop thread. */
metrics_server_t *metrics_server_start(struct ev_loop *loop, metrics_t *registry, const config_metrics_t *cfg,
                                       metrics_ready_fn ready, void *ud, errbuf_t *err);
/* The port bound (the OS's choice when the config said 0). */
int metrics_server_port(const metrics_server_t *ms);
/* Stops serving: requests waiting for the loop are answered with the last
 * snapshot, the threads are joined. NULL does nothing. */
void metrics_server_free(metrics_server_t *ms);

#endif
