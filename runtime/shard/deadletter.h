/* deadletter: where records go that the error policy gives up on.
 *
 * Each failed record becomes one JSON line: stream, shard, sequenceNumber,
 * subSequenceNumber, partitionKey, data (base64), approximateArrivalTimestamp,
 * error, traceback, attempts, worker, time. Lines go to a JSONL file (flushed
 * and fsync'd before the writer answers, so the checkpoint may move past
 * them; rotated by size) or, as record data, to a stream of the source.
 * A write that fails returns -1: the shard must not checkpoint past them. */
#ifndef SHARDRUN_DEADLETTER_H
#define SHARDRUN_DEADLETTER_H

#include <stddef.h>
#include <stdint.h>

#include "record/batch.h"
#include "base/buf.h"
#include "config/config.h"
#include "base/errbuf.h"

struct ev_loop;

typedef struct deadletter_info {
    const char *stream, *shard, *worker;
    const char *error, *traceback;
    int64_t attempts;
} deadletter_info_t;

/* Appends the JSON line of record i of b to out (with a trailing newline). */
void deadletter_format(buf_t *out, const deadletter_info_t *info, const batch_t *b, size_t i);

/* The dead-letter file writer: one thread that appends, fsyncs and rotates,
 * so a slow disk never stalls the loop thread (lease renewals, other shards).
 * One thread for every file keeps each file's appends and rotation in order. */
typedef struct deadletter_writer deadletter_writer_t;

/* Loop thread. rc is 0 when the lines are on disk (fsync'd), else -1 and
 * `msg` says why (names the file). */
typedef void (*deadletter_done_cb)(void *ud, int rc, const char *msg);

/* NULL when its thread cannot start. Caller owns it: deadletter_writer_free(),
 * which waits for the writes queued. */
deadletter_writer_t *deadletter_writer_new(struct ev_loop *loop);
void deadletter_writer_free(deadletter_writer_t *w);
size_t deadletter_writer_busy(const deadletter_writer_t *w);   /* writes not yet answered */

/* Appends `lines` (JSON lines from deadletter_format) to policy p's
 * dead-letter file, moving a file that reached p->dead_letter_max_bytes aside
 * first. The writer takes the content: `lines` is left empty. done runs on
 * the loop thread. */
void deadletter_writer_append(deadletter_writer_t *w, const policy_config_t *p, buf_t *lines,
                              deadletter_done_cb done, void *ud);

/* One parsed line of a dead-letter file (for `shardrun dlq replay`).
 * data/pkey are owned by the record: deadletter_record_clear(). */
typedef struct deadletter_record {
    char *data;
    size_t data_len;
    char *pkey;
} deadletter_record_t;

int deadletter_parse_line(const char *line, deadletter_record_t *out, errbuf_t *err);
void deadletter_record_clear(deadletter_record_t *r);

#endif
