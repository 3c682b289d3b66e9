/* deadletter: where records go that the error policy gives up on.
 *
 * Each failed record becomes one JSON line: stream, shard, sequenceNumber,
 * subSequenceNumber, partitionKey, data (base64), approximateArrivalTimestamp,
 * error, traceback, attempts, worker, time. Lines go to a JSONL file (flushed
 * and fsync'd before deadletter_write_file returns, so the checkpoint may move
 * past them; rotated by size) or, as record data, to a stream of the source.
 * A write that fails returns -1: the shard must not checkpoint past them. */
#ifndef SHARDRUN_DEADLETTER_H
#define SHARDRUN_DEADLETTER_H

#include <stddef.h>
#include <stdint.h>

#include "batch.h"
#include "buf.h"
#include "config.h"
#include "errbuf.h"

typedef struct deadletter_info {
    const char *stream, *shard, *worker;
    const char *error, *traceback;
    int64_t attempts;
} deadletter_info_t;

/* Appends the JSON line of record i of b to out (with a trailing newline). */
void deadletter_format(buf_t *out, const deadletter_info_t *info, const batch_t *b, size_t i);

/* Writes records [from, to) of b to the dead-letter file of policy p.
 * Returns 0 when all are on disk (fsync'd). A dead-letter *stream* is written
 * by the shard through the source (asynchronous): see shard_policy.c. */
int deadletter_write_file(const policy_config_t *p, const deadletter_info_t *info, const batch_t *b, size_t from,
                          size_t to, errbuf_t *err);

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
