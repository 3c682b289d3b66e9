/* shardsync: keeps the lease table in step with the stream's shards.
 *
 * Scans the lease table, then lists the shards of every configured stream
 * (in that order: see shardsync_on_table), creates a lease for each shard
 * that has none, and deletes the leases of finished parents once all their
 * children have started (moved past their initial position). Runs every
 * shard_sync_interval and after each shard end, on the loop thread.
 *
 * Parents come first: a child's create is sent only once its parents'
 * creates (in the same run) succeeded, so no table ever holds a child
 * without its parents. A run whose scan is older than lease_duration sends
 * no more creates (what it saw missing may have been created, finished and
 * deleted since). A child whose parent row is missing waits, unless the
 * last listing of the stream no longer shows that parent (gone past
 * retention) or the child has started already.
 *
 * A row under one of this stream's lease keys that names another stream
 * (a stream renamed under the same application) stops the worker at start
 * with status 2 and says what to do; later it is logged and skipped.
 *
 * Which shards get leases the first time a stream is seen:
 *   TRIM_HORIZON, AT_TIMESTAMP: every shard, oldest ancestors first;
 *   LATEST: the open shards only, at LATEST.
 * Later (new children after a split or merge): TRIM_HORIZON, so a child is
 * read from its first record once its parents are done. A closed shard whose
 * descendant already has a lease is never given one again (it was finished
 * and cleaned up); if its row comes back anyway (a create sent before it
 * finished, carried out after its row was deleted), it is never run and is
 * deleted again. */
#ifndef SHARDRUN_SHARDSYNC_H
#define SHARDRUN_SHARDSYNC_H

#include "base/sched.h"
#include "config/config.h"
#include "lease/lease.h"
#include "source/source.h"

typedef struct shardsync shardsync_t;

/* Caller owns it: shardsync_free(). sched (its clock), source, store and cfg
 * stay the caller's. */
/* synced: after each run. failed (may be NULL): before any run succeeded,
 * a stream could not be listed with a fatal error (no credentials, no such
 * stream: status 1), or the lease table holds another stream's rows under
 * this stream's keys (status 2, a configuration error); the worker cannot
 * start. */
shardsync_t *shardsync_new(sched_t *sched, source_t *source, lease_store_t *store, const config_t *cfg,
                           void (*synced)(void *ud), void (*failed)(void *ud, int status, const char *msg), void *ud);
void shardsync_free(shardsync_t *ss);
void shardsync_run(shardsync_t *ss);      /* no-op while a run is in progress (it re-runs after) */
int shardsync_busy(const shardsync_t *ss);
int64_t shardsync_runs(const shardsync_t *ss);   /* completed runs */

/* The lease key of a shard: the shard id when the config has one stream (the
 * KCL's single-stream form), "stream:shard" when it has several. */
char *shardsync_lease_key(const config_t *cfg, const char *stream, const char *shard);
/* The stream a lease row belongs to (its streamName, or the only stream). */
const char *shardsync_lease_stream(const config_t *cfg, const lease_t *l);
/* 1 if l may start as far as its parents go: it has started already, or
 * every parent's row is at SHARD_END, or has no row and is no longer listed
 * by the stream (gone past retention). A parent without a row that the
 * stream still lists, or before the first listing, blocks. */
int shardsync_parents_done(const shardsync_t *ss, const lease_t *l, const lease_list_t *all);
/* The same from the table alone (status): parents without a row are not judged. */
int shardsync_parent_rows_done(const config_t *cfg, const lease_t *l, const lease_list_t *all);
/* 1 if l is the row of a finished shard that came back: it has not started,
 * yet a row of `all` that started names it as a parent, or a row of one of
 * its descendants (as the stream was last listed) started: a child starts
 * only once its parents finished. A create sent before the shard finished (from
 * a scan that did not show its row yet) was carried out after the finished
 * row was deleted. Such a row is never run (it would process the shard all
 * over again, after its children); the next sync deletes it. The first call
 * for a table indexes it (O(n log n)); call shardsync_table_gone before
 * that table is freed. */
int shardsync_resurrected(shardsync_t *ss, const lease_t *l, const lease_list_t *all);
/* `all` is about to be freed: forget the index built from it (NULL: any). */
void shardsync_table_gone(shardsync_t *ss, const lease_list_t *all);

#endif
