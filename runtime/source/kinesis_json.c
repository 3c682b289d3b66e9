#include "kinesis_json.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aws/awsjson.h"
#include "aws/jscan.h"
#include "base/base64.h"
#include "base/buf.h"
#include "base/xalloc.h"
#include "record/batch.h"
#include "record/kpl.h"
#include "record/seqnum.h"

/* Base64 of the KPL magic's first three bytes: only data starting so can be an aggregate. */
#define KPL_MAGIC_B64 "84ma"

/* ---- GetRecords and SubscribeToShardEvent ---------------------------------- */

/* What is parsed: both carry the same Records; the position field differs,
 * and an event may carry ChildShards. */
typedef struct kj_form {
    const char *what;      /* names it in messages */
    const char *next_key;  /* NextShardIterator, ContinuationSequenceNumber */
    int event;             /* ChildShards are read */
} kj_form_t;

static const kj_form_t kj_get_records = {"GetRecords response", "NextShardIterator", 0};
static const kj_form_t kj_event = {"SubscribeToShardEvent", "ContinuationSequenceNumber", 1};

/* What the first pass learns about one record, so the second needs no checks. */
typedef struct kj_rec {
    const char *data, *pkey, *seq;
    size_t data_len, pkey_len, seq_len;
    int64_t arrival_ms;
    long agg_off;   /* offset of its decoded aggregate in the scratch buffer, -1 if plain */
    size_t agg_len;
} kj_rec_t;

static int kj_decimal(const char *p, size_t n)
{
    if (n == 0 || n > SEQNUM_MAX_DIGITS) return 0;
    for (size_t i = 0; i < n; i++)
        if (p[i] < '0' || p[i] > '9') return 0;
    return 1;
}

/* Seconds with a fraction ("1700000000.123", "1.700000000123E9") to whole
 * milliseconds, exactly and without strtod: once per record. -1 for a form
 * it does not take (the caller then falls back to strtod). */
static int kj_seconds_to_ms(const char *p, size_t n, int64_t *ms)
{
    int64_t mant = 0;
    int digits = 0, frac = 0, seen_dot = 0, exp = 0, i = 0;
    if (n == 0 || n > 40) return -1;
    for (; i < (int)n && ((p[i] >= '0' && p[i] <= '9') || p[i] == '.'); i++) {
        if (p[i] == '.') {
            if (seen_dot++) return -1;
            continue;
        }
        if (++digits > 18) return -1;
        mant = mant * 10 + (p[i] - '0');
        frac += seen_dot;
    }
    if (!digits) return -1;
    if (i < (int)n) {
        if (p[i] != 'e' && p[i] != 'E') return -1;
        int sign = 1, e = 0, ed = 0;
        if (++i < (int)n && (p[i] == '+' || p[i] == '-')) sign = p[i++] == '-' ? -1 : 1;
        for (; i < (int)n && p[i] >= '0' && p[i] <= '9' && ed < 4; i++, ed++) e = e * 10 + (p[i] - '0');
        if (!ed || i != (int)n) return -1;
        exp = sign * e;
    }
    int shift = exp + 3 - frac; /* ms = mant * 10^shift */
    if (shift < -18 || shift > 18) return -1;
    for (; shift > 0; shift--) {
        if (mant > INT64_MAX / 10) return -1;
        mant *= 10;
    }
    int64_t div = 1;
    for (; shift < 0; shift++) div *= 10;
    *ms = (mant + div / 2) / div;
    return 0;
}

/* First pass over one record object: spans of its fields, its size, and its
 * KPL aggregate (decoded once into `aggs`) if it is one. */
static awsjson_status_t kj_scan_record(const kj_form_t *f, jscan_t *js, size_t i, kj_rec_t *a, buf_t *aggs,
                                       size_t *nrecs, size_t *arena, errbuf_t *err)
{
    if (jscan_peek(js) != JS_OBJECT) {
        if (jscan_skip(js)) return AWSJSON_ESYNTAX;
        errbuf_set(err, "%s: Records[%zu] is not an object", f->what, i);
        return AWSJSON_ESHAPE;
    }
    jscan_expect(js, '{');
    int bad = 0, got_d = 0, got_k = 0, got_s = 0, got_t = 0, rc = 0;
    double t = 0;
    memset(a, 0, sizeof *a);
    /* got_t: 1 parsed with strtod into t, 2 exact into a->arrival_ms */
    if (!jscan_accept(js, '}')) {
        do {
            const char *k;
            size_t kn;
            if (jscan_string(js, &k, &kn) || jscan_expect(js, ':')) return AWSJSON_ESYNTAX;
            if (AWSJSON_KEY_IS(k, kn, "Data")) rc = awsjson_scan_string(js, &a->data, &a->data_len, &bad), got_d |= rc == 1;
            else if (AWSJSON_KEY_IS(k, kn, "PartitionKey")) rc = awsjson_scan_string(js, &a->pkey, &a->pkey_len, &bad),
                                                        got_k |= rc == 1;
            else if (AWSJSON_KEY_IS(k, kn, "SequenceNumber")) rc = awsjson_scan_string(js, &a->seq, &a->seq_len, &bad),
                                                          got_s |= rc == 1;
            else if (AWSJSON_KEY_IS(k, kn, "ApproximateArrivalTimestamp")) {
                const char *num;
                size_t nl;
                int64_t ms;
                if (jscan_peek(js) != JS_NUMBER) {
                    rc = awsjson_scan_number(js, &t, &bad); /* null, or the wrong type */
                } else if (jscan_number_span(js, &num, &nl)) {
                    rc = -2;
                } else if (!kj_seconds_to_ms(num, nl, &ms)) {
                    a->arrival_ms = ms, got_t = 2, rc = 1; /* exact, the common case */
                } else {
                    char tmp[64], *end = NULL;          /* an unusual form: strtod */
                    snprintf(tmp, sizeof tmp, "%.*s", (int)(nl < 63 ? nl : 63), num);
                    t = strtod(tmp, &end);
                    if (!end || *end || nl >= 63) return AWSJSON_ESYNTAX;
                    got_t = 1, rc = 1;
                }
            }
            else rc = jscan_skip(js) ? -2 : 0;
            if (rc == -2) return AWSJSON_ESYNTAX;
        } while (jscan_accept(js, ','));
        if (jscan_expect(js, '}')) return AWSJSON_ESYNTAX;
    }
    if (bad || !got_d || !got_k || !got_s) {
        errbuf_set(err, "%s: Records[%zu]: Data, PartitionKey and SequenceNumber must be strings%s", f->what, i,
                   got_t || !bad ? "" : " and ApproximateArrivalTimestamp a number");
        return AWSJSON_ESHAPE;
    }
    if (!kj_decimal(a->seq, a->seq_len)) {
        errbuf_set(err, "%s: Records[%zu].SequenceNumber is not a decimal number", f->what, i);
        return AWSJSON_ESHAPE;
    }
    /* seconds with a fraction, as the service sends it */
    if (got_t != 2) a->arrival_ms = got_t ? (int64_t)(t * 1000.0 + 0.5) : 0;
    a->agg_off = -1;
    size_t n = 1;
    if (a->data_len >= 4 && !memcmp(a->data, KPL_MAGIC_B64, 4)) {
        size_t at = aggs->len;
        if (buf_reserve(aggs, base64_decoded_max(a->data_len))) xalloc_oom(a->data_len);
        long dl = base64_decode(a->data, a->data_len, (uint8_t *)aggs->data + at);
        if (dl < 0) {
            errbuf_set(err, "%s: Records[%zu].Data (sequence number %.*s) is not valid base64", f->what, i,
                       (int)a->seq_len, a->seq);
            return AWSJSON_ESHAPE;
        }
        if (kpl_is_aggregate((const uint8_t *)aggs->data + at, (size_t)dl)) {
            a->agg_off = (long)at;
            a->agg_len = (size_t)dl;
            aggs->len += (size_t)dl;
            n = kpl_count((const uint8_t *)aggs->data + at, (size_t)dl);
        }
    }
    *nrecs += n;
    *arena += base64_decoded_max(a->data_len) + a->pkey_len + (n * (a->seq_len + 3));
    return AWSJSON_OK;
}

/* Fills the batch from the first pass; base64 is decoded in place in the arena. */
static awsjson_status_t kj_records_fill(const kj_form_t *f, batch_t **bp, const kj_rec_t *recs, size_t n,
                                       const buf_t *aggs, size_t *bytes, errbuf_t *err)
{
    for (size_t i = 0; i < n; i++) {
        const kj_rec_t *a = &recs[i];
        if (a->agg_off < 0) {
            char *dst = batch_add_begin(bp, base64_decoded_max(a->data_len));
            long dl = dst ? base64_decode(a->data, a->data_len, (uint8_t *)dst) : -1;
            if (dl < 0) {
                errbuf_set(err, "%s: Records[%zu].Data (sequence number %.*s) is not valid base64", f->what, i,
                           (int)a->seq_len, a->seq);
                return AWSJSON_ESHAPE;
            }
            batch_add_end(bp, (size_t)dl, a->pkey, a->pkey_len, a->seq, a->seq_len, 0, a->arrival_ms);
            *bytes += (size_t)dl;
            continue;
        }
        kpl_iter_t it;
        kpl_user_record_t u;
        const uint8_t *agg = (const uint8_t *)aggs->data + a->agg_off;
        if (kpl_iter_init(&it, agg, a->agg_len) != 1) continue; /* cannot happen: checked in pass 1 */
        (*bp)->aggregated = 1;
        while (kpl_iter_next(&it, &u) == 1) {
            if (batch_add(bp, u.data, u.data_len, u.pkey, u.pkey_len, a->seq, a->seq_len, (int64_t)u.index,
                          a->arrival_ms)) {
                errbuf_set(err, "%s: more user records than counted", f->what);
                return AWSJSON_ESHAPE;
            }
        }
        *bytes += a->agg_len;
    }
    return AWSJSON_OK;
}

/* What the first pass learns about the whole body. */
typedef struct kj_top {
    kj_rec_t *recs;          /* malloc'd */
    size_t nrec;             /* source records */
    size_t nrecs, arena;     /* user records (KPL expanded) and the arena they need */
    buf_t aggs;              /* decoded aggregates */
    const char *next;        /* the position field (a span), NULL when absent or null */
    size_t next_len;
    double behind;
    int have_behind;
    const char *children;    /* ChildShards' JSON text (events), NULL when absent or null */
    size_t children_len;
} kj_top_t;

/* The top level: {"Records": [...], "<next_key>": "...", "MillisBehindLatest":
 * n, ...}; other members are skipped. */
static awsjson_status_t kj_scan_top(const kj_form_t *f, jscan_t *js, kj_top_t *t, errbuf_t *err)
{
    if (jscan_peek(js) != JS_OBJECT) {
        if (jscan_skip(js)) return AWSJSON_ESYNTAX;
        errbuf_set(err, "%s: expected an object with Records (array), %s (string) and MillisBehindLatest (number)",
                   f->what, f->next_key);
        return AWSJSON_ESHAPE;
    }
    jscan_expect(js, '{');
    int bad = 0;
    size_t cap = 0;
    if (jscan_accept(js, '}')) return AWSJSON_OK;
    do {
        const char *k;
        size_t kn;
        if (jscan_string(js, &k, &kn) || jscan_expect(js, ':')) return AWSJSON_ESYNTAX;
        int rc = 0;
        if (AWSJSON_KEY_IS(k, kn, "Records")) {
            jscan_type_t ty = jscan_peek(js);
            if (ty != JS_ARRAY) {
                if (jscan_skip(js)) return AWSJSON_ESYNTAX;
                if (ty != JS_NULL) bad = 1;
                continue;
            }
            jscan_expect(js, '[');
            if (jscan_accept(js, ']')) continue;
            do {
                if (t->nrec == cap) {
                    /* a record takes some 150 bytes of JSON: size for the whole body at once */
                    cap = cap ? cap * 2 : (size_t)(js->end - js->p) / 128 + 16;
                    t->recs = xrealloc(t->recs, cap * sizeof *t->recs); /* freed by the caller */
                }
                awsjson_status_t st =
                    kj_scan_record(f, js, t->nrec, &t->recs[t->nrec], &t->aggs, &t->nrecs, &t->arena, err);
                if (st != AWSJSON_OK) return st;
                t->nrec++;
            } while (jscan_accept(js, ','));
            if (jscan_expect(js, ']')) return AWSJSON_ESYNTAX;
        } else if (kn == strlen(f->next_key) && !memcmp(k, f->next_key, kn)) {
            rc = awsjson_scan_string(js, &t->next, &t->next_len, &bad);
        } else if (AWSJSON_KEY_IS(k, kn, "MillisBehindLatest")) {
            rc = awsjson_scan_number(js, &t->behind, &bad);
            t->have_behind |= rc == 1;
        } else if (f->event && AWSJSON_KEY_IS(k, kn, "ChildShards")) {
            jscan_type_t ty = jscan_peek(js);
            const char *from = js->p;
            rc = jscan_skip(js) ? -2 : 0;
            if (ty == JS_ARRAY) t->children = from, t->children_len = (size_t)(js->p - from);
            else if (ty != JS_NULL) bad = 1;
        } else {
            rc = jscan_skip(js) ? -2 : 0;
        }
        if (rc == -2) return AWSJSON_ESYNTAX;
    } while (jscan_accept(js, ','));
    if (jscan_expect(js, '}')) return AWSJSON_ESYNTAX;
    if (bad) {
        errbuf_set(err, "%s: expected an object with Records (array), %s (string), MillisBehindLatest (number)%s",
                   f->what, f->next_key, f->event ? " and ChildShards (array)" : "");
        return AWSJSON_ESHAPE;
    }
    return AWSJSON_OK;
}

/* The ShardIds of a ChildShards array: *ids malloc'd (each id too), *n. */
static awsjson_status_t kj_children(const char *text, size_t len, char ***ids, size_t *n, errbuf_t *err)
{
    cJSON *arr = cJSON_ParseWithLength(text, len);
    size_t count = (size_t)cJSON_GetArraySize(arr), i = 0;
    char **out = xcalloc(count + 1, sizeof *out); /* the caller's */
    const cJSON *o;
    int bad = 0;
    cJSON_ArrayForEach(o, arr) {
        out[i] = awsjson_strdup(o, "ShardId", &bad);
        if (bad || !out[i] || !*out[i]) {
            errbuf_set(err, "SubscribeToShardEvent: ChildShards[%zu].ShardId is missing or not a string", i);
            for (size_t k = 0; k <= i; k++) free(out[k]);
            free(out);
            cJSON_Delete(arr);
            return AWSJSON_ESHAPE;
        }
        i++;
    }
    cJSON_Delete(arr);
    *ids = out;
    *n = i;
    return AWSJSON_OK;
}

static awsjson_status_t kj_parse(const kj_form_t *f, const char *body, size_t len, source_records_t *out,
                                 char ***children, size_t *nchildren, errbuf_t *err)
{
    jscan_t js;
    jscan_init(&js, body ? body : "", body ? len : 0);
    kj_top_t t = {.behind = -1};
    size_t bytes = 0;
    batch_t *b = NULL;
    awsjson_status_t st = kj_scan_top(f, &js, &t, err);
    if (st == AWSJSON_OK && !jscan_at_end(&js)) st = AWSJSON_ESYNTAX;
    if (st == AWSJSON_ESYNTAX) {
        errbuf_set(err, "%s is not JSON (%zu bytes)", f->what, len);
        goto done;
    }
    if (st != AWSJSON_OK) goto done;
    if (t.children && (st = kj_children(t.children, t.children_len, children, nchildren, err)) != AWSJSON_OK)
        goto done;
    b = batch_new(t.nrecs, t.arena); /* handed to `out` on success */
    if ((st = kj_records_fill(f, &b, t.recs, t.nrec, &t.aggs, &bytes, err)) != AWSJSON_OK) {
        if (t.children) {
            for (size_t i = 0; i < *nchildren; i++) free((*children)[i]);
            free(*children);
            *children = NULL;
            *nchildren = 0;
        }
        goto done;
    }
    out->batch = b;
    b = NULL;
    out->next_iterator = t.next && t.next_len ? xstrndup(t.next, t.next_len) : NULL;
    out->millis_behind = t.have_behind ? (int64_t)t.behind : -1;
    out->bytes = bytes;
done:
    batch_free(b);
    buf_free(&t.aggs);
    free(t.recs);
    free(js.scratch);
    return st;
}

awsjson_status_t kinesis_json_get_records(const char *body, size_t len, source_records_t *out, errbuf_t *err)
{
    return kj_parse(&kj_get_records, body, len, out, NULL, NULL, err);
}

awsjson_status_t kinesis_json_subscribe_event(const char *payload, size_t len, source_records_t *out,
                                              char ***children, size_t *nchildren, errbuf_t *err)
{
    *children = NULL;
    *nchildren = 0;
    return kj_parse(&kj_event, payload, len, out, children, nchildren, err);
}

/* ---- ListShards ------------------------------------------------------------ */

static int kj_shard(const cJSON *o, source_shard_t *s)
{
    int bad = 0;
    if (!cJSON_IsObject(o)) return -1;
    s->id = awsjson_strdup(o, "ShardId", &bad);
    s->parent = awsjson_strdup(o, "ParentShardId", &bad);
    s->adjacent_parent = awsjson_strdup(o, "AdjacentParentShardId", &bad);
    const cJSON *h = awsjson_object(o, "HashKeyRange", &bad);
    const cJSON *r = awsjson_object(o, "SequenceNumberRange", &bad);
    if (h) {
        s->start_hash = awsjson_strdup(h, "StartingHashKey", &bad);
        s->end_hash = awsjson_strdup(h, "EndingHashKey", &bad);
    }
    if (r) {
        s->start_seq = awsjson_strdup(r, "StartingSequenceNumber", &bad);
        s->end_seq = awsjson_strdup(r, "EndingSequenceNumber", &bad);
    }
    if (bad || !s->id || !*s->id || !s->start_hash || !s->end_hash || !s->start_seq) return -1;
    return 0;
}

awsjson_status_t kinesis_json_list_shards(const char *body, size_t len, source_shard_list_t *acc,
                                          char **next_token, errbuf_t *err)
{
    *next_token = NULL;
    cJSON *j = cJSON_ParseWithLength(body, len);
    if (!j) {
        errbuf_set(err, "ListShards response is not JSON (%zu bytes)", len);
        return AWSJSON_ESYNTAX;
    }
    int bad = 0;
    const cJSON *arr = awsjson_array(j, "Shards", &bad);
    const char *tok = awsjson_str(j, "NextToken", &bad);
    if (!cJSON_IsObject(j) || bad || !arr) {
        errbuf_set(err, "ListShards response: expected an object with Shards (array) and NextToken (string)");
        cJSON_Delete(j);
        return AWSJSON_ESHAPE;
    }
    size_t n = (size_t)cJSON_GetArraySize(arr), i = 0;
    source_shard_t *add = xcalloc(n ? n : 1, sizeof *add); /* moved into acc below */
    const cJSON *o;
    cJSON_ArrayForEach(o, arr) {
        if (kj_shard(o, &add[i])) {
            errbuf_set(err, "ListShards response: Shards[%zu]: ShardId, HashKeyRange and SequenceNumberRange must "
                       "be present with string fields", i);
            for (size_t k = 0; k <= i; k++) source_shard_clear(&add[k]);
            free(add);
            cJSON_Delete(j);
            return AWSJSON_ESHAPE;
        }
        i++;
    }
    acc->shards = xrealloc(acc->shards, (acc->count + n + 1) * sizeof *acc->shards);
    memcpy(acc->shards + acc->count, add, n * sizeof *add);
    acc->count += n;
    free(add);
    *next_token = tok && *tok ? xstrdup(tok) : NULL;
    cJSON_Delete(j);
    return AWSJSON_OK;
}

/* ---- PutRecords ------------------------------------------------------------ */

/* 1 when a PutRecords entry's ErrorCode is worth retrying (throttled, internal failure). */
static int kinesis_json_put_retryable(const char *code)
{
    return code && (!strcmp(code, "ProvisionedThroughputExceededException") || !strcmp(code, "InternalFailure") ||
                    !strcmp(code, "ServiceUnavailable") || !strcmp(code, "KMSThrottlingException") ||
                    !strcmp(code, "ThrottlingException"));
}

awsjson_status_t kinesis_json_put_result(const char *body, size_t len, size_t n, unsigned char *refused,
                                         kinesis_put_result_t *out, errbuf_t *err)
{
    memset(out, 0, sizeof *out);
    out->retryable = 1;
    if (refused) memset(refused, 0, n);
    cJSON *j = cJSON_ParseWithLength(body, len);
    if (!j) {
        errbuf_set(err, "PutRecords response is not JSON (%zu bytes)", len);
        return AWSJSON_ESYNTAX;
    }
    int bad = 0;
    const cJSON *recs = awsjson_array(j, "Records", &bad);
    if (!recs || (size_t)cJSON_GetArraySize(recs) != n) {
        errbuf_set(err, "PutRecords response: expected Records, an array of %zu entries", n);
        cJSON_Delete(j);
        return AWSJSON_ESHAPE;
    }
    size_t i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, recs) {
        int ebad = 0;
        const char *code = awsjson_str(e, "ErrorCode", &ebad);
        if (!cJSON_IsObject(e) || ebad) {
            errbuf_set(err, "PutRecords response: Records[%zu] is not an entry with a string ErrorCode", i);
            cJSON_Delete(j);
            return AWSJSON_ESHAPE;
        }
        if (code && *code) {
            if (!out->refused++) {
                const char *msg = awsjson_str(e, "ErrorMessage", &ebad);
                snprintf(out->first_error, sizeof out->first_error, "%s%s%s", code, msg ? ": " : "", msg ? msg : "");
            }
            if (!kinesis_json_put_retryable(code)) out->retryable = 0;
            if (refused) refused[i] = 1;
        }
        i++;
    }
    if (!out->refused) out->retryable = 0;
    cJSON_Delete(j);
    return AWSJSON_OK;
}
