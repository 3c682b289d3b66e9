/* source_kinesis: the stream source over the Kinesis Data Streams JSON API
 * (ListShards, GetShardIterator, GetRecords), on the loop via aws_http.
 *
 * Limits: 5 GetRecords calls/s per shard are kept by the shard itself
 * (backend_min_poll_interval_ms); 2 MB/s per shard is kept here: after a
 * response of B bytes the shard's next GetRecords is held back B / 2 MB s.
 * Transient failures are retried by aws_http, then reported as SOURCE_ERETRY
 * so the shard backs off. Sequence numbers stay strings. */
#ifndef SHARDRUN_SOURCE_KINESIS_H
#define SHARDRUN_SOURCE_KINESIS_H

#include "aws/client.h"
#include "base/errbuf.h"
#include "source.h"

struct ev_loop;

typedef struct source_kinesis_options {
    aws_client_t *aws;      /* the process's AWS client (shared; outlives the source) */
    const char *region;     /* NULL: AWS_REGION, AWS_DEFAULT_REGION, profile */
    const char *endpoint;   /* NULL: https://kinesis.<region>.amazonaws.com/ */
    int http_version;       /* AWS_HTTP_VERSION_* of its calls (0: curl's default) */
} source_kinesis_options_t;

/* Caller owns the result (source_destroy, which cancels its calls and drops
 * pending callbacks; destroy it before opt->aws). NULL with err set when the
 * region cannot be resolved. */
source_t *source_kinesis_new(struct ev_loop *loop, const source_kinesis_options_t *opt, errbuf_t *err);

/* PutRecords, shared by the worker (dead-letter puts) and the CLI: one call
 * takes at most 500 records and 5 MiB of data and partition keys. */
#define KINESIS_PUT_MAX_RECORDS 500
#define KINESIS_PUT_MAX_BYTES (5 * 1024 * 1024)
/* How many of recs[0..n) the next PutRecords call takes (1 when n > 0, even
 * if that record alone is over the byte limit: Kinesis then names the error). */
size_t kinesis_put_fit(const source_put_record_t *recs, size_t n);
/* The PutRecords request for recs[0..n) (data base64-encoded). Caller owns it. */
struct cJSON *kinesis_put_request(const char *stream, const source_put_record_t *recs, size_t n);

/* Per shard read budget (bytes per second) and the request timeouts. */
#define SOURCE_KINESIS_BYTES_PER_S (2 * 1024 * 1024)
/* How long a shard's next GetRecords waits after one that returned `res`:
 * its records' bytes (data as stored, KPL aggregates whole) at
 * SOURCE_KINESIS_BYTES_PER_S, what Kinesis counts against the shard's 2 MB/s.
 * Not the response's size: base64 and JSON make that about 3x the data of
 * small records, and pacing by it read three times slower than allowed. */
int64_t kinesis_read_pace_ms(const source_records_t *res);
#define SOURCE_KINESIS_READ_TIMEOUT_MS 10000
#define SOURCE_KINESIS_CALL_TIMEOUT_MS 5000

#endif
