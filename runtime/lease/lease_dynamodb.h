/* lease_dynamodb: the lease store in a DynamoDB table, in the KCL's schema
 * (hash key leaseKey S; leaseOwner S, leaseCounter N, checkpoint S,
 * checkpointSubSequenceNumber N, ownerSwitchesSinceCheckpoint N,
 * parentShardId SS, childShardIds SS, startingHashKey S, endingHashKey S),
 * plus shardrun's streamName S, shardId S, shardrunInfo S and pendingOwner S (graceful
 * handoff). A table a KCL 2.x/3.x
 * application wrote is read and continued.
 *
 * The table is created on first use if missing (on-demand billing, and only
 * when opt.create_table) and waited for until ACTIVE; requests made
 * meanwhile are queued. Every write is one
 * conditional PutItem/UpdateItem/DeleteItem (ConditionalCheckFailed ->
 * LEASE_CONFLICT); list is a consistent, paginated Scan. Same semantics as
 * lease_sqlite: which fields each operation changes, and the row handed to
 * the callback. Destroy drops pending callbacks, as lease_sqlite does. */
#ifndef SHARDRUN_LEASE_DYNAMODB_H
#define SHARDRUN_LEASE_DYNAMODB_H

#include "aws/client.h"
#include "base/errbuf.h"
#include "lease.h"

struct ev_loop;

typedef struct lease_dynamodb_options {
    aws_client_t *aws;      /* the process's AWS client (shared; outlives the store) */
    const char *table;      /* lease table name */
    const char *region;     /* NULL: AWS_REGION, AWS_DEFAULT_REGION, profile */
    const char *endpoint;   /* NULL: https://dynamodb.<region>.amazonaws.com/ */
    int64_t write_budget_ms;  /* a write, retries included, answers ERETRY after this long
                                 (lease_write_budget_ms); 0: LEASE_DYNAMODB_TIMEOUT_MS per attempt */
    int create_table;       /* 1: create the table if missing (a worker); 0: read-only commands
                               create nothing: a missing table lists as empty (logged
                               lease_table_missing), a write to it fails */
} lease_dynamodb_options_t;

/* Caller owns the store: lease_store_destroy() (cancels its calls; before
 * opt->aws is freed). NULL with err set when the region cannot be resolved.
 * Nothing is sent until first use. */
lease_store_t *lease_dynamodb_new(struct ev_loop *loop, const lease_dynamodb_options_t *opt, errbuf_t *err);

#define LEASE_DYNAMODB_TIMEOUT_MS 5000
#define LEASE_DYNAMODB_TABLE_POLL_MS 250

#endif
