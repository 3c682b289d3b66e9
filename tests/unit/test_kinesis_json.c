/* test_kinesis_json: the Kinesis responses a source reads (GetRecords with
 * KPL aggregates, ListShards, PutRecords, SubscribeToShardEvent payloads), as
 * the service (and kinesalite, kinesis-mock) send them.
 * Malformed bodies must give a clear error naming the field, never a crash
 * or a leak (run under ASan by `make asan-test`). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "base/base64.h"
#include "base/buf.h"
#include "kpl_encode.h"
#include "record/batch.h"
#include "record/kpl.h"
#include "source/kinesis_json.h"

/* ---- GetRecords ---------------------------------------------------------------- */

static awsjson_status_t records(const char *body, source_records_t *out, errbuf_t *err)
{
    memset(out, 0, sizeof *out);
    err->msg[0] = '\0';
    return kinesis_json_get_records(body, strlen(body), out, err);
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
    awsjson_status_t st = kinesis_json_get_records(body, strlen(body), &out, &err);
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
        st = kinesis_json_get_records(bad[i], strlen(bad[i]), &out, &err);
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
    assert_int_equal(kinesis_json_list_shards(p1, strlen(p1), l, &tok, &err), AWSJSON_OK);
    assert_string_equal(tok, "tok");
    free(tok);
    assert_int_equal(kinesis_json_list_shards(p2, strlen(p2), l, &tok, &err), AWSJSON_OK);
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
        assert_true(kinesis_json_list_shards(bad[i], strlen(bad[i]), l, &tok, &err) != AWSJSON_OK);
        assert_null(tok);
        assert_true(strstr(err.msg, "ListShards") != NULL);
    }
    assert_int_equal(l->count, 2); /* left as it was */
    source_shard_list_free(l);
}

/* ---- PutRecords ------------------------------------------------------------------ */

static void test_put_result_null_error_code_means_written(void **state)
{
    const char *body = "{\"FailedRecordCount\":null,\"Records\":[{\"SequenceNumber\":\"1\",\"ShardId\":\"s\","
                       "\"ErrorCode\":null,\"ErrorMessage\":null},{\"SequenceNumber\":\"2\",\"ShardId\":\"s\"}]}";
    unsigned char refused[2] = {9, 9};
    kinesis_put_result_t r;
    errbuf_t err;
    assert_int_equal(kinesis_json_put_result(body, strlen(body), 2, refused, &r, &err), AWSJSON_OK);
    assert_int_equal(r.refused, 0);
    assert_int_equal(refused[0], 0);
    assert_int_equal(refused[1], 0);
    assert_string_equal(r.first_error, "");
}

static void test_put_result_names_refused_entries_and_their_kind(void **state)
{
    const char *body = "{\"FailedRecordCount\":2,\"Records\":[{\"SequenceNumber\":\"1\",\"ErrorCode\":null},"
                       "{\"ErrorCode\":\"ProvisionedThroughputExceededException\",\"ErrorMessage\":\"Rate exceeded\"},"
                       "{\"ErrorCode\":\"InternalFailure\"}]}";
    unsigned char refused[3];
    kinesis_put_result_t r;
    errbuf_t err;
    assert_int_equal(kinesis_json_put_result(body, strlen(body), 3, refused, &r, &err), AWSJSON_OK);
    assert_int_equal(r.refused, 2);
    assert_true(r.retryable);
    assert_memory_equal(refused, "\0\1\1", 3);
    assert_string_equal(r.first_error, "ProvisionedThroughputExceededException: Rate exceeded");
    const char *kms = "{\"Records\":[{\"ErrorCode\":\"KMSAccessDeniedException\",\"ErrorMessage\":\"denied\"},"
                      "{\"ErrorCode\":\"InternalFailure\"}]}";
    assert_int_equal(kinesis_json_put_result(kms, strlen(kms), 2, NULL, &r, &err), AWSJSON_OK);
    assert_int_equal(r.refused, 2);
    assert_false(r.retryable); /* one refusal will not go away by retrying */
}

static void test_put_result_rejects_wrong_shapes(void **state)
{
    static const char *const bad[] = {
        "", "[]", "{}", "{\"Records\":null}", "{\"Records\":[{}]}", /* one entry for two records */
        "{\"Records\":[{},5]}", "{\"Records\":[{},{\"ErrorCode\":7}]}",
    };
    kinesis_put_result_t r;
    errbuf_t err;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        if (kinesis_json_put_result(bad[i], strlen(bad[i]), 2, NULL, &r, &err) == AWSJSON_OK)
            fail_msg("case %zu (%s) accepted", i, bad[i]);
        assert_non_null(strstr(err.msg, "PutRecords"));
    }
}

/* ---- SubscribeToShardEvent ----------------------------------------------------------- */

static void test_subscribe_event_as_kinesis_mock_sends_it(void **state)
{
    /* captured from kinesis-mock 0.6.2: ChildShards null, EncryptionType, seconds with a fraction */
    const char *p = "{\"Records\":[{\"ApproximateArrivalTimestamp\":1795992592.942,\"Data\":\"aGVsbG8=\","
                    "\"EncryptionType\":\"NONE\",\"PartitionKey\":\"a\",\"SequenceNumber\":\"4968001\"}],"
                    "\"ContinuationSequenceNumber\":\"4968001\",\"MillisBehindLatest\":0,\"ChildShards\":null}";
    source_records_t r = {0};
    errbuf_t err = {0};
    char **kids = (char **)&err; /* overwritten */
    size_t nkids = 9;
    assert_int_equal(kinesis_json_subscribe_event(p, strlen(p), &r, &kids, &nkids, &err), AWSJSON_OK);
    assert_int_equal(r.batch->count, 1);
    assert_string_equal(batch_data(r.batch, 0), "hello");
    assert_int_equal(r.batch->recs[0].arrival_ms, 1795992592942LL);
    assert_string_equal(r.next_iterator, "4968001");
    assert_int_equal(r.millis_behind, 0);
    assert_null(kids);
    assert_int_equal(nkids, 0);
    records_free(&r);

    /* an empty event (the mock sends one every second) */
    const char *e = "{\"Records\":[],\"ContinuationSequenceNumber\":\"4968001\",\"MillisBehindLatest\":0,"
                    "\"ChildShards\":null}";
    assert_int_equal(kinesis_json_subscribe_event(e, strlen(e), &r, &kids, &nkids, &err), AWSJSON_OK);
    assert_int_equal(r.batch->count, 0);
    assert_string_equal(r.next_iterator, "4968001");
    records_free(&r);
}

static void test_subscribe_event_shard_end_names_the_children(void **state)
{
    /* as AWS ends a closed shard: no continuation, the children */
    const char *p = "{\"Records\":[],\"MillisBehindLatest\":0,\"ChildShards\":["
                    "{\"ShardId\":\"shardId-000000000001\",\"ParentShards\":[\"shardId-000000000000\"],"
                    "\"HashKeyRange\":{\"StartingHashKey\":\"0\",\"EndingHashKey\":\"1\"}},"
                    "{\"ShardId\":\"shardId-000000000002\",\"ParentShards\":[\"shardId-000000000000\"],"
                    "\"HashKeyRange\":{\"StartingHashKey\":\"2\",\"EndingHashKey\":\"3\"}}]}";
    source_records_t r = {0};
    errbuf_t err = {0};
    char **kids = NULL;
    size_t nkids = 0;
    assert_int_equal(kinesis_json_subscribe_event(p, strlen(p), &r, &kids, &nkids, &err), AWSJSON_OK);
    assert_null(r.next_iterator);
    assert_int_equal(nkids, 2);
    assert_string_equal(kids[0], "shardId-000000000001");
    assert_string_equal(kids[1], "shardId-000000000002");
    for (size_t i = 0; i < nkids; i++) free(kids[i]);
    free(kids);
    records_free(&r);
}

static void test_subscribe_event_rejects_malformed_payloads(void **state)
{
    static const struct {
        const char *payload, *says;
        awsjson_status_t st;
    } cases[] = {
        {"{\"Records\":[],\"ContinuationSequenceNumber\":5}", "ContinuationSequenceNumber (string)", AWSJSON_ESHAPE},
        {"{\"Records\":[],\"ChildShards\":{}}", "ChildShards (array)", AWSJSON_ESHAPE},
        {"{\"Records\":[],\"ChildShards\":[{\"ParentShards\":[]}]}", "ChildShards[0].ShardId", AWSJSON_ESHAPE},
        {"{\"Records\":[{\"Data\":1}]}", "SubscribeToShardEvent: Records[0]", AWSJSON_ESHAPE},
        {"{\"Records\":[", "SubscribeToShardEvent is not JSON", AWSJSON_ESYNTAX},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        source_records_t r = {0};
        errbuf_t err = {0};
        char **kids = NULL;
        size_t nkids = 0;
        assert_int_equal(kinesis_json_subscribe_event(cases[i].payload, strlen(cases[i].payload), &r, &kids,
                                                      &nkids, &err), cases[i].st);
        if (!strstr(err.msg, cases[i].says)) fail_msg("case %zu: \"%s\" does not say \"%s\"", i, err.msg, cases[i].says);
        assert_null(r.batch);
        assert_null(kids);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_records_plain),
        cmocka_unit_test(test_get_records_shard_end_and_defaults),
        cmocka_unit_test(test_get_records_expands_kpl_aggregates),
        cmocka_unit_test(test_get_records_reads_escapes_and_skips_unknown_members),
        cmocka_unit_test(test_get_records_arrival_timestamps_in_every_form),
        cmocka_unit_test(test_get_records_rejects_malformed_bodies),
        cmocka_unit_test(test_list_shards_pages_accumulate),
        cmocka_unit_test(test_put_result_null_error_code_means_written),
        cmocka_unit_test(test_put_result_names_refused_entries_and_their_kind),
        cmocka_unit_test(test_put_result_rejects_wrong_shapes),
        cmocka_unit_test(test_subscribe_event_as_kinesis_mock_sends_it),
        cmocka_unit_test(test_subscribe_event_shard_end_names_the_children),
        cmocka_unit_test(test_subscribe_event_rejects_malformed_payloads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
