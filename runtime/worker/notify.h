/* notify: tells a service manager (systemd, Type=notify) how the worker is
 * doing, through libsystemd's sd_notify:
 *   READY=1      once, after the first lease scan (the worker knows its shards)
 *   WATCHDOG=1   from a timer on the worker's loop, at half of WatchdogSec:
 *                a loop that hangs stops the pings, and systemd restarts it
 *   STOPPING=1   on a graceful stop, with EXTEND_TIMEOUT_USEC covering
 *                shutdown_grace_ms, so a longer grace than the unit's
 *                TimeoutStopSec is still waited for
 *   STATUS=...   one line for `systemctl status`
 * Without NOTIFY_SOCKET (not started by systemd) every call does nothing;
 * without WATCHDOG_USEC there is no timer. */
#ifndef SHARDRUN_NOTIFY_H
#define SHARDRUN_NOTIFY_H

#include <ev.h>
#include <stdint.h>

typedef struct notify {
    struct ev_loop *loop;
    ev_timer watchdog;
    int ready;        /* READY=1 was sent */
    char status[256]; /* the last STATUS= sent, to send changes only */
} notify_t;

/* Reads the environment and starts the watchdog timer if systemd asked for
 * one. `n` is embedded in its owner and lives until notify_stop. */
void notify_start(notify_t *n, struct ev_loop *loop);
/* READY=1 the first time, with a STATUS= line; later calls send the
 * STATUS= line if it changed. */
void notify_ready(notify_t *n, const char *status);
/* STOPPING=1 and the time the stop may take (grace_ms + a margin). */
void notify_stopping(notify_t *n, int64_t grace_ms, const char *status);
/* Stops the watchdog timer. */
void notify_stop(notify_t *n);

#endif
