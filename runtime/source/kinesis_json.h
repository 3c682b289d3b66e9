/* kinesis_json: what the Kinesis Data Streams responses shardrun reads mean
 * as a source: GetRecords as a batch (KPL aggregates expanded) and
 * ListShards as source shards; the events of SubscribeToShard (enhanced
 * fan-out) as a batch.
 *
 * Pure functions (no I/O, no loop), so they are unit-tested and fuzzed on
 * their own. Every parser takes any bytes: malformed JSON or a field of the
 * wrong type gives an error value and a message naming the field, never a
 * crash and never a partial result the caller must free. A JSON null is an
 * absent field (aws/awsjson's rule). */
#ifndef SHARDRUN_KINESIS_JSON_H
#define SHARDRUN_KINESIS_JSON_H

#include <stddef.h>

#include "aws/awsjson.h"
#include "base/errbuf.h"
#include "source.h"

/* GetRecords: fills out->batch (a new batch the caller owns), out->next_iterator
 * (malloc'd, NULL at shard end: NextShardIterator absent or null),
 * out->millis_behind (-1 when absent) and out->bytes (decoded data bytes).
 * Base64 data is decoded straight into the batch arena; KPL aggregates are
 * expanded into their user records (sub_seq = index, batch->aggregated = 1);
 * a record that is not a valid aggregate passes through unchanged. On error
 * nothing is allocated in `out`. */
awsjson_status_t kinesis_json_get_records(const char *body, size_t len, source_records_t *out, errbuf_t *err);

/* One SubscribeToShardEvent payload (enhanced fan-out): Records as in
 * GetRecords, ContinuationSequenceNumber into out->next_iterator (malloc'd;
 * NULL when absent or null: the shard's end), MillisBehindLatest, and the
 * ShardIds of ChildShards into *children (a malloc'd array of malloc'd
 * strings, *nchildren of them; NULL/0 when absent or null). On error nothing
 * is allocated. */
awsjson_status_t kinesis_json_subscribe_event(const char *payload, size_t len, source_records_t *out,
                                              char ***children, size_t *nchildren, errbuf_t *err);

/* ListShards: appends the page's shards to `acc` (which owns them) and sets
 * *next_token (malloc'd) or NULL on the last page. On error `acc` is left as
 * it was. */
awsjson_status_t kinesis_json_list_shards(const char *body, size_t len, source_shard_list_t *acc,
                                          char **next_token, errbuf_t *err);

/* PutRecords' answer to a call of n records. An entry was refused when its
 * ErrorCode is a non-empty string (absent or null: written, whatever
 * FailedRecordCount says or leaves out). */
typedef struct kinesis_put_result {
    size_t refused;           /* entries refused */
    int retryable;            /* every refusal is throttling or an internal failure */
    char first_error[512];    /* the first refusal: "ErrorCode: ErrorMessage", "" when none */
} kinesis_put_result_t;

/* Fills *out; refused (NULL, or n flags) gets 1 for each refused entry.
 * AWSJSON_ESHAPE when Records is not an array of n objects. */
awsjson_status_t kinesis_json_put_result(const char *body, size_t len, size_t n, unsigned char *refused,
                                         kinesis_put_result_t *out, errbuf_t *err);

#endif
