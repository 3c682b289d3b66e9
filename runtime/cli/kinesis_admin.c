#include "kinesis_admin.h"

#include "worker/backends.h"

#include <cjson/cJSON.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "aws/client.h"
#include "record/seqnum.h"
#include "aws/awsjson.h"
#include "source/kinesis_json.h"
#include "source/source_kinesis.h"
#include "base/log.h"
#include "base/xalloc.h"

struct kinesis_admin {
    struct ev_loop *loop;   /* private: only these calls run on it */
    aws_client_t *aws;
    aws_endpoint_t ep;
};

/* The outcome of one call, copied out of the response callback. */
typedef struct ka_result {
    int done;
    int ok;
    int transient;
    char *type;             /* AWS error type, or NULL */
    char what[768];
    cJSON *json;            /* the parsed body on success */
} ka_result_t;

static void ka_done(void *ud, const aws_http_response_t *resp)
{
    ka_result_t *res = ud;
    res->done = 1;
    res->ok = resp->error == AWS_HTTP_OK;
    res->transient = aws_client_transient(resp);
    res->type = resp->aws_error_type ? xstrdup(resp->aws_error_type) : NULL;
    if (res->ok) {
        /* some calls (CreateStream, SplitShard) answer with an empty body */
        res->json = resp->body_len ? cJSON_ParseWithLength(resp->body, resp->body_len) : cJSON_CreateObject();
        if (!res->json) {
            res->ok = 0;
            snprintf(res->what, sizeof res->what, "response is not JSON (%zu bytes)", resp->body_len);
        }
    } else {
        aws_client_describe(resp, res->what, sizeof res->what);
    }
}

static void ka_result_clear(ka_result_t *res)
{
    free(res->type);
    cJSON_Delete(res->json);
    memset(res, 0, sizeof *res);
}

/* Runs one call to the end; `q` is consumed. On failure err says "op: why". */
static int ka_call(kinesis_admin_t *ka, const char *op, cJSON *q, ka_result_t *res, errbuf_t *err)
{
    char target[64];
    snprintf(target, sizeof target, "Kinesis_20131202.%s", op);
    char *body = cJSON_PrintUnformatted(q);
    cJSON_Delete(q);
    if (!body) xalloc_oom(0);
    memset(res, 0, sizeof *res);
    aws_client_req_t *r = aws_client_call(ka->aws, &ka->ep, target, "1.1", body, 30000, ka_done, res);
    free(body);
    if (!r) return errbuf_set(err, "%s: invalid request (endpoint %s)", op, ka->ep.url);
    while (!res->done) ev_run(ka->loop, EVRUN_ONCE);
    if (!res->ok) return errbuf_set(err, "%s: %s", op, res->what);
    return 0;
}

static void ka_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

kinesis_admin_t *kinesis_admin_open(const config_t *cfg, errbuf_t *err)
{
    kinesis_admin_t *ka = xcalloc(1, sizeof *ka); /* owned by the caller: kinesis_admin_close */
    ka->loop = ev_loop_new(EVFLAG_AUTO);
    if (!ka->loop) {
        free(ka);
        errbuf_set(err, "cannot create an event loop");
        return NULL;
    }
    if (backend_aws_new(cfg, ka->loop, &ka->aws, err) ||
        aws_client_endpoint(ka->aws, &ka->ep, "kinesis", "source", cfg->source.region, cfg->source.endpoint, err)) {
        kinesis_admin_close(ka);
        return NULL;
    }
    return ka;
}

void kinesis_admin_close(kinesis_admin_t *ka)
{
    if (!ka) return;
    aws_client_endpoint_clear(&ka->ep);
    aws_client_free(ka->aws);
    ev_loop_destroy(ka->loop);
    free(ka);
}

static cJSON *ka_stream_req(const char *stream)
{
    cJSON *q = cJSON_CreateObject();
    if (!q) xalloc_oom(0);
    cJSON_AddStringToObject(q, "StreamName", stream);
    return q;
}

/* Polls DescribeStreamSummary until the stream is ACTIVE (bounded); says
 * what it waits for whenever the status it sees changes. */
static int ka_wait_active(kinesis_admin_t *ka, const char *stream, errbuf_t *err)
{
    char last[32] = "";
    for (int i = 0; i < KINESIS_ADMIN_WAIT_ACTIVE_S * 10; i++) {
        ka_result_t res;
        if (ka_call(ka, "DescribeStreamSummary", ka_stream_req(stream), &res, err)) {
            ka_result_clear(&res);
            return -1;
        }
        int bad = 0;
        const char *st = awsjson_str(awsjson_object(res.json, "StreamDescriptionSummary", &bad), "StreamStatus", &bad);
        int active = st && !strcmp(st, "ACTIVE");
        if (!active && strcmp(last, st ? st : "?")) {
            snprintf(last, sizeof last, "%s", st ? st : "?");
            log_info("stream_waiting", "stream=%s status=%s until=ACTIVE max_wait_s=%d", stream, last,
                     KINESIS_ADMIN_WAIT_ACTIVE_S);
        }
        ka_result_clear(&res);
        if (active) return 0;
        ka_sleep_ms(100);
    }
    return errbuf_set(err, "stream %s is not ACTIVE after %d s (last status %s)", stream, KINESIS_ADMIN_WAIT_ACTIVE_S,
                      last);
}

/* Calls op, which changes the stream (its answer says nothing more), then
 * waits until the stream is ACTIVE again. `q` is consumed. */
static int ka_change(kinesis_admin_t *ka, const char *op, cJSON *q, const char *stream, errbuf_t *err)
{
    ka_result_t res;
    int rc = ka_call(ka, op, q, &res, err);
    ka_result_clear(&res);
    return rc ? rc : ka_wait_active(ka, stream, err);
}

int kinesis_admin_create(kinesis_admin_t *ka, const char *stream, int shards, errbuf_t *err)
{
    cJSON *q = ka_stream_req(stream);
    cJSON_AddNumberToObject(q, "ShardCount", shards);
    return ka_change(ka, "CreateStream", q, stream, err);
}

source_shard_list_t *kinesis_admin_shards(kinesis_admin_t *ka, const char *stream, errbuf_t *err)
{
    source_shard_list_t *l = xcalloc(1, sizeof *l); /* the caller's */
    cJSON *q = ka_stream_req(stream);
    for (;;) {
        ka_result_t res;
        char *token = NULL;
        if (ka_call(ka, "ListShards", q, &res, err)) {
            ka_result_clear(&res);
            source_shard_list_free(l);
            return NULL;
        }
        char *body = cJSON_PrintUnformatted(res.json);
        ka_result_clear(&res);
        if (!body) xalloc_oom(0);
        awsjson_status_t st = kinesis_json_list_shards(body, strlen(body), l, &token, err);
        free(body);
        if (st != AWSJSON_OK) {
            source_shard_list_free(l);
            return NULL;
        }
        if (!token) return l;
        q = cJSON_CreateObject();
        cJSON_AddStringToObject(q, "NextToken", token);
        free(token);
    }
}

int kinesis_admin_list(kinesis_admin_t *ka, kinesis_admin_list_fn fn, void *ud, errbuf_t *err)
{
    char *after = NULL;
    for (;;) {
        cJSON *q = cJSON_CreateObject();
        if (after) cJSON_AddStringToObject(q, "ExclusiveStartStreamName", after);
        free(after);
        after = NULL;
        ka_result_t res;
        if (ka_call(ka, "ListStreams", q, &res, err)) {
            ka_result_clear(&res);
            return -1;
        }
        int bad = 0;
        const cJSON *names = awsjson_array(res.json, "StreamNames", &bad), *n;
        int more = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(res.json, "HasMoreStreams"));
        if (bad) {
            ka_result_clear(&res);
            return errbuf_set(err, "ListStreams: response has StreamNames of the wrong type");
        }
        cJSON_ArrayForEach(n, names) {
            if (!cJSON_IsString(n)) continue;
            source_shard_list_t *l = kinesis_admin_shards(ka, n->valuestring, err);
            if (!l) {
                ka_result_clear(&res);
                return -1;
            }
            int open = 0;
            for (size_t i = 0; i < l->count; i++) open += l->shards[i].end_seq == NULL;
            fn(ud, n->valuestring, open, (int)l->count);
            source_shard_list_free(l);
            free(after);
            after = xstrdup(n->valuestring);
        }
        ka_result_clear(&res);
        if (!more || !after) break;
    }
    free(after);
    return 0;
}

int kinesis_admin_split(kinesis_admin_t *ka, const char *stream, const char *shard, const char *hash_key,
                        errbuf_t *err)
{
    char mid[48];
    if (!hash_key) {
        source_shard_list_t *l = kinesis_admin_shards(ka, stream, err);
        if (!l) return -1;
        const source_shard_t *s = source_shard_find(l, shard);
        hashkey_t lo, hi;
        int bad = !s || hashkey_parse(s->start_hash, &lo) || hashkey_parse(s->end_hash, &hi) || hi <= lo;
        int closed = s && s->end_seq;
        source_shard_list_free(l);
        if (bad) return errbuf_set(err, "stream %s has no open shard %s with a range to split", stream, shard);
        if (closed) return errbuf_set(err, "stream %s shard %s is closed already", stream, shard);
        /* the upper child starts here: the middle of [lo, hi], never lo itself */
        hashkey_format(lo + (hi - lo) / 2 + 1, mid);
        hash_key = mid;
    }
    cJSON *q = ka_stream_req(stream);
    cJSON_AddStringToObject(q, "ShardToSplit", shard);
    cJSON_AddStringToObject(q, "NewStartingHashKey", hash_key);
    return ka_change(ka, "SplitShard", q, stream, err);
}

int kinesis_admin_merge(kinesis_admin_t *ka, const char *stream, const char *shard, const char *adjacent,
                        errbuf_t *err)
{
    cJSON *q = ka_stream_req(stream);
    cJSON_AddStringToObject(q, "ShardToMerge", shard);
    cJSON_AddStringToObject(q, "AdjacentShardToMerge", adjacent);
    return ka_change(ka, "MergeShards", q, stream, err);
}

/* ---- enhanced fan-out consumers ------------------------------------------------ */

/* The stream's ARN (what the consumer calls take), malloc'd. */
static char *ka_stream_arn(kinesis_admin_t *ka, const char *stream, errbuf_t *err)
{
    ka_result_t res;
    if (ka_call(ka, "DescribeStreamSummary", ka_stream_req(stream), &res, err)) {
        ka_result_clear(&res);
        return NULL;
    }
    int bad = 0;
    const char *arn = awsjson_str(awsjson_object(res.json, "StreamDescriptionSummary", &bad), "StreamARN", &bad);
    char *out = arn && !bad ? xstrdup(arn) : NULL; /* the caller's */
    ka_result_clear(&res);
    if (!out) errbuf_set(err, "DescribeStreamSummary: no StreamDescriptionSummary.StreamARN for stream %s", stream);
    return out;
}

int kinesis_admin_consumers(kinesis_admin_t *ka, const char *stream, kinesis_admin_consumer_fn fn, void *ud,
                            errbuf_t *err)
{
    char *arn = ka_stream_arn(ka, stream, err), *token = NULL;
    if (!arn) return -1;
    int rc = 0;
    do {
        cJSON *q = cJSON_CreateObject();
        if (!q) xalloc_oom(0);
        cJSON_AddStringToObject(q, "StreamARN", arn);
        if (token) cJSON_AddStringToObject(q, "NextToken", token);
        free(token);
        token = NULL;
        ka_result_t res;
        if ((rc = ka_call(ka, "ListStreamConsumers", q, &res, err)) == 0) {
            int bad = 0;
            const cJSON *list = awsjson_array(res.json, "Consumers", &bad), *c;
            cJSON_ArrayForEach(c, list) {
                const char *name = awsjson_str(c, "ConsumerName", &bad), *status = awsjson_str(c, "ConsumerStatus", &bad);
                const char *carn = awsjson_str(c, "ConsumerARN", &bad);
                if (name && status && carn) fn(ud, name, status, carn);
            }
            const char *next = awsjson_str(res.json, "NextToken", &bad);
            token = next && *next ? xstrdup(next) : NULL;
        }
        ka_result_clear(&res);
    } while (!rc && token);
    free(token);
    free(arn);
    return rc;
}

/* The ARN of consumer `name` of the stream (malloc'd), or NULL: *missing set
 * when there is none, else err says why the call failed. */
static char *ka_consumer_arn(kinesis_admin_t *ka, const char *stream_arn, const char *name, int *missing,
                             errbuf_t *err)
{
    cJSON *q = cJSON_CreateObject();
    if (!q) xalloc_oom(0);
    cJSON_AddStringToObject(q, "StreamARN", stream_arn);
    cJSON_AddStringToObject(q, "ConsumerName", name);
    ka_result_t res;
    char *arn = NULL;
    *missing = 0;
    if (ka_call(ka, "DescribeStreamConsumer", q, &res, err) == 0) {
        int bad = 0;
        const char *a = awsjson_str(awsjson_object(res.json, "ConsumerDescription", &bad), "ConsumerARN", &bad);
        arn = a && !bad ? xstrdup(a) : NULL; /* the caller's */
        if (!arn) errbuf_set(err, "DescribeStreamConsumer: no ConsumerDescription.ConsumerARN");
    } else {
        *missing = res.type && !strcmp(res.type, "ResourceNotFoundException");
    }
    ka_result_clear(&res);
    return arn;
}

int kinesis_admin_deregister_consumer(kinesis_admin_t *ka, const char *stream, const char *consumer, errbuf_t *err)
{
    char *sarn = ka_stream_arn(ka, stream, err);
    if (!sarn) return -1;
    int missing = 0, rc = 0;
    char *carn = ka_consumer_arn(ka, sarn, consumer, &missing, err);
    if (!carn) {
        if (missing) errbuf_set(err, "stream %s has no consumer %s (shardrun stream consumers %s lists them)",
                                stream, consumer, stream);
        free(sarn);
        return -1;
    }
    cJSON *q = cJSON_CreateObject();
    if (!q) xalloc_oom(0);
    cJSON_AddStringToObject(q, "ConsumerARN", carn);
    ka_result_t res;
    rc = ka_call(ka, "DeregisterStreamConsumer", q, &res, err);
    ka_result_clear(&res);
    /* until that consumer is gone: absent, or another of the same name (a
     * running worker registered it again) */
    for (int i = 0; !rc; i++) {
        errbuf_t why;
        char *now = ka_consumer_arn(ka, sarn, consumer, &missing, &why);
        int gone = missing || (now && strcmp(now, carn) != 0);
        free(now);
        if (gone) break;
        if (i + 1 >= KINESIS_ADMIN_WAIT_ACTIVE_S * 10)
            rc = errbuf_set(err, "consumer %s of stream %s is still there after %d s", consumer, stream,
                            KINESIS_ADMIN_WAIT_ACTIVE_S);
        else ka_sleep_ms(100);
    }
    free(carn);
    free(sarn);
    return rc;
}

/* ---- put ---------------------------------------------------------------------- */

/* One PutRecords call for recs[0..n); on return recs[0..*left) are the
 * entries to send again (compacted in place) and `why` says why they were
 * not written. -1 when the call failed for good (err set). */
static int ka_put_once(kinesis_admin_t *ka, const char *stream, source_put_record_t *recs, size_t n, size_t *left,
                       char *why, size_t whylen, errbuf_t *err)
{
    ka_result_t res;
    if (ka_call(ka, "PutRecords", kinesis_put_request(stream, recs, n), &res, err)) {
        int transient = res.transient;
        ka_result_clear(&res);
        if (!transient) return -1;
        snprintf(why, whylen, "%.*s", (int)(whylen ? whylen - 1 : 0), err->msg);
        *left = n; /* all of them again */
        return 0;
    }
    char *body = cJSON_PrintUnformatted(res.json);
    ka_result_clear(&res);
    if (!body) xalloc_oom(0);
    unsigned char *refused = xcalloc(n ? n : 1, 1); /* freed below */
    kinesis_put_result_t pr;
    awsjson_status_t st = kinesis_json_put_result(body, strlen(body), n, refused, &pr, err);
    free(body);
    if (st != AWSJSON_OK) {
        free(refused);
        return -1;
    }
    if (pr.refused && !pr.retryable) {
        free(refused);
        return errbuf_set(err, "PutRecords: %zu of %zu records refused for good (first: %s)", pr.refused, n,
                          pr.first_error);
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (refused[i]) recs[k++] = recs[i];
    free(refused);
    snprintf(why, whylen, "%s", pr.first_error);
    *left = k;
    return 0;
}

int kinesis_admin_put(kinesis_admin_t *ka, const char *stream, const source_put_record_t *recs, size_t n,
                      errbuf_t *err)
{
    source_put_record_t pending[KINESIS_PUT_MAX_RECORDS];
    size_t next = 0;
    int rc = 0;
    while (next < n && !rc) {
        size_t m = kinesis_put_fit(recs + next, n - next);
        memcpy(pending, recs + next, m * sizeof *pending);
        next += m;
        long backoff = KINESIS_ADMIN_PUT_BACKOFF_MS;
        for (int attempt = 1; m > 0; attempt++) {
            size_t left = 0;
            char why[768] = "";
            if (ka_put_once(ka, stream, pending, m, &left, why, sizeof why, err)) {
                rc = -1;
                break;
            }
            m = left;
            if (!m) break;
            if (attempt == KINESIS_ADMIN_PUT_ATTEMPTS) {
                rc = errbuf_set(err, "PutRecords to stream %s: %zu records still not written after %d attempts "
                                "(last error: %s)", stream, m, attempt, why);
                break;
            }
            long delay = backoff / 2 + rand() % (backoff / 2 + 1);
            char q[1024];
            log_warn("put_retry", "stream=%s records=%zu attempt=%d max_attempts=%d delay_ms=%ld error=%s", stream, m,
                     attempt, KINESIS_ADMIN_PUT_ATTEMPTS, delay, log_quote(why, q, sizeof q));
            ka_sleep_ms(delay);
            if (backoff < KINESIS_ADMIN_PUT_MAX_BACKOFF_MS) backoff *= 2;
        }
    }
    return rc;
}
