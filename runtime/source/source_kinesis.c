#include "source_kinesis.h"

#include <cjson/cJSON.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base64.h"
#include "base/buf.h"
#include "aws/client.h"
#include "base/clock.h"
#include "base/xalloc.h"
#include "kinesis_json.h"

#define KIN_TARGET "Kinesis_20131202."
#define KIN_JSON "1.1"
#define KIN_MAX_LIMIT 10000

/* A shard's read budget: its next GetRecords is not sent before next_ok_ms. */
typedef struct kin_pace {
    char *key;            /* "stream/shard" */
    int64_t next_ok_ms;   /* monotonic */
    struct kin_pace *next;
} kin_pace_t;

typedef struct kin_source kin_source_t;

typedef enum { KIN_SHARDS, KIN_ITERATOR, KIN_RECORDS, KIN_PUT } kin_kind_t;

/* One request from the interface until its callback. Owned by the source's
 * list; freed by kin_finish (after the callback) or by destroy (without). */
typedef struct kin_req {
    kin_source_t *ks;
    struct kin_req *next, *prev;
    kin_kind_t kind;
    void *cb, *ud;
    char *stream, *shard;
    char *body;                   /* for a request held back by pacing */
    aws_client_req_t *http;       /* in flight, or NULL */
    ev_timer timer;               /* pacing, or delivering an early failure */
    source_shard_list_t *shards;  /* ListShards pages so far */
    source_err_t error;
    errbuf_t err;
    const source_put_record_t *put;  /* KIN_PUT: the caller's records, and how far we got */
    size_t nput, put_done, put_sent;  /* records in all, sent so far, in the call in flight */
    unsigned char *put_failed;        /* KIN_PUT: per record, 1 = not written (NULL until a call fails) */
    int put_throttled;                /* KIN_PUT: the call answered, refusing records for throughput */
    int put_answered;                 /* KIN_PUT: put_failed holds the refused records of the last call */
} kin_req_t;

struct kin_source {
    source_t base;
    aws_client_t *aws;            /* shared, not owned */
    aws_endpoint_t ep;
    kin_req_t *reqs;
    kin_pace_t *pace;
};

static void kin_send(kin_req_t *r, const char *op, const char *body);

static kin_req_t *kin_req_new(kin_source_t *ks, kin_kind_t kind, const char *stream, const char *shard, void *cb,
                              void *ud)
{
    kin_req_t *r = xcalloc(1, sizeof *r); /* freed by kin_req_free */
    r->ks = ks;
    r->kind = kind;
    r->cb = cb;
    r->ud = ud;
    r->stream = xstrdup(stream);
    r->shard = xstrdup(shard);
    r->next = ks->reqs;
    if (ks->reqs) ks->reqs->prev = r;
    ks->reqs = r;
    return r;
}

static void kin_req_free(kin_req_t *r)
{
    kin_source_t *ks = r->ks;
    ev_timer_stop(ks->base.loop, &r->timer);
    if (r->http) aws_client_cancel(ks->aws, r->http);
    if (r->prev) r->prev->next = r->next;
    else ks->reqs = r->next;
    if (r->next) r->next->prev = r->prev;
    source_shard_list_free(r->shards);
    free(r->put_failed);
    free(r->stream);
    free(r->shard);
    free(r->body);
    free(r);
}

/* Ends a request with an error: the callback gets the message naming the
 * stream and shard. */
static void kin_fail(kin_req_t *r)
{
    const char *msg = r->err.msg;
    switch (r->kind) {
    case KIN_SHARDS: ((source_shards_cb)r->cb)(r->ud, r->error, msg, NULL); break;
    case KIN_ITERATOR: ((source_iterator_cb)r->cb)(r->ud, r->error, msg, NULL); break;
    case KIN_RECORDS: {
        source_records_t res = {.error = r->error, .message = msg, .millis_behind = -1};
        ((source_records_cb)r->cb)(r->ud, &res);
        break;
    }
    case KIN_PUT: {
        /* the records of calls never sent, and those of the call that failed
         * (all of them, unless its answer named the refused ones) */
        if (!r->put_failed) r->put_failed = xcalloc(r->nput ? r->nput : 1, 1);
        size_t from = r->put_answered ? r->put_done : r->put_done - r->put_sent;
        for (size_t i = from; i < r->nput; i++) r->put_failed[i] = 1;
        source_put_result_t res = {r->error, msg, r->put_failed, r->put_throttled};
        ((source_put_cb)r->cb)(r->ud, &res);
        break;
    }
    }
    kin_req_free(r);
}

static void kin_on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    kin_req_t *r = t->data;
    if (r->error) {
        kin_fail(r);
        return;
    }
    char *body = r->body;
    r->body = NULL;
    kin_send(r, "GetRecords", body);
    free(body);
}

/* Fails a request on a later loop turn: callbacks never run inside the call. */
static void kin_fail_later(kin_req_t *r, source_err_t e)
{
    r->error = e;
    ev_timer_init(&r->timer, kin_on_timer, 0.0, 0.0);
    r->timer.data = r;
    ev_timer_start(r->ks->base.loop, &r->timer);
}

static const char *kin_where(const kin_req_t *r, char *out, size_t n)
{
    if (r->shard) snprintf(out, n, "stream %s shard %s", r->stream, r->shard);
    else snprintf(out, n, "stream %s", r->stream);
    return out;
}

/* Maps an HTTP/AWS failure to the source's error kinds. */
static source_err_t kin_classify(const aws_http_response_t *resp)
{
    if (resp->error == AWS_HTTP_EHTTP) {
        if (aws_client_is(resp, "ExpiredIteratorException")) return SOURCE_EEXPIRED;
        if (aws_client_is(resp, "ResourceNotFoundException")) return SOURCE_ENOTFOUND;
    }
    return aws_client_transient(resp) ? SOURCE_ERETRY : SOURCE_EFATAL;
}

static int kin_set_error(kin_req_t *r, const char *op, const aws_http_response_t *resp)
{
    char where[256], what[768];
    r->error = kin_classify(resp);
    if (aws_client_foreign(resp)) {
        r->error = SOURCE_EFATAL;
        errbuf_set(&r->err, "%s: %s: the endpoint %s does not speak the Kinesis API (%s): check source.endpoint",
                   kin_where(r, where, sizeof where), op, r->ks->ep.url, aws_client_describe(resp, what, sizeof what));
        return -1;
    }
    errbuf_set(&r->err, "%s: %s: %s", kin_where(r, where, sizeof where), op,
               aws_client_describe(resp, what, sizeof what));
    return -1;
}

static kin_pace_t *kin_pace(kin_source_t *ks, const char *stream, const char *shard)
{
    char key[512];
    snprintf(key, sizeof key, "%s/%s", stream, shard);
    for (kin_pace_t *p = ks->pace; p; p = p->next)
        if (!strcmp(p->key, key)) return p;
    kin_pace_t *p = xcalloc(1, sizeof *p); /* owned by the source, freed in destroy */
    p->key = xstrdup(key);
    p->next = ks->pace;
    ks->pace = p;
    return p;
}

/* ---- responses ------------------------------------------------------------- */

static void kin_shards_done(kin_req_t *r, const aws_http_response_t *resp)
{
    char *token = NULL;
    if (!r->shards) r->shards = xcalloc(1, sizeof *r->shards);
    awsjson_status_t st = kinesis_json_list_shards(resp->body, resp->body_len, r->shards, &token, &r->err);
    if (st != AWSJSON_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", r->err.msg);
        errbuf_set(&r->err, "stream %s: %s", r->stream, msg);
        r->error = st == AWSJSON_ESYNTAX ? SOURCE_ERETRY : SOURCE_EFATAL;
        kin_fail(r);
        return;
    }
    if (token) {
        /* the next page: NextToken alone (the API refuses it with StreamName) */
        cJSON *q = cJSON_CreateObject();
        cJSON_AddStringToObject(q, "NextToken", token);
        char *body = cJSON_PrintUnformatted(q);
        cJSON_Delete(q);
        free(token);
        if (!body) xalloc_oom(0);
        kin_send(r, "ListShards", body);
        free(body);
        return;
    }
    source_shard_list_t *l = r->shards;
    r->shards = NULL;
    ((source_shards_cb)r->cb)(r->ud, SOURCE_OK, NULL, l);
    kin_req_free(r);
}

static void kin_iterator_done(kin_req_t *r, const aws_http_response_t *resp)
{
    cJSON *j = cJSON_ParseWithLength(resp->body, resp->body_len);
    int bad = 0;
    const char *it = awsjson_str(j, "ShardIterator", &bad);
    if (!it || !*it) {
        char where[256];
        r->error = j ? SOURCE_EFATAL : SOURCE_ERETRY;
        errbuf_set(&r->err, "%s: GetShardIterator response: %s", kin_where(r, where, sizeof where),
                   j ? "ShardIterator is missing or not a string" : "not JSON");
        cJSON_Delete(j);
        kin_fail(r);
        return;
    }
    char *iter = xstrdup(it); /* handed to the callback */
    cJSON_Delete(j);
    ((source_iterator_cb)r->cb)(r->ud, SOURCE_OK, NULL, iter);
    kin_req_free(r);
}

int64_t kinesis_read_pace_ms(const source_records_t *res)
{
    return (int64_t)((uint64_t)res->bytes * 1000 / SOURCE_KINESIS_BYTES_PER_S);
}

static void kin_records_done(kin_req_t *r, const aws_http_response_t *resp)
{
    source_records_t res = {0};
    awsjson_status_t st = kinesis_json_get_records(resp->body, resp->body_len, &res, &r->err);
    if (st != AWSJSON_OK) {
        char where[256], msg[1024];
        snprintf(msg, sizeof msg, "%s", r->err.msg);
        errbuf_set(&r->err, "%s: %s", kin_where(r, where, sizeof where), msg);
        /* a truncated body is the network's doing; a wrong shape will not fix itself */
        r->error = st == AWSJSON_ESYNTAX ? SOURCE_ERETRY : SOURCE_EFATAL;
        kin_fail(r);
        return;
    }
    kin_pace_t *p = kin_pace(r->ks, r->stream, r->shard);
    int64_t now = clock_mono_ms();
    if (p->next_ok_ms < now) p->next_ok_ms = now;
    p->next_ok_ms += kinesis_read_pace_ms(&res);
    ((source_records_cb)r->cb)(r->ud, &res);
    kin_req_free(r);
}

static void kin_put_next(kin_req_t *r);

/* PutRecords answers 200 with refused entries (ErrorCode set) when some
 * were throttled: those alone are flagged, and the put ends there (the
 * caller sends them again before anything after them). An entry with
 * ErrorCode null or absent was written. */
static void kin_put_done(kin_req_t *r, const aws_http_response_t *resp)
{
    kinesis_put_result_t res;
    char where[256], msg[1024];
    size_t base = r->put_done - r->put_sent;
    if (!r->put_failed) r->put_failed = xcalloc(r->nput ? r->nput : 1, 1); /* freed with r */
    awsjson_status_t st =
        kinesis_json_put_result(resp->body, resp->body_len, r->put_sent, r->put_failed + base, &res, &r->err);
    if (st != AWSJSON_OK || res.refused) {
        if (st != AWSJSON_OK) snprintf(msg, sizeof msg, "%s", r->err.msg);
        else snprintf(msg, sizeof msg, "PutRecords: %zu of %zu records refused (first: %s)", res.refused, r->put_sent,
                      res.first_error);
        errbuf_set(&r->err, "%s: %s", kin_where(r, where, sizeof where), msg);
        r->error = st == AWSJSON_ESYNTAX || res.retryable ? SOURCE_ERETRY : SOURCE_EFATAL;
        r->put_answered = st == AWSJSON_OK;
        r->put_throttled = st == AWSJSON_OK && res.retryable;
        kin_fail(r);
        return;
    }
    if (r->put_done < r->nput) {
        kin_put_next(r);
        return;
    }
    source_put_result_t ok = {SOURCE_OK, NULL, NULL, 0};
    ((source_put_cb)r->cb)(r->ud, &ok);
    kin_req_free(r);
}

static void kin_http_done(void *ud, const aws_http_response_t *resp)
{
    kin_req_t *r = ud;
    r->http = NULL;
    static const char *const ops[] = {"ListShards", "GetShardIterator", "GetRecords", "PutRecords"};
    if (resp->error != AWS_HTTP_OK) {
        kin_set_error(r, ops[r->kind], resp);
        kin_fail(r);
        return;
    }
    switch (r->kind) {
    case KIN_SHARDS: kin_shards_done(r, resp); break;
    case KIN_ITERATOR: kin_iterator_done(r, resp); break;
    case KIN_RECORDS: kin_records_done(r, resp); break;
    case KIN_PUT: kin_put_done(r, resp); break;
    }
}

static void kin_send(kin_req_t *r, const char *op, const char *body)
{
    char target[64];
    snprintf(target, sizeof target, KIN_TARGET "%s", op);
    long timeout = r->kind == KIN_RECORDS ? SOURCE_KINESIS_READ_TIMEOUT_MS : SOURCE_KINESIS_CALL_TIMEOUT_MS;
    r->http = aws_client_call(r->ks->aws, &r->ks->ep, target, KIN_JSON, body, timeout, kin_http_done, r);
    if (!r->http) {
        char where[256];
        errbuf_set(&r->err, "%s: %s: invalid request (endpoint %s)", kin_where(r, where, sizeof where), op,
                   r->ks->ep.url);
        kin_fail_later(r, SOURCE_EFATAL);
    }
}

/* Serialises a request body built with cJSON; the caller frees it. */
static char *kin_body(cJSON *q)
{
    char *s = cJSON_PrintUnformatted(q);
    cJSON_Delete(q);
    if (!s) xalloc_oom(0);
    return s;
}

/* ---- the interface ----------------------------------------------------------- */

static void kin_list_shards(source_t *s, const char *stream, source_shards_cb cb, void *ud)
{
    kin_source_t *ks = (kin_source_t *)s;
    kin_req_t *r = kin_req_new(ks, KIN_SHARDS, stream, NULL, (void *)cb, ud);
    cJSON *q = cJSON_CreateObject();
    cJSON_AddStringToObject(q, "StreamName", stream);
    char *body = kin_body(q);
    kin_send(r, "ListShards", body);
    free(body);
}

static void kin_get_iterator(source_t *s, const char *stream, const char *shard, const source_position_t *pos,
                             source_iterator_cb cb, void *ud)
{
    kin_source_t *ks = (kin_source_t *)s;
    kin_req_t *r = kin_req_new(ks, KIN_ITERATOR, stream, shard, (void *)cb, ud);
    cJSON *q = cJSON_CreateObject();
    cJSON_AddStringToObject(q, "StreamName", stream);
    cJSON_AddStringToObject(q, "ShardId", shard);
    cJSON_AddStringToObject(q, "ShardIteratorType", source_pos_name(pos->kind));
    if (pos->kind == POS_AT_SEQUENCE || pos->kind == POS_AFTER_SEQUENCE) {
        if (!pos->seq) {
            cJSON_Delete(q);
            errbuf_set(&r->err, "stream %s shard %s: %s without a sequence number", stream, shard,
                       source_pos_name(pos->kind));
            kin_fail_later(r, SOURCE_EFATAL);
            return;
        }
        cJSON_AddStringToObject(q, "StartingSequenceNumber", pos->seq);
    } else if (pos->kind == POS_AT_TIMESTAMP) {
        cJSON_AddNumberToObject(q, "Timestamp", (double)pos->timestamp_ms / 1000.0); /* seconds */
    }
    char *body = kin_body(q);
    kin_send(r, "GetShardIterator", body);
    free(body);
}

static void kin_get_records(source_t *s, const char *stream, const char *shard, const char *iterator, size_t max,
                            size_t max_bytes,
                            source_records_cb cb, void *ud)
{
    kin_source_t *ks = (kin_source_t *)s;
    kin_req_t *r = kin_req_new(ks, KIN_RECORDS, stream, shard, (void *)cb, ud);
    cJSON *q = cJSON_CreateObject();
    cJSON_AddStringToObject(q, "ShardIterator", iterator);
    cJSON_AddNumberToObject(q, "Limit", (double)(max < 1 ? 1 : max > KIN_MAX_LIMIT ? KIN_MAX_LIMIT : max));
    char *body = kin_body(q);
    int64_t wait = kin_pace(ks, stream, shard)->next_ok_ms - clock_mono_ms();
    if (wait > 0) {
        /* the shard read more than 2 MB/s lately: hold this call back */
        r->body = body;
        ev_timer_init(&r->timer, kin_on_timer, (double)wait / 1000.0, 0.0);
        r->timer.data = r;
        ev_timer_start(ks->base.loop, &r->timer);
        return;
    }
    kin_send(r, "GetRecords", body);
    free(body);
}

size_t kinesis_put_fit(const source_put_record_t *recs, size_t n)
{
    size_t m = 0, bytes = 0;
    while (m < n && m < KINESIS_PUT_MAX_RECORDS) {
        size_t sz = recs[m].data_len + strlen(recs[m].pkey);
        if (m && bytes + sz > KINESIS_PUT_MAX_BYTES) break;
        bytes += sz;
        m++;
    }
    return m;
}

cJSON *kinesis_put_request(const char *stream, const source_put_record_t *recs, size_t n)
{
    cJSON *q = cJSON_CreateObject();
    if (!q) xalloc_oom(0);
    cJSON_AddStringToObject(q, "StreamName", stream);
    cJSON *arr = cJSON_AddArrayToObject(q, "Records");
    buf_t b64 = BUF_INIT;
    for (size_t i = 0; i < n; i++) {
        buf_reset(&b64);
        if (base64_encode(&b64, recs[i].data, recs[i].data_len)) xalloc_oom(recs[i].data_len);
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "Data", buf_str(&b64));
        cJSON_AddStringToObject(e, "PartitionKey", recs[i].pkey);
        if (recs[i].hash_key) cJSON_AddStringToObject(e, "ExplicitHashKey", recs[i].hash_key);
        cJSON_AddItemToArray(arr, e);
    }
    buf_free(&b64);
    return q;
}

/* Sends the next PutRecords call (as many records as one call takes). */
static void kin_put_next(kin_req_t *r)
{
    size_t m = kinesis_put_fit(r->put + r->put_done, r->nput - r->put_done);
    cJSON *q = kinesis_put_request(r->stream, r->put + r->put_done, m);
    r->put_done += m;
    r->put_sent = m;
    char *body = kin_body(q);
    kin_send(r, "PutRecords", body);
    free(body);
}

static void kin_put(source_t *s, const char *stream, const source_put_record_t *recs, size_t n, source_put_cb cb,
                    void *ud)
{
    kin_req_t *r = kin_req_new((kin_source_t *)s, KIN_PUT, stream, NULL, (void *)cb, ud);
    r->put = recs;
    r->nput = n;
    kin_put_next(r);
}

static int64_t kin_records_behind(source_t *s, const char *stream, const char *shard, const char *checkpoint)
{
    return -1; /* Kinesis does not count records; MillisBehindLatest is the measure */
}

static void kin_destroy(source_t *s)
{
    kin_source_t *ks = (kin_source_t *)s;
    while (ks->reqs) kin_req_free(ks->reqs); /* cancels its call: no callback runs */
    aws_client_endpoint_clear(&ks->ep);
    while (ks->pace) {
        kin_pace_t *p = ks->pace;
        ks->pace = p->next;
        free(p->key);
        free(p);
    }
    free(ks);
}

static const source_ops_t source_kinesis_ops = {
    .name = "kinesis",
    .list_shards = kin_list_shards,
    .get_iterator = kin_get_iterator,
    .get_records = kin_get_records,
    .put = kin_put,
    .records_behind = kin_records_behind,
    .destroy = kin_destroy,
};

source_t *source_kinesis_new(struct ev_loop *loop, const source_kinesis_options_t *opt, errbuf_t *err)
{
    kin_source_t *ks = xcalloc(1, sizeof *ks); /* owned by the caller: source_destroy */
    ks->base.ops = &source_kinesis_ops;
    ks->base.loop = loop;
    ks->aws = opt->aws;
    if (aws_client_endpoint(ks->aws, &ks->ep, "kinesis", "source", opt->region, opt->endpoint, err)) {
        aws_client_endpoint_clear(&ks->ep);
        free(ks);
        return NULL;
    }
    ks->ep.http_version = opt->http_version;
    return &ks->base;
}
