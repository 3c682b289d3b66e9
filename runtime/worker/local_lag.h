/* local_lag: shardrun_records_behind{stream, shard} for a local source: the
 * records after each owned shard's checkpoint, as `shardrun status` counts
 * them. A count walks the shard's backlog in SQLite, so it never runs on the
 * loop: the worker lists its shards (stream, shard, checkpoint), a thread of
 * its own counts them over its own connection to the stream file, and the
 * loop sets the gauges with the answers. One count at a time; a shard no
 * longer owned loses its series. Only with metrics on and a local source.
 *
 * Cost: a count is as long as the backlog (about 60 ns a record), so the
 * next one waits LOCAL_LAG_INTERVAL_S or LOCAL_LAG_PACE times as long as
 * the last took, whichever is longer: the counting thread stays under 1% of
 * a core however deep the backlog (10 M records behind: a count every
 * minute or so). */
#ifndef SHARDRUN_LOCAL_LAG_H
#define SHARDRUN_LOCAL_LAG_H

#include <stddef.h>

#include "base/metrics.h"

struct ev_loop;

#define LOCAL_LAG_INTERVAL_S 5.0
#define LOCAL_LAG_PACE       100.0

typedef struct local_lag local_lag_t;

typedef struct local_lag_shard {
    const char *stream, *shard, *checkpoint; /* borrowed for the call */
} local_lag_shard_t;

/* Fills out (up to max) with the shards owned now; returns how many there are
 * (more than max: the rest is left out). Loop thread. */
typedef size_t (*local_lag_list_fn)(void *ud, local_lag_shard_t *out, size_t max);

/* NULL when the thread cannot start (the gauges are then missing, nothing
 * else). path: the stream file. Caller owns it: local_lag_free. */
local_lag_t *local_lag_new(struct ev_loop *loop, metrics_t *registry, const char *path, local_lag_list_fn list,
                           void *ud);
/* Waits for a count in progress (bounded by one pass over the backlogs). */
void local_lag_free(local_lag_t *ll);

#endif
