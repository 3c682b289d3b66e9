/* doorbell: wake-ups for the readers of a local stream file, so a caught-up
 * reader learns of new records without polling for them.
 *
 * A writer, once a transaction that added records to a shard (or closed it)
 * has committed, "rings" that shard: it updates the timestamps of one empty
 * file per shard in a folder beside the stream file,
 *
 *     <stream file>-wake/<shard row id>
 *
 * and inotify tells every process watching the folder, by file name, which
 * shard it was. The ring comes after the commit, so a reader woken by it
 * sees the records. (The stream file's own WAL cannot serve: SQLite writes
 * the WAL before the commit is visible, then syncs it, so a reader woken by
 * the WAL's write would often find nothing yet, and no second event comes.)
 *
 * Best effort on both sides, never relied upon: a ring that fails (no
 * permission, a full disk), one that never comes (a writer that died between
 * its commit and the ring, a writer that is not shardrun) or a notification
 * the kernel dropped (queue overflow: then every shard is woken) only leaves
 * a reader to its next poll. Readers keep polling, and a wake-up may be
 * spurious. */
#ifndef SHARDRUN_DOORBELL_H
#define SHARDRUN_DOORBELL_H

#include <stddef.h>
#include <stdint.h>

#include "base/errbuf.h"

struct ev_loop;

/* Rings the shards with row ids sids[0..n) of the stream file at path.
 * Synchronous, any thread; errors are ignored (see above). */
void doorbell_ring(const char *stream_path, const int64_t *sids, size_t n);

typedef struct doorbell doorbell_t;

/* sid: the shard rung, or -1 when any shard may have changed (notifications
 * were lost). Called on the loop thread. */
typedef void (*doorbell_cb)(void *ud, int64_t sid);

/* Watches the doorbells of the stream file at path (creating their folder
 * if needed). NULL with err set when it cannot (no inotify, no permission to
 * create the folder): the caller polls. Caller owns the result:
 * doorbell_close(). */
doorbell_t *doorbell_open(struct ev_loop *loop, const char *stream_path, doorbell_cb cb, void *ud, errbuf_t *err);
void doorbell_close(doorbell_t *d);

#endif
