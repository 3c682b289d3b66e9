/* test_lease_ddb: lease rows as DynamoDB items and Scan pages of the lease
 * table, as dynalite answers and as a KCL 2.x/3.x application writes them.
 * A malformed row is marked invalid with the reason, never dropped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "lease/lease.h"
#include "lease/lease_ddb.h"

/* ---- DynamoDB ---------------------------------------------------------------------- */

static lease_list_t *scan(const char *body, char **last, awsjson_status_t want)
{
    lease_list_t *l = calloc(1, sizeof *l);
    errbuf_t err;
    assert_int_equal(lease_ddb_scan(body, strlen(body), l, last, &err), want);
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
        assert_true(lease_ddb_scan(bad[i], strlen(bad[i]), l, &last, &err) != AWSJSON_OK);
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
    cJSON *item = lease_ddb_item(&in);
    assert_non_null(cJSON_GetObjectItem(cJSON_GetObjectItem(item, "parentShardId"), "SS"));
    assert_null(cJSON_GetObjectItem(item, "childShardIds"));
    lease_t out = {0};
    lease_ddb_from_item(item, &out);
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
        cmocka_unit_test(test_scan_reads_kcl_rows),
        cmocka_unit_test(test_scan_multistream_key_gives_shard),
        cmocka_unit_test(test_scan_marks_malformed_rows_invalid),
        cmocka_unit_test(test_scan_rejects_malformed_responses),
        cmocka_unit_test(test_item_round_trips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
