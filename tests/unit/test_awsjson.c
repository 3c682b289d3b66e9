/* test_awsjson: the Kinesis and DynamoDB response parsers and base64.
 *
 * Responses are written out as the services (and kinesalite/dynalite) send
 * them; rows as a KCL 2.x/3.x application writes them. Malformed bodies must
 * give a clear error naming the field, never a crash or a leak (run under
 * ASan by `make asan-test`). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "aws/awsjson.h"
#include "base/base64.h"
#include "record/batch.h"
#include "base/buf.h"
#include "record/kpl.h"

/* ---- base64 ---------------------------------------------------------------- */

static long b64(const char *s, char *out)
{
    long n = base64_decode(s, strlen(s), (uint8_t *)out);
    if (n >= 0) out[n] = '\0';
    return n;
}

static void test_base64_decodes_every_padding(void **state)
{
    char out[64];
    assert_int_equal(b64("", out), 0);
    assert_int_equal(b64("Zg==", out), 1);
    assert_string_equal(out, "f");
    assert_int_equal(b64("Zm8=", out), 2);
    assert_string_equal(out, "fo");
    assert_int_equal(b64("Zm9v", out), 3);
    assert_string_equal(out, "foo");
    assert_int_equal(b64("Zm9vYmFy", out), 6);
    assert_string_equal(out, "foobar");
    assert_int_equal(b64("+/+/", out), 3);
}

static void test_base64_rejects_what_kinesis_rejects(void **state)
{
    char out[64];
    assert_int_equal(b64("Zg", out), -1);       /* unpadded */
    assert_int_equal(b64("Zg=", out), -1);      /* short */
    assert_int_equal(b64("Zh==", out), -1);     /* non-zero dropped bits: not canonical */
    assert_int_equal(b64("Zm9=", out), -1);
    assert_int_equal(b64("Z===", out), -1);     /* three pads */
    assert_int_equal(b64("Zg==Zg==", out), -1); /* padding in the middle */
    assert_int_equal(b64("Zm 9v", out), -1);
    assert_int_equal(b64("Zm9v\n", out), -1);
    assert_int_equal(b64("-_-_", out), -1);     /* URL alphabet */
    assert_int_equal(b64("Zm\x80v", out), -1);
}

static void test_base64_round_trips_all_lengths(void **state)
{
    uint8_t data[300], back[400];
    for (size_t i = 0; i < sizeof data; i++) data[i] = (uint8_t)(i * 37 + 11);
    for (size_t n = 0; n <= sizeof data; n++) {
        buf_t b = BUF_INIT;
        assert_int_equal(base64_encode(&b, data, n), 0);
        assert_int_equal(b.len, (n + 2) / 3 * 4);
        assert_true(base64_decoded_max(b.len) <= sizeof back);
        assert_int_equal(base64_decode(b.data ? b.data : "", b.len, back), (long)n);
        assert_memory_equal(back, data, n);
        buf_free(&b);
    }
}

/* ---- GetRecords ---------------------------------------------------------------- */

static awsjson_status_t records(const char *body, source_records_t *out, errbuf_t *err)
{
    memset(out, 0, sizeof *out);
    err->msg[0] = '\0';
    return awsjson_get_records(body, strlen(body), out, err);
}

static void records_free(source_records_t *r)
{
    batch_free(r->batch);
    free(r->next_iterator);
}

static void test_get_records_plain(void **state)
{
    const char *body =
        "{\"Records\":[{\"Data\":\"aGVsbG8=\",\"PartitionKey\":\"k1\",\"SequenceNumber\":"
        "\"49590338271490256608559692538361571095921575989136588898\",\"ApproximateArrivalTimestamp\":1.7e9,"
        "\"EncryptionType\":\"NONE\"},{\"Data\":\"\",\"PartitionKey\":\"k2\",\"SequenceNumber\":\"2\"}],"
        "\"NextShardIterator\":\"AAAA\",\"MillisBehindLatest\":1500}";
    source_records_t r;
    errbuf_t err;
    assert_int_equal(records(body, &r, &err), AWSJSON_OK);
    assert_int_equal(r.batch->count, 2);
    assert_int_equal(r.batch->aggregated, 0);
    assert_string_equal(batch_data(r.batch, 0), "hello");
    assert_int_equal(r.batch->recs[0].data_len, 5);
    assert_string_equal(batch_pkey(r.batch, 0), "k1");
    assert_string_equal(batch_seq(r.batch, 0), "49590338271490256608559692538361571095921575989136588898");
    assert_int_equal(r.batch->recs[0].arrival_ms, 1700000000000LL);
    assert_int_equal(r.batch->recs[0].sub_seq, 0);
    assert_int_equal(r.batch->recs[1].data_len, 0);
    assert_string_equal(r.next_iterator, "AAAA");
    assert_int_equal(r.millis_behind, 1500);
    assert_int_equal(r.bytes, 5);
    records_free(&r);
}

static void test_get_records_shard_end_and_defaults(void **state)
{
    source_records_t r;
    errbuf_t err;
    assert_int_equal(records("{\"Records\":[],\"NextShardIterator\":null,\"ChildShards\":[{\"ShardId\":\"s2\"}]}",
                             &r, &err), AWSJSON_OK);
    assert_int_equal(r.batch->count, 0);
    assert_null(r.next_iterator);
    assert_int_equal(r.millis_behind, -1);
    records_free(&r);
    assert_int_equal(records("{\"Records\":[],\"MillisBehindLatest\":0}", &r, &err), AWSJSON_OK);
    assert_null(r.next_iterator);
    assert_int_equal(r.millis_behind, 0);
    records_free(&r);
}

/* A GetRecords body whose one record holds `data` (base64-encoded here). */
static char *body_with_data(const void *data, size_t len, const char *seq)
{
    buf_t b = BUF_INIT;
    assert_int_equal(buf_append_str(&b, "{\"Records\":[{\"Data\":\""), 0);
    assert_int_equal(base64_encode(&b, data, len), 0);
    assert_int_equal(buf_printf(&b, "\",\"PartitionKey\":\"outer\",\"SequenceNumber\":\"%s\"}],"
                                    "\"NextShardIterator\":\"it\",\"MillisBehindLatest\":0}", seq), 0);
    return buf_detach(&b);
}

static void test_get_records_expands_kpl_aggregates(void **state)
{
    kpl_user_record_t in[3] = {
        {(const uint8_t *)"a", 1, NULL, 0, (const uint8_t *)"one", 3, 0},
        {(const uint8_t *)"b", 1, NULL, 0, (const uint8_t *)"two", 3, 1},
        {(const uint8_t *)"a", 1, NULL, 0, (const uint8_t *)"three", 5, 2},
    };
    buf_t agg = BUF_INIT;
    assert_int_equal(kpl_encode(&agg, in, 3), 0);
    char *body = body_with_data(agg.data, agg.len, "77");
    source_records_t r;
    errbuf_t err;
    assert_int_equal(records(body, &r, &err), AWSJSON_OK);
    assert_int_equal(r.batch->count, 3);
    assert_int_equal(r.batch->aggregated, 1);
    const char *want[] = {"one", "two", "three"}, *keys[] = {"a", "b", "a"};
    for (size_t i = 0; i < 3; i++) {
        assert_string_equal(batch_data(r.batch, i), want[i]);
        assert_string_equal(batch_pkey(r.batch, i), keys[i]);
        assert_string_equal(batch_seq(r.batch, i), "77");
        assert_int_equal(r.batch->recs[i].sub_seq, (int64_t)i);
    }
    records_free(&r);
    free(body);

    /* a broken digest: passed through unchanged, as one plain record */
    agg.data[agg.len - 1] ^= 1;
    body = body_with_data(agg.data, agg.len, "78");
    assert_int_equal(records(body, &r, &err), AWSJSON_OK);
    assert_int_equal(r.batch->count, 1);
    assert_int_equal(r.batch->aggregated, 0);
    assert_int_equal(r.batch->recs[0].data_len, agg.len);
    assert_memory_equal(batch_data(r.batch, 0), agg.data, agg.len);
    assert_string_equal(batch_pkey(r.batch, 0), "outer");
    records_free(&r);
    free(body);
    buf_free(&agg);
}

/* The single-pass reader: escapes in any string, unknown members of every
 * type skipped, null fields treated as absent. */
static void test_get_records_reads_escapes_and_skips_unknown_members(void **state)
{
    source_records_t out = {0};
    errbuf_t err;
    const char *body =
        "{ \"Unknown\": {\"a\": [1, 2.5e3, true, false, null, {\"b\": \"\\\"\"}]},"
        "  \"Records\": [ {\"EncryptionType\": \"NONE\", \"Data\": \"\\/w==\","
        "    \"PartitionKey\": \"k\\u00e9\\ud83d\\ude00\\n\", \"SequenceNumber\": \"49590\","
        "    \"ApproximateArrivalTimestamp\": 1.7000000005E9, \"Extra\": null } ],"
        "  \"NextShardIterator\": \"it\\\"1\", \"MillisBehindLatest\": 0, \"ChildShards\": [] }";
    awsjson_status_t st = awsjson_get_records(body, strlen(body), &out, &err);
    if (st != AWSJSON_OK) fail_msg("%s", err.msg);
    assert_int_equal(out.batch->count, 1);
    assert_int_equal(out.batch->recs[0].data_len, 1); /* "\\/w==" is "/w==": the escaped slash became a slash */
    assert_int_equal((unsigned char)batch_data(out.batch, 0)[0], 0xff);
    assert_int_equal(out.batch->recs[0].pkey_len, strlen("k\xc3\xa9\xf0\x9f\x98\x80\n"));
    assert_memory_equal(batch_pkey(out.batch, 0), "k\xc3\xa9\xf0\x9f\x98\x80\n", out.batch->recs[0].pkey_len);
    assert_string_equal(out.next_iterator, "it\"1");
    assert_int_equal(out.batch->recs[0].arrival_ms, 1700000000500LL);
    assert_int_equal(out.millis_behind, 0);
    batch_free(out.batch);
    free(out.next_iterator);
    static const char *const bad[] = {
        "{\"Records\":[{\"Data\":\"\",\"PartitionKey\":\"\\ud800\",\"SequenceNumber\":\"1\"}]}",
        "{\"Records\":[{\"Data\":\"\",\"PartitionKey\":\"\\x\",\"SequenceNumber\":\"1\"}]}",
        "{\"Records\":[],\"NextShardIterator\":\"a\"} trailing",
        "{\"Records\":[],\"X\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
        "{\"Records\":[],\"MillisBehindLatest\":-}",
        "{\"Records\":[{\"Data\":\"\",\"PartitionKey\":\"k\",\"SequenceNumber\":\"1\"",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        memset(&out, 0, sizeof out);
        st = awsjson_get_records(bad[i], strlen(bad[i]), &out, &err);
        if (st != AWSJSON_ESYNTAX) fail_msg("case %zu: status %d, want a syntax error", i, (int)st);
    }
}

/* Arrival timestamps are converted to whole milliseconds exactly. */
static void test_get_records_arrival_timestamps_in_every_form(void **state)
{
    static const struct { const char *ts; long long ms; } cases[] = {
        {"1700000000.123", 1700000000123LL}, {"1700000000", 1700000000000LL}, {"1.700000000123E9", 1700000000123LL},
        {"1.7e9", 1700000000000LL},          {"1700000000.1236", 1700000000124LL}, {"17000000001e-1", 1700000000100LL},
        {"0.0005", 1LL},                     {"1.7E+9", 1700000000000LL},          {"12345678901234567890.5e-10", 1234567890123LL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char body[256];
        snprintf(body, sizeof body, "{\"Records\":[{\"Data\":\"\",\"PartitionKey\":\"k\",\"SequenceNumber\":\"1\","
                 "\"ApproximateArrivalTimestamp\":%s}]}", cases[i].ts);
        source_records_t r;
        errbuf_t err;
        if (records(body, &r, &err) != AWSJSON_OK) fail_msg("%s: %s", cases[i].ts, err.msg);
        if (r.batch->recs[0].arrival_ms != cases[i].ms)
            fail_msg("%s: %lld ms, want %lld", cases[i].ts, (long long)r.batch->recs[0].arrival_ms, cases[i].ms);
        records_free(&r);
    }
}

static void test_get_records_rejects_malformed_bodies(void **state)
{
    static const struct {
        const char *body;
        awsjson_status_t st;
        const char *mention;
    } cases[] = {
        {"", AWSJSON_ESYNTAX, "not JSON"},
        {"{\"Records\":[", AWSJSON_ESYNTAX, "not JSON"},
        {"[]", AWSJSON_ESHAPE, "expected an object"},
        {"{\"Records\":{}}", AWSJSON_ESHAPE, "Records"},
        {"{\"Records\":[],\"NextShardIterator\":5}", AWSJSON_ESHAPE, "NextShardIterator"},
        {"{\"Records\":[],\"MillisBehindLatest\":\"5\"}", AWSJSON_ESHAPE, "MillisBehindLatest"},
        {"{\"Records\":[7]}", AWSJSON_ESHAPE, "Records[0] is not an object"},
        {"{\"Records\":[{\"Data\":5,\"PartitionKey\":\"k\",\"SequenceNumber\":\"1\"}]}", AWSJSON_ESHAPE, "Records[0]"},
        {"{\"Records\":[{\"Data\":\"\",\"SequenceNumber\":\"1\"}]}", AWSJSON_ESHAPE, "PartitionKey"},
        {"{\"Records\":[{\"Data\":\"\",\"PartitionKey\":\"k\",\"SequenceNumber\":1}]}", AWSJSON_ESHAPE, "Records[0]"},
        {"{\"Records\":[{\"Data\":\"\",\"PartitionKey\":\"k\",\"SequenceNumber\":\"12a\"}]}", AWSJSON_ESHAPE,
         "SequenceNumber is not a decimal"},
        {"{\"Records\":[{\"Data\":\"aGVsbG8\",\"PartitionKey\":\"k\",\"SequenceNumber\":\"1\"}]}", AWSJSON_ESHAPE,
         "not valid base64"},
        {"{\"Records\":[{\"Data\":\"84maAA==\",\"PartitionKey\":\"k\",\"SequenceNumber\":\"1\"}]}", AWSJSON_OK, ""},
        {"{\"Records\":[{\"Data\":\"84ma!!==\",\"PartitionKey\":\"k\",\"SequenceNumber\":\"1\"}]}", AWSJSON_ESHAPE,
         "not valid base64"},
        {"{\"Records\":[{\"Data\":\"\",\"PartitionKey\":\"k\",\"SequenceNumber\":\"1\","
         "\"ApproximateArrivalTimestamp\":\"x\"}]}", AWSJSON_ESHAPE, "ApproximateArrivalTimestamp"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        source_records_t r;
        errbuf_t err;
        awsjson_status_t st = records(cases[i].body, &r, &err);
        if (st != cases[i].st) fail_msg("case %zu (%s): status %d, error %s", i, cases[i].body, st, err.msg);
        if (st != AWSJSON_OK) {
            assert_null(r.batch);
            assert_null(r.next_iterator);
            if (!strstr(err.msg, cases[i].mention)) fail_msg("case %zu: message \"%s\" lacks \"%s\"", i, err.msg,
                                                             cases[i].mention);
        }
        records_free(&r);
    }
}

/* ---- ListShards ------------------------------------------------------------------ */

static void test_list_shards_pages_accumulate(void **state)
{
    const char *p1 =
        "{\"Shards\":[{\"ShardId\":\"shardId-000000000000\",\"HashKeyRange\":{\"StartingHashKey\":\"0\","
        "\"EndingHashKey\":\"170141183460469231731687303715884105727\"},\"SequenceNumberRange\":"
        "{\"StartingSequenceNumber\":\"100\",\"EndingSequenceNumber\":\"200\"}}],\"NextToken\":\"tok\"}";
    const char *p2 =
        "{\"Shards\":[{\"ShardId\":\"shardId-000000000002\",\"ParentShardId\":\"shardId-000000000000\","
        "\"AdjacentParentShardId\":\"shardId-000000000001\",\"HashKeyRange\":{\"StartingHashKey\":\"0\","
        "\"EndingHashKey\":\"9\"},\"SequenceNumberRange\":{\"StartingSequenceNumber\":\"300\"}}]}";
    source_shard_list_t *l = calloc(1, sizeof *l);
    char *tok = NULL;
    errbuf_t err;
    assert_int_equal(awsjson_list_shards(p1, strlen(p1), l, &tok, &err), AWSJSON_OK);
    assert_string_equal(tok, "tok");
    free(tok);
    assert_int_equal(awsjson_list_shards(p2, strlen(p2), l, &tok, &err), AWSJSON_OK);
    assert_null(tok);
    assert_int_equal(l->count, 2);
    assert_string_equal(l->shards[0].end_seq, "200");
    assert_null(l->shards[0].parent);
    assert_string_equal(l->shards[1].parent, "shardId-000000000000");
    assert_string_equal(l->shards[1].adjacent_parent, "shardId-000000000001");
    assert_null(l->shards[1].end_seq);
    assert_string_equal(l->shards[1].end_hash, "9");

    const char *bad[] = {"nope", "{}", "{\"Shards\":[1]}", "{\"Shards\":[{\"ShardId\":\"s\"}]}",
                         "{\"Shards\":[],\"NextToken\":[]}",
                         "{\"Shards\":[{\"ShardId\":5,\"HashKeyRange\":{},\"SequenceNumberRange\":{}}]}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_true(awsjson_list_shards(bad[i], strlen(bad[i]), l, &tok, &err) != AWSJSON_OK);
        assert_null(tok);
        assert_true(strstr(err.msg, "ListShards") != NULL);
    }
    assert_int_equal(l->count, 2); /* left as it was */
    source_shard_list_free(l);
}

/* ---- DynamoDB ---------------------------------------------------------------------- */

static lease_list_t *scan(const char *body, char **last, awsjson_status_t want)
{
    lease_list_t *l = calloc(1, sizeof *l);
    errbuf_t err;
    assert_int_equal(awsjson_ddb_scan(body, strlen(body), l, last, &err), want);
    return l;
}

static void test_scan_reads_kcl_rows(void **state)
{
    /* as KCL 2.x writes them: leaseKey = shard id, no streamName/shardId */
    const char *body =
        "{\"Count\":2,\"Items\":[{\"leaseKey\":{\"S\":\"shardId-000000000001\"},\"leaseOwner\":{\"S\":\"kcl-host-1\"},"
        "\"leaseCounter\":{\"N\":\"1234\"},\"checkpoint\":{\"S\":\"49590338271490256608559692538361571095921575989136588898\"},"
        "\"checkpointSubSequenceNumber\":{\"N\":\"3\"},\"ownerSwitchesSinceCheckpoint\":{\"N\":\"2\"},"
        "\"parentShardId\":{\"SS\":[\"shardId-000000000000\"]},\"startingHashKey\":{\"S\":\"0\"},"
        "\"endingHashKey\":{\"S\":\"99\"},\"pendingCheckpoint\":{\"S\":\"1\"},\"throughputKBps\":{\"N\":\"1.5\"},"
        "\"checkpointOwner\":{\"S\":\"kcl-host-1\"}},"
        "{\"leaseKey\":{\"S\":\"shardId-000000000000\"},\"leaseCounter\":{\"N\":\"9\"},"
        "\"checkpoint\":{\"S\":\"SHARD_END\"},\"checkpointSubSequenceNumber\":{\"N\":\"0\"},"
        "\"ownerSwitchesSinceCheckpoint\":{\"N\":\"0\"},\"childShardIds\":{\"SS\":[\"shardId-000000000001\","
        "\"shardId-000000000002\"]}}],"
        "\"LastEvaluatedKey\":{\"leaseKey\":{\"S\":\"shardId-000000000000\"}}}";
    char *last = NULL;
    lease_list_t *l = scan(body, &last, AWSJSON_OK);
    assert_int_equal(l->count, 2);
    lease_t *a = &l->leases[0], *b = &l->leases[1];
    assert_null(a->invalid);
    assert_string_equal(a->key, "shardId-000000000001");
    assert_string_equal(a->shard, "shardId-000000000001");
    assert_null(a->stream);
    assert_string_equal(a->owner, "kcl-host-1");
    assert_int_equal(a->counter, 1234);
    assert_string_equal(a->checkpoint, "49590338271490256608559692538361571095921575989136588898");
    assert_int_equal(a->checkpoint_sub, 3);
    assert_int_equal(a->owner_switches, 2);
    assert_int_equal(a->nparents, 1);
    assert_string_equal(a->parents[0], "shardId-000000000000");
    assert_string_equal(a->end_hash, "99");
    assert_null(b->invalid);
    assert_null(b->owner);
    assert_string_equal(b->checkpoint, "SHARD_END");
    assert_int_equal(b->nchildren, 2);
    assert_non_null(last);
    cJSON *k = cJSON_Parse(last);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(k, "leaseKey"), "S")->valuestring,
                        "shardId-000000000000");
    cJSON_Delete(k);
    free(last);
    lease_list_free(l);
}

static void test_scan_multistream_key_gives_shard(void **state)
{
    const char *body = "{\"Items\":[{\"leaseKey\":{\"S\":\"123456789012:orders:1700000000:shardId-000000000004\"},"
                       "\"leaseCounter\":{\"N\":\"1\"},\"checkpoint\":{\"S\":\"TRIM_HORIZON\"}}]}";
    char *last = NULL;
    lease_list_t *l = scan(body, &last, AWSJSON_OK);
    assert_null(last);
    assert_null(l->leases[0].invalid);
    assert_string_equal(l->leases[0].shard, "shardId-000000000004");
    lease_list_free(l);
}

static void test_scan_marks_malformed_rows_invalid(void **state)
{
    static const struct {
        const char *item;
        const char *why;
    } rows[] = {
        {"5", "attribute map"},
        {"{\"leaseCounter\":{\"N\":\"1\"},\"checkpoint\":{\"S\":\"LATEST\"}}", "leaseKey"},
        {"{\"leaseKey\":{\"N\":\"1\"},\"leaseCounter\":{\"N\":\"1\"},\"checkpoint\":{\"S\":\"LATEST\"}}", "leaseKey"},
        {"{\"leaseKey\":{\"S\":\"k\"},\"leaseCounter\":{\"S\":\"1\"},\"checkpoint\":{\"S\":\"LATEST\"}}",
         "leaseCounter"},
        {"{\"leaseKey\":{\"S\":\"k\"},\"leaseCounter\":{\"N\":\"1.5\"},\"checkpoint\":{\"S\":\"LATEST\"}}",
         "leaseCounter"},
        {"{\"leaseKey\":{\"S\":\"k\"},\"checkpoint\":{\"S\":\"LATEST\"}}", "leaseCounter is missing"},
        {"{\"leaseKey\":{\"S\":\"k\"},\"leaseCounter\":{\"N\":\"99999999999999999999\"},\"checkpoint\":{\"S\":\"1\"}}",
         "leaseCounter"},
        {"{\"leaseKey\":{\"S\":\"k\"},\"leaseCounter\":{\"N\":\"1\"}}", "checkpoint"},
        {"{\"leaseKey\":{\"S\":\"k\"},\"leaseCounter\":{\"N\":\"1\"},\"checkpoint\":{\"S\":\"OLDEST\"}}", "checkpoint"},
        {"{\"leaseKey\":{\"S\":\"k\"},\"leaseCounter\":{\"N\":\"1\"},\"checkpoint\":{\"S\":\"1\"},"
         "\"leaseOwner\":{\"S\":\"\"}}", "leaseOwner"},
        {"{\"leaseKey\":{\"S\":\"k\"},\"leaseCounter\":{\"N\":\"1\"},\"checkpoint\":{\"S\":\"1\"},"
         "\"parentShardId\":{\"S\":\"p\"}}", "parentShardId"},
        {"{\"leaseKey\":{\"S\":\"k\"},\"leaseCounter\":{\"N\":\"1\"},\"checkpoint\":{\"S\":\"1\"},"
         "\"childShardIds\":{\"SS\":[1,\"c\"]}}", "childShardIds"},
        {"{\"leaseKey\":{\"S\":\"k\"},\"leaseCounter\":{\"N\":\"1\"},\"checkpoint\":{\"S\":\"1\"},"
         "\"ownerSwitchesSinceCheckpoint\":\"3\"}", "ownerSwitchesSinceCheckpoint"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        char body[1024];
        snprintf(body, sizeof body, "{\"Items\":[%s]}", rows[i].item);
        char *last = NULL;
        lease_list_t *l = scan(body, &last, AWSJSON_OK);
        assert_int_equal(l->count, 1);
        lease_t *x = &l->leases[0];
        if (!x->invalid || !strstr(x->invalid, rows[i].why))
            fail_msg("row %zu (%s): invalid = %s, wanted a mention of %s", i, rows[i].item,
                     x->invalid ? x->invalid : "(null)", rows[i].why);
        assert_non_null(x->key);
        lease_list_free(l);
    }
}

static void test_scan_rejects_malformed_responses(void **state)
{
    const char *bad[] = {"", "{", "[]", "{}", "{\"Items\":{}}", "{\"Items\":[],\"LastEvaluatedKey\":\"k\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *last = NULL;
        lease_list_t *l = calloc(1, sizeof *l);
        errbuf_t err;
        assert_true(awsjson_ddb_scan(bad[i], strlen(bad[i]), l, &last, &err) != AWSJSON_OK);
        assert_true(strstr(err.msg, "Scan") != NULL);
        assert_null(last);
        assert_int_equal(l->count, 0);
        lease_list_free(l);
    }
}

static void test_item_round_trips(void **state)
{
    char *parents[] = {"shardId-000000000000", "shardId-000000000001"};
    lease_t in = {.key = "words:shardId-000000000002", .stream = "words", .shard = "shardId-000000000002",
                  .owner = "host:1:ab", .counter = 7, .checkpoint = "123", .checkpoint_sub = 4,
                  .owner_switches = 1, .parents = parents, .nparents = 2, .start_hash = "0", .end_hash = "5",
                  .info = "{\"state\":\"processing\"}"};
    cJSON *item = awsjson_ddb_item(&in);
    assert_non_null(cJSON_GetObjectItem(cJSON_GetObjectItem(item, "parentShardId"), "SS"));
    assert_null(cJSON_GetObjectItem(item, "childShardIds"));
    lease_t out = {0};
    awsjson_ddb_lease(item, &out);
    cJSON_Delete(item);
    assert_null(out.invalid);
    assert_string_equal(out.key, in.key);
    assert_string_equal(out.stream, "words");
    assert_string_equal(out.shard, in.shard);
    assert_string_equal(out.owner, in.owner);
    assert_int_equal(out.counter, 7);
    assert_string_equal(out.checkpoint, "123");
    assert_int_equal(out.checkpoint_sub, 4);
    assert_int_equal(out.owner_switches, 1);
    assert_int_equal(out.nparents, 2);
    assert_string_equal(out.parents[1], "shardId-000000000001");
    assert_string_equal(out.info, in.info);
    lease_clear(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base64_decodes_every_padding),
        cmocka_unit_test(test_base64_rejects_what_kinesis_rejects),
        cmocka_unit_test(test_base64_round_trips_all_lengths),
        cmocka_unit_test(test_get_records_plain),
        cmocka_unit_test(test_get_records_shard_end_and_defaults),
        cmocka_unit_test(test_get_records_expands_kpl_aggregates),
        cmocka_unit_test(test_get_records_reads_escapes_and_skips_unknown_members),
        cmocka_unit_test(test_get_records_arrival_timestamps_in_every_form),
        cmocka_unit_test(test_get_records_rejects_malformed_bodies),
        cmocka_unit_test(test_list_shards_pages_accumulate),
        cmocka_unit_test(test_scan_reads_kcl_rows),
        cmocka_unit_test(test_scan_multistream_key_gives_shard),
        cmocka_unit_test(test_scan_marks_malformed_rows_invalid),
        cmocka_unit_test(test_scan_rejects_malformed_responses),
        cmocka_unit_test(test_item_round_trips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
