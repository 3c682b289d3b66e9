/* kinesis_floor: the floor of the Kinesis benchmark (scripts/bench.py).
 *
 *   kinesis_floor ENDPOINT STREAM [--limit N]
 *
 * A bare Kinesis reader: for each shard of STREAM (ListShards), one
 * GetShardIterator at TRIM_HORIZON, then GetRecords with Limit N (default
 * 10000, shardrun's default max_records) until a page comes back empty; shard
 * after shard over one keep-alive libcurl connection. In each GetRecords body
 * the records' fields are found by a raw scan (strstr for each field name; no
 * JSON tree, no validation), each Data base64-decoded (OpenSSL), each sequence
 * number, partition key and arrival time read: the least any client must do
 * to hold the records, so a floor shardrun's one-pass JSON reader cannot beat.
 * (A raw scan is safe on the benchmark's bodies: no value contains a field
 * name.) Nothing else: no signature (the emulators check only the
 * Authorization header's form), no leases, no checkpoints, no Lua. The small
 * ListShards and GetShardIterator answers are parsed with cJSON.
 *
 * Prints one JSON line: {"records": N, "bytes": B, "calls": C, "check": X}. The caller
 * measures the process's CPU (wait4), as it does for shardrun.
 *
 * It links libcurl, cJSON and OpenSSL, nothing of the runtime, so an overhead
 * added to the runtime can never hide in the floor. Talks to ENDPOINT only
 * (the benchmark gives it the emulator on 127.0.0.1). */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct body {
    char *p;
    size_t len, cap;
} body_t;

typedef struct reader {
    CURL *curl;
    struct curl_slist *headers[3]; /* one header list per operation (X-Amz-Target differs) */
    const char *endpoint;
    body_t body;
    unsigned char *decoded; /* base64 output, grown as needed */
    size_t decoded_cap;
    int64_t records, bytes, calls, check;
} reader_t;

enum { OP_LIST_SHARDS, OP_GET_ITERATOR, OP_GET_RECORDS };
static const char *const op_names[] = {"ListShards", "GetShardIterator", "GetRecords"};

static size_t on_data(char *ptr, size_t size, size_t n, void *ud)
{
    body_t *b = ud;
    size_t add = size * n;
    if (b->len + add + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1 << 20;
        while (cap < b->len + add + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return 0; /* curl fails the transfer */
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, ptr, add);
    b->len += add;
    b->p[b->len] = '\0';
    return add;
}

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "kinesis_floor: %s: %s\n", what, detail);
    exit(1);
}

/* One API call with a JSON body; the response is in r->body. */
static void call_raw(reader_t *r, int op, const char *json)
{
    r->body.len = 0;
    if (r->body.p) r->body.p[0] = '\0';
    curl_easy_setopt(r->curl, CURLOPT_HTTPHEADER, r->headers[op]);
    curl_easy_setopt(r->curl, CURLOPT_POSTFIELDS, json);
    CURLcode rc = curl_easy_perform(r->curl);
    if (rc != CURLE_OK) die(op_names[op], curl_easy_strerror(rc));
    long status = 0;
    curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200 || !r->body.p) die(op_names[op], r->body.len ? r->body.p : "HTTP error without a body");
}

/* One API call; returns the parsed response (caller frees with cJSON_Delete). */
static cJSON *call(reader_t *r, int op, cJSON *req)
{
    char *json = cJSON_PrintUnformatted(req);
    cJSON_Delete(req);
    if (!json) die(op_names[op], "out of memory");
    call_raw(r, op, json);
    free(json);
    cJSON *doc = cJSON_ParseWithLength(r->body.p, r->body.len);
    if (!doc) die(op_names[op], "response is not JSON");
    r->calls++;
    return doc;
}

static const char *get_string(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The string value after `field` (e.g. "\"Data\":\"") at or after p: its
 * start, and in *end its closing quote. NULL when there is none. */
static const char *scan_string(const char *p, const char *field, const char **end)
{
    const char *k = strstr(p, field);
    if (!k) return NULL;
    const char *v = k + strlen(field), *q = v;
    while (*q && *q != '"') q += *q == '\\' && q[1] ? 2 : 1;
    if (!*q) die("GetRecords", "unterminated string");
    *end = q;
    return v;
}

/* Reads one page; returns its record count. *next: the next iterator (caller frees), NULL at the shard's end. */
static int64_t read_page(reader_t *r, const char *iterator, int limit, char **next)
{
    cJSON *q = cJSON_CreateObject();
    cJSON_AddStringToObject(q, "ShardIterator", iterator);
    cJSON_AddNumberToObject(q, "Limit", limit);
    char *json = cJSON_PrintUnformatted(q);
    cJSON_Delete(q);
    call_raw(r, OP_GET_RECORDS, json);
    free(json);
    const char *body = r->body.p, *end = NULL, *v;
    const char *records = strstr(body, "\"Records\":[");
    if (!records) die("GetRecords", "no Records in the response");
    int64_t n = 0, seqs = 0, pkeys = 0, arrivals = 0;
    for (const char *p = records; (v = scan_string(p, "\"Data\":\"", &end)); p = end + 1) {
        size_t len = (size_t)(end - v);
        if (len / 4 * 3 + 3 > r->decoded_cap) {
            r->decoded_cap = len / 4 * 3 + 3;
            r->decoded = realloc(r->decoded, r->decoded_cap);
            if (!r->decoded) die("GetRecords", "out of memory");
        }
        int out = EVP_DecodeBlock(r->decoded, (const unsigned char *)v, (int)len);
        if (out < 0) die("GetRecords", "Data is not base64");
        r->bytes += out;
        n++;
    }
    for (const char *p = records; (v = scan_string(p, "\"SequenceNumber\":\"", &end)); p = end + 1) seqs++;
    for (const char *p = records; (v = scan_string(p, "\"PartitionKey\":\"", &end)); p = end + 1) {
        r->bytes += end - v;
        pkeys++;
    }
    for (const char *p = records; (p = strstr(p, "\"ApproximateArrivalTimestamp\":"));) {
        char *after = NULL;
        p += sizeof "\"ApproximateArrivalTimestamp\":" - 1;
        r->check += (int64_t)(strtod(p, &after) * 1000);
        if (after == p) die("GetRecords", "ApproximateArrivalTimestamp is not a number");
        p = after;
        arrivals++;
    }
    if (seqs != n || pkeys != n || arrivals != n) die("GetRecords", "records without all their fields");
    v = scan_string(body, "\"NextShardIterator\":\"", &end);
    *next = n && v ? strndup(v, (size_t)(end - v)) : NULL; /* an empty page: caught up (or the end) */
    r->calls++;
    return n;
}

static void read_shard(reader_t *r, const char *stream, const char *shard, int limit)
{
    cJSON *q = cJSON_CreateObject();
    cJSON_AddStringToObject(q, "StreamName", stream);
    cJSON_AddStringToObject(q, "ShardId", shard);
    cJSON_AddStringToObject(q, "ShardIteratorType", "TRIM_HORIZON");
    cJSON *doc = call(r, OP_GET_ITERATOR, q);
    const char *first = get_string(doc, "ShardIterator");
    if (!first) die("GetShardIterator", "no ShardIterator in the response");
    char *it = strdup(first);
    cJSON_Delete(doc);
    while (it) {
        char *next = NULL;
        r->records += read_page(r, it, limit, &next);
        free(it);
        it = next;
    }
}

int main(int argc, char **argv)
{
    if (argc != 3 && !(argc == 5 && !strcmp(argv[3], "--limit"))) {
        fprintf(stderr, "usage: kinesis_floor ENDPOINT STREAM [--limit N]\n");
        return 2;
    }
    int limit = argc == 5 ? atoi(argv[4]) : 10000;
    reader_t r = {.endpoint = argv[1]};
    curl_global_init(CURL_GLOBAL_DEFAULT);
    r.curl = curl_easy_init();
    if (!r.curl) die("curl", "cannot initialise");
    for (int op = 0; op < 3; op++) {
        char target[96];
        snprintf(target, sizeof target, "X-Amz-Target: Kinesis_20131202.%s", op_names[op]);
        struct curl_slist *h = NULL;
        h = curl_slist_append(h, "Content-Type: application/x-amz-json-1.1");
        h = curl_slist_append(h, target);
        h = curl_slist_append(h, "X-Amz-Date: 20240101T000000Z");
        h = curl_slist_append(h, "Authorization: AWS4-HMAC-SHA256 Credential=AKIDSHARDRUNTEST/20240101/us-east-1/"
                                 "kinesis/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, "
                                 "Signature=0000");
        r.headers[op] = h;
    }
    curl_easy_setopt(r.curl, CURLOPT_URL, r.endpoint);
    curl_easy_setopt(r.curl, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(r.curl, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(r.curl, CURLOPT_WRITEDATA, &r.body);
    curl_easy_setopt(r.curl, CURLOPT_TIMEOUT, 120L);

    char *token = NULL;
    do {
        cJSON *q = cJSON_CreateObject();
        if (token) cJSON_AddStringToObject(q, "NextToken", token);
        else cJSON_AddStringToObject(q, "StreamName", argv[2]);
        free(token);
        cJSON *doc = call(&r, OP_LIST_SHARDS, q);
        const cJSON *s;
        cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(doc, "Shards"))
        {
            const char *id = get_string(s, "ShardId");
            if (!id) die("ListShards", "shard without ShardId");
            read_shard(&r, argv[2], id, limit);
        }
        const char *t = get_string(doc, "NextToken");
        token = t ? strdup(t) : NULL;
        cJSON_Delete(doc);
    } while (token);

    printf("{\"records\": %lld, \"bytes\": %lld, \"calls\": %lld, \"check\": %lld}\n", (long long)r.records,
           (long long)r.bytes, (long long)r.calls, (long long)r.check);
    for (int op = 0; op < 3; op++) curl_slist_free_all(r.headers[op]);
    curl_easy_cleanup(r.curl);
    curl_global_cleanup();
    free(r.body.p);
    free(r.decoded);
    return 0;
}
