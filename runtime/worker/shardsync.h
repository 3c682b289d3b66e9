/* shardsync: keeps the lease table in step with the stream's shards.
 *
 * Lists the shards of every configured stream, creates a lease for each
 * shard that has none (parents before children), and deletes the leases of
 * finished parents once all their children have started. Runs every
 * shard_sync_interval and after each shard end, on the loop thread.
 *
 * Which shards get leases the first time a stream is seen:
 *   TRIM_HORIZON, AT_TIMESTAMP: every shard, oldest ancestors first;
 *   LATEST: the open shards only, at LATEST.
 * Later (new children after a split or merge): TRIM_HORIZON, so a child is
 * read from its first record once its parents are done. A closed shard whose
 * descendant already has a lease is never given one again (it was finished
 * and cleaned up). */
#ifndef SHARDRUN_SHARDSYNC_H
#define SHARDRUN_SHARDSYNC_H

#include "config/config.h"
#include "lease/lease.h"
#include "source/source.h"

typedef struct shardsync shardsync_t;

/* Caller owns it: shardsync_free(). source, store and cfg stay the caller's. */
/* synced: after each run. failed (may be NULL): a stream could not be
 * listed with a fatal error (no credentials, no such stream) before any run
 * succeeded, so the worker cannot start. */
shardsync_t *shardsync_new(source_t *source, lease_store_t *store, const config_t *cfg,
                           void (*synced)(void *ud), void (*failed)(void *ud, const char *msg), void *ud);
void shardsync_free(shardsync_t *ss);
void shardsync_run(shardsync_t *ss);      /* no-op while a run is in progress (it re-runs after) */
int shardsync_busy(const shardsync_t *ss);
int64_t shardsync_runs(const shardsync_t *ss);   /* completed runs */

/* The lease key of a shard: the shard id when the config has one stream (the
 * KCL's single-stream form), "stream:shard" when it has several. */
char *shardsync_lease_key(const config_t *cfg, const char *stream, const char *shard);
/* The stream a lease row belongs to (its streamName, or the only stream). */
const char *shardsync_lease_stream(const config_t *cfg, const lease_t *l);
/* 1 if every parent of l has finished (checkpoint SHARD_END) or is gone. */
int shardsync_parents_done(const config_t *cfg, const lease_t *l, const lease_list_t *all);

#endif
