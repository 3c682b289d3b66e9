/* status_watch: `shardrun status --watch`, a live view of every shard.
 *
 * Every second: the lease table (either store, read as `status` reads it)
 * and the owners' own words in each row (state, millisBehind, counters,
 * last error, written with every renewal), one line per shard: stream,
 * shard, owner, state (processing / retrying / halted / idle / ended, or
 * unowned / waiting / invalid), lag (records behind on the local source,
 * else the owner's millisBehind), records/s (from the owner's records
 * counter over the last ten seconds), last error; then a totals line. On a
 * terminal it redraws in place (the alternate screen) and quits on q or
 * Ctrl-C, leaving the terminal as it was; otherwise it writes one frame
 * after another until SIGINT/SIGTERM. */
#ifndef SHARDRUN_STATUS_WATCH_H
#define SHARDRUN_STATUS_WATCH_H

#include <stdio.h>

#include "config/config.h"

/* Runs until quit. Returns the exit status: 0, or 1 when the last read of
 * the lease store failed. */
int status_watch(const config_t *cfg, FILE *out);

#endif
