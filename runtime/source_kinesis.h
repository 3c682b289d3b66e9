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

#include "credentials.h"

#include "errbuf.h"
#include "source.h"

struct ev_loop;

typedef struct source_kinesis_options {
    const char *region;     /* NULL: AWS_REGION, AWS_DEFAULT_REGION, profile */
    const char *endpoint;   /* NULL: https://kinesis.<region>.amazonaws.com/ */
    const char *ca_file;    /* extra CA bundle, or NULL */
    const aws_cred_options_t *cred;  /* config's credentials/profile, or NULL */
} source_kinesis_options_t;

/* Caller owns the result (source_destroy, which drops pending callbacks).
 * NULL with err set when the region cannot be resolved or curl fails. */
source_t *source_kinesis_new(struct ev_loop *loop, const source_kinesis_options_t *opt, errbuf_t *err);

/* Per shard read budget (bytes per second) and the request timeouts. */
#define SOURCE_KINESIS_BYTES_PER_S (2 * 1024 * 1024)
#define SOURCE_KINESIS_READ_TIMEOUT_MS 10000
#define SOURCE_KINESIS_CALL_TIMEOUT_MS 5000

#endif
