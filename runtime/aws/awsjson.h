/* awsjson: generic readers and builders for the JSON of AWS APIs.
 *
 * Protocol only: what a field of a Kinesis response or a DynamoDB item
 * *means* is parsed beside its user (source/kinesis_json, lease/lease_ddb).
 * Here are the rules every such parser shares:
 *   - a member that is absent and a member that is JSON null are the same
 *     thing (AWS SDKs and emulators send `"ErrorCode": null` for "none");
 *   - a member of the wrong type is never silently skipped: *bad is set, so
 *     the caller can name the field;
 *   - DynamoDB attribute values ({"S": ...}, {"N": ...}, {"SS": [...]},
 *     {"NULL": true}) are read and written in one place.
 * Pure functions (no I/O), unit-tested and fuzzed through their users. */
#ifndef SHARDRUN_AWS_AWSJSON_H
#define SHARDRUN_AWS_AWSJSON_H

#include <stddef.h>
#include <stdint.h>

#include "jscan.h"

struct cJSON;

typedef enum {
    AWSJSON_OK = 0,
    AWSJSON_ESYNTAX = -1,  /* not JSON at all (e.g. a truncated body) */
    AWSJSON_ESHAPE = -2,   /* JSON, but a field is missing or of the wrong type */
} awsjson_status_t;

/* ---- members of a cJSON object -------------------------------------------
 * Each returns NULL (or 0) when `o` is not an object, the member is absent or
 * null; sets *bad when the member exists with another type. */
const char *awsjson_str(const struct cJSON *o, const char *name, int *bad);
const struct cJSON *awsjson_array(const struct cJSON *o, const char *name, int *bad);
const struct cJSON *awsjson_object(const struct cJSON *o, const char *name, int *bad);
/* 1 with *out set, 0 when absent or null. */
int awsjson_number(const struct cJSON *o, const char *name, double *out, int *bad);
/* awsjson_str copied (malloc'd, the caller frees), or NULL. */
char *awsjson_strdup(const struct cJSON *o, const char *name, int *bad);

/* ---- values in a one-pass scan (jscan) -----------------------------------
 * Each reads the next value: 1 got it, 0 null (absent), -1 another type
 * (*bad set; the value is skipped), -2 malformed JSON. */
int awsjson_scan_string(jscan_t *js, const char **out, size_t *len, int *bad);
int awsjson_scan_number(jscan_t *js, double *out, int *bad);
/* 1 when the member name k[0..n) is `want` (a string literal). */
#define AWSJSON_KEY_IS(k, n, want) ((n) == sizeof(want) - 1 && !memcmp((k), (want), sizeof(want) - 1))

/* ---- DynamoDB attribute values --------------------------------------------- */

/* The value of attribute `name` of an item if it has `type` ("S", "N": a
 * string node; "SS": an array node); NULL when absent or {"NULL": true};
 * *bad set when the attribute has another type. */
const struct cJSON *awsjson_ddb_get(const struct cJSON *item, const char *name, const char *type, int *bad);
/* Adds {"name": {"type": "value"}} (a DynamoDB attribute value) to item. */
void awsjson_ddb_attr(struct cJSON *item, const char *name, const char *type, const char *value);
void awsjson_ddb_attr_n(struct cJSON *item, const char *name, int64_t v);   /* type "N" */
/* A DynamoDB string set {"SS": [...]} of ids[0..n) (n > 0). Caller frees. */
struct cJSON *awsjson_ddb_ss(char *const *ids, size_t n);

/* Parses a DynamoDB number attribute's text as an int64: 0 or -1. */
int awsjson_parse_i64(const char *s, int64_t *out);

#endif
