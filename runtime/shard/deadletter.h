/* deadletter: where records go that the error policy gives up on.
 *
 * Each failed record becomes one JSON line: stream, shard, sequenceNumber,
 * subSequenceNumber, partitionKey, data (base64), approximateArrivalTimestamp,
 * error, traceback, attempts, worker, time. Lines go to a JSONL file (written,
 * fsync'd and rotated by size on a thread of its own, so a slow disk never
 * stalls the loop thread) or, as record data, to a stream of the source.
 *
 * A stream record holds at most 1 MiB: a line that would be larger (a record
 * near the limit, once in base64) is sent as metadata only (no data; its
 * size, "dataOmitted": true), so a large record can never stall its shard.
 * Every answer is classified: sent, retry later (transient), or never (the
 * destination cannot take it: say why, the shard halts). */
#ifndef SHARDRUN_DEADLETTER_H
#define SHARDRUN_DEADLETTER_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/errbuf.h"
#include "config/config.h"
#include "record/batch.h"
#include "source/source.h"

struct ev_loop;

/* The largest record a dead-letter stream takes (Kinesis's limit, and the local stream's). */
#define DEADLETTER_MAX_RECORD (1024 * 1024)

typedef struct deadletter_info {
    const char *stream, *shard, *worker;
    const char *error, *traceback;
    int64_t attempts;
} deadletter_info_t;

/* Appends the JSON line of record i of b to out (with a trailing newline).
 * max_line > 0: a line longer than that is written as metadata only (no data).
 * Returns 1 when the data was left out, else 0. */
int deadletter_format(buf_t *out, const deadletter_info_t *info, const batch_t *b, size_t i, size_t max_line);

/* The dead-letter destinations of one worker: the file writer's thread and
 * the source for dead-letter streams. NULL when its thread cannot start.
 * Caller owns it: deadletter_free(), which waits for the file writes queued. */
typedef struct deadletter deadletter_t;
deadletter_t *deadletter_new(struct ev_loop *loop, source_t *source);
void deadletter_free(deadletter_t *dl);
size_t deadletter_busy(const deadletter_t *dl);   /* sends not yet answered */

typedef enum {
    DEADLETTER_SENT = 0,   /* on disk (fsync'd) or accepted by the stream */
    DEADLETTER_ERETRY,     /* transient (disk full, throttled, busy): try again later */
    DEADLETTER_EFATAL,     /* the destination cannot take them (no such stream, refused) */
} deadletter_status_t;

typedef struct deadletter_result {
    deadletter_status_t status;
    const char *message;       /* why, naming the destination (NULL when sent) */
    const char *destination;   /* the file, or the stream's name */
    size_t data_omitted;       /* records sent as metadata only (too large for a stream record) */
} deadletter_result_t;

/* Loop thread; the result is valid during the call. */
typedef void (*deadletter_done_cb)(void *ud, const deadletter_result_t *r);

/* Sends every record of b to policy p's destination (p->dead_letter_stream,
 * else p->dead_letter_file). b and p must stay valid until done runs; done
 * runs later on the loop thread, never inside this call. */
void deadletter_send(deadletter_t *dl, const policy_config_t *p, const deadletter_info_t *info, const batch_t *b,
                     deadletter_done_cb done, void *ud);

const char *deadletter_status_name(deadletter_status_t s);

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
