/* preflight: before a worker creates anything (the lease table, leases), it
 * checks that every configured stream can be read: the source lists its
 * shards. A stream that does not exist, an endpoint that is not the
 * service, credentials that are refused, or a source that cannot be reached
 * in PREFLIGHT_TRIES tries (PREFLIGHT_MAX_S at most): the worker exits 1 and
 * says which stream and why. Runs the loop itself until it knows, before
 * anything else is started on it. */
#ifndef SHARDRUN_PREFLIGHT_H
#define SHARDRUN_PREFLIGHT_H

#include "base/errbuf.h"
#include "config/config.h"
#include "source/source.h"

struct ev_loop;

/* 0 when every stream answered, -1 with err naming the stream otherwise. */
int preflight_streams(struct ev_loop *loop, source_t *src, const config_t *cfg, errbuf_t *err);

/* One stream (a configured stream, or an output's): asks src for its
 * shards, running the loop until it answers, and tries again while the
 * answer is "for now" (PREFLIGHT_TRIES, PREFLIGHT_PAUSE_S apart). Returns
 * the last answer (SOURCE_OK, SOURCE_ENOTFOUND, ...; no answer within
 * PREFLIGHT_MAX_S is SOURCE_ERETRY); msg (n bytes) says why, *shards how
 * many it has. */
source_err_t preflight_stream(struct ev_loop *loop, source_t *src, const char *stream, char *msg, size_t n,
                              size_t *shards);

#define PREFLIGHT_TRIES 3
#define PREFLIGHT_PAUSE_S 1.0
#define PREFLIGHT_MAX_S 30.0

#endif
