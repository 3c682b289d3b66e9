/* kinesis_admin: the CLI's Kinesis calls (shardrun stream ..., shardrun put),
 * synchronous: each function runs a private libev loop until its requests are
 * done. Never used by a worker, whose loop must not block. */
#ifndef SHARDRUN_KINESIS_ADMIN_H
#define SHARDRUN_KINESIS_ADMIN_H

#include <stddef.h>

#include "config/config.h"
#include "base/errbuf.h"
#include "source/source.h"

typedef struct kinesis_admin kinesis_admin_t;

/* From the config's source (region, endpoint, ca_file). Caller frees with
 * kinesis_admin_close. NULL with err set on failure. */
kinesis_admin_t *kinesis_admin_open(const config_t *cfg, errbuf_t *err);
void kinesis_admin_close(kinesis_admin_t *ka);

/* CreateStream, then waits until the stream is ACTIVE. */
int kinesis_admin_create(kinesis_admin_t *ka, const char *stream, int shards, errbuf_t *err);

/* Every stream with its open and total shard counts. */
typedef void (*kinesis_admin_list_fn)(void *ud, const char *stream, int open_shards, int shards);
int kinesis_admin_list(kinesis_admin_t *ka, kinesis_admin_list_fn fn, void *ud, errbuf_t *err);

/* Every shard of the stream, open and closed (ListShards, all pages), or
 * NULL with err set. Caller frees with source_shard_list_free. */
source_shard_list_t *kinesis_admin_shards(kinesis_admin_t *ka, const char *stream, errbuf_t *err);

/* SplitShard at `hash_key` (decimal), or in the middle of the shard's hash
 * range when NULL; MergeShards of two adjacent shards. Both wait until the
 * stream is ACTIVE again. */
int kinesis_admin_split(kinesis_admin_t *ka, const char *stream, const char *shard, const char *hash_key,
                        errbuf_t *err);
int kinesis_admin_merge(kinesis_admin_t *ka, const char *stream, const char *shard, const char *adjacent,
                        errbuf_t *err);

/* The enhanced fan-out consumers registered on `stream` (ListStreamConsumers). */
typedef void (*kinesis_admin_consumer_fn)(void *ud, const char *name, const char *status, const char *arn);
int kinesis_admin_consumers(kinesis_admin_t *ka, const char *stream, kinesis_admin_consumer_fn fn, void *ud,
                            errbuf_t *err);
/* DeregisterStreamConsumer (by its ARN), then waits until that consumer is
 * gone (a worker started afterwards registers it anew rather than finding it
 * DELETING; a worker still running may have registered it again already). */
int kinesis_admin_deregister_consumer(kinesis_admin_t *ka, const char *stream, const char *consumer, errbuf_t *err);

/* PutRecords in calls of at most 500 records / 5 MiB, retrying only the
 * entries a call reports as refused (ErrorCode set; a null ErrorCode is
 * success) while the refusal is retryable (throttled, internal failure):
 * each retry logs put_retry with its reason; at most
 * KINESIS_ADMIN_PUT_ATTEMPTS attempts per call (some 20 s with the backoff).
 * Returns 0 once every record is stored, -1 with err set otherwise. */
int kinesis_admin_put(kinesis_admin_t *ka, const char *stream, const source_put_record_t *recs, size_t n,
                      errbuf_t *err);

#define KINESIS_ADMIN_PUT_ATTEMPTS 10
#define KINESIS_ADMIN_PUT_BACKOFF_MS 100
#define KINESIS_ADMIN_PUT_MAX_BACKOFF_MS 5000
#define KINESIS_ADMIN_WAIT_ACTIVE_S 120

#endif
