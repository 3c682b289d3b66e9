/* awsjson: the JSON shapes of the Kinesis and DynamoDB responses shardrun
 * reads, and the DynamoDB item of a lease.
 *
 * Pure functions (no I/O, no loop), so they are unit-tested and fuzzed on
 * their own. Every parser takes any bytes: malformed JSON or a field of the
 * wrong type gives an error value and a message naming the field, never a
 * crash and never a partial result the caller must free. */
#ifndef SHARDRUN_AWS_AWSJSON_H
#define SHARDRUN_AWS_AWSJSON_H

#include <stddef.h>
#include <stdint.h>

#include "base/errbuf.h"
#include "lease/lease.h"
#include "source/source.h"

struct cJSON;

typedef enum {
    AWSJSON_OK = 0,
    AWSJSON_ESYNTAX = -1,  /* not JSON at all (e.g. a truncated body) */
    AWSJSON_ESHAPE = -2,   /* JSON, but a field is missing or of the wrong type */
} awsjson_status_t;

/* GetRecords: fills out->batch (a new batch the caller owns), out->next_iterator
 * (malloc'd, NULL at shard end: NextShardIterator absent or null),
 * out->millis_behind (-1 when absent) and out->bytes (decoded data bytes).
 * Base64 data is decoded straight into the batch arena; KPL aggregates are
 * expanded into their user records (sub_seq = index, batch->aggregated = 1);
 * a record that is not a valid aggregate passes through unchanged. On error
 * nothing is allocated in `out`. */
awsjson_status_t awsjson_get_records(const char *body, size_t len, source_records_t *out, errbuf_t *err);

/* ListShards: appends the page's shards to `acc` (which owns them) and sets
 * *next_token (malloc'd) or NULL on the last page. On error `acc` is left as
 * it was. */
awsjson_status_t awsjson_list_shards(const char *body, size_t len, source_shard_list_t *acc, char **next_token,
                                     errbuf_t *err);

/* DynamoDB Scan: appends the page's items to `acc` as leases. A malformed
 * item is appended with lease_t.invalid set (the reason), never dropped.
 * *last_key is LastEvaluatedKey as JSON text (malloc'd) to send back as
 * ExclusiveStartKey, or NULL on the last page. */
awsjson_status_t awsjson_ddb_scan(const char *body, size_t len, lease_list_t *acc, char **last_key, errbuf_t *err);

/* One DynamoDB item (attribute map) into `out` (zeroed by the caller; the
 * caller frees with lease_clear). Reads rows a KCL 2.x/3.x application wrote:
 * no streamName/shardId attributes (the shard id is then the part of
 * leaseKey after its last ':'), sentinel checkpoints, extra attributes. */
void awsjson_ddb_lease(const struct cJSON *item, lease_t *out);

/* The item of a lease for PutItem, in the KCL's attribute names plus
 * streamName, shardId and shardrunInfo (when set). Caller frees with cJSON_Delete. */
struct cJSON *awsjson_ddb_item(const lease_t *l);

/* A DynamoDB string set {"SS": [...]} of ids[0..n) (n > 0). Caller frees. */
struct cJSON *awsjson_ddb_ss(char *const *ids, size_t n);
/* Adds {"name": {"type": "value"}} (a DynamoDB attribute value) to item. */
void awsjson_ddb_attr(struct cJSON *item, const char *name, const char *type, const char *value);
void awsjson_ddb_attr_n(struct cJSON *item, const char *name, int64_t v);   /* type "N" */

/* Parses a DynamoDB number attribute's text as an int64: 0 or -1. */
int awsjson_parse_i64(const char *s, int64_t *out);

#endif
