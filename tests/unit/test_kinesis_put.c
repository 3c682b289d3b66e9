/* PutRecords requests, shared by dead-letter puts and `shardrun put`: how
 * records are cut into calls (500 records, 5 MiB) and what a call carries. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "source/source_kinesis.h"

static source_put_record_t recs[1200];

static void fill(size_t n, size_t data_len, const char *data)
{
    for (size_t i = 0; i < n; i++) recs[i] = (source_put_record_t){data, data_len, "key", NULL};
}

static void test_a_call_takes_at_most_500_records(void **state)
{
    (void)state;
    fill(1200, 1, "x");
    assert_int_equal(kinesis_put_fit(recs, 1200), 500);
    assert_int_equal(kinesis_put_fit(recs, 7), 7);
    assert_int_equal(kinesis_put_fit(recs, 0), 0);
}

static void test_a_call_stays_under_5_mib_of_data_and_keys(void **state)
{
    (void)state;
    static char big[1024 * 1024];
    fill(10, sizeof big - 3, big); /* with the 3-byte key: exactly 1 MiB each */
    assert_int_equal(kinesis_put_fit(recs, 10), 5);
    recs[0].data_len = 6 * 1024 * 1024; /* over the limit alone: sent alone, Kinesis names the error */
    assert_int_equal(kinesis_put_fit(recs, 10), 1);
}

static void test_the_request_carries_stream_base64_data_and_keys(void **state)
{
    (void)state;
    source_put_record_t two[] = {{"hello", 5, "k1", NULL}, {"\x00\xff", 2, "k2", NULL}};
    cJSON *q = kinesis_put_request("errors", two, 2);
    char *json = cJSON_PrintUnformatted(q);
    assert_string_equal(json, "{\"StreamName\":\"errors\",\"Records\":[{\"Data\":\"aGVsbG8=\",\"PartitionKey\":\"k1\"},"
                              "{\"Data\":\"AP8=\",\"PartitionKey\":\"k2\"}]}");
    free(json);
    cJSON_Delete(q);
}

static void test_an_explicit_hash_key_is_sent_as_ExplicitHashKey(void **state)
{
    (void)state;
    source_put_record_t one[] = {{"x", 1, "k", "340282366920938463463374607431768211455"}};
    cJSON *q = kinesis_put_request("out", one, 1);
    char *json = cJSON_PrintUnformatted(q);
    assert_string_equal(json, "{\"StreamName\":\"out\",\"Records\":[{\"Data\":\"eA==\",\"PartitionKey\":\"k\","
                              "\"ExplicitHashKey\":\"340282366920938463463374607431768211455\"}]}");
    free(json);
    cJSON_Delete(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_call_takes_at_most_500_records),
        cmocka_unit_test(test_a_call_stays_under_5_mib_of_data_and_keys),
        cmocka_unit_test(test_the_request_carries_stream_base64_data_and_keys),
        cmocka_unit_test(test_an_explicit_hash_key_is_sent_as_ExplicitHashKey),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
