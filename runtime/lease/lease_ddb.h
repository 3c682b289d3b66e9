/* lease_ddb: a lease row as a DynamoDB item, both ways, and Scan pages of
 * the lease table (the KCL's attribute names; see lease_dynamodb.h).
 *
 * Pure functions (no I/O), unit-tested and fuzzed on their own. A malformed
 * item becomes a lease with lease_t.invalid set (the reason), never dropped
 * and never a crash. A JSON null is an absent attribute (aws/awsjson's rule). */
#ifndef SHARDRUN_LEASE_DDB_H
#define SHARDRUN_LEASE_DDB_H

#include <stddef.h>

#include "aws/awsjson.h"
#include "base/errbuf.h"
#include "lease.h"

struct cJSON;

/* DynamoDB Scan: appends the page's items to `acc` as leases. A malformed
 * item is appended with lease_t.invalid set (the reason), never dropped.
 * *last_key is LastEvaluatedKey as JSON text (malloc'd) to send back as
 * ExclusiveStartKey, or NULL on the last page. On error `acc` is left as it was. */
awsjson_status_t lease_ddb_scan(const char *body, size_t len, lease_list_t *acc, char **last_key, errbuf_t *err);

/* One DynamoDB item (attribute map) into `out` (zeroed by the caller; the
 * caller frees with lease_clear). Reads rows a KCL 2.x/3.x application wrote:
 * no streamName/shardId attributes (the shard id is then the part of
 * leaseKey after its last ':'), sentinel checkpoints, extra attributes. */
void lease_ddb_from_item(const struct cJSON *item, lease_t *out);

/* The item of a lease for PutItem, in the KCL's attribute names plus
 * streamName, shardId and shardrunInfo (when set). Caller frees with cJSON_Delete. */
struct cJSON *lease_ddb_item(const lease_t *l);

#endif
