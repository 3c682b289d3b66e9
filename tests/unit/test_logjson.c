/* logjson: log lines as JSON objects with the key=value fields. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "base/logjson.h"

static void test_fields_become_string_members_in_order(void **state)
{
    char out[512];
    logjson_format(out, sizeof out, "2024-01-02T03:04:05.006Z", "warn", "batch_failed",
                   "stream=words shard=shardId-000000000001 count=12 error=\"boom \\\"x\\\" a=b\\nline 2\"");
    assert_string_equal(out, "{\"ts\":\"2024-01-02T03:04:05.006Z\",\"level\":\"warn\",\"event\":\"batch_failed\","
                             "\"stream\":\"words\",\"shard\":\"shardId-000000000001\",\"count\":\"12\","
                             "\"error\":\"boom \\\"x\\\" a=b\\nline 2\"}");
}

static void test_text_that_is_not_key_value_goes_to_msg(void **state)
{
    char out[256];
    logjson_format(out, sizeof out, "t", "info", "e", "k=v stray words");
    assert_string_equal(out, "{\"ts\":\"t\",\"level\":\"info\",\"event\":\"e\",\"k\":\"v\",\"msg\":\"stray words\"}");
}

static void test_bytes_that_are_not_utf8_are_replaced_and_controls_escaped(void **state)
{
    char out[256];
    logjson_format(out, sizeof out, "t", "info", "e", "data=\"\xff\x01\xc3\xa9\"");
    assert_string_equal(out, "{\"ts\":\"t\",\"level\":\"info\",\"event\":\"e\",\"data\":\"\\ufffd\\u0001\xc3\xa9\"}");
    cJSON *j = cJSON_Parse(out);
    assert_non_null(j);
    cJSON_Delete(j);
}

static void test_a_line_too_long_is_cut_at_a_field_and_stays_json(void **state)
{
    char fields[4000], out[300];
    size_t n = 0;
    for (int i = 0; i < 100; i++)
        n += (size_t)snprintf(fields + n, sizeof fields - n, "key%d=value%d ", i, i);
    for (size_t size = 64; size <= sizeof out; size += 7) {
        size_t len = logjson_format(out, size, "t", "info", "e", fields);
        assert_true(len < size);
        assert_int_equal(strlen(out), len);
        cJSON *j = cJSON_Parse(out);
        if (!j) fail_msg("not JSON at size %zu: %s", size, out);
        cJSON_Delete(j);
    }
}

static void test_log_writes_one_json_object_per_line(void **state)
{
    char path[] = "/tmp/shardrun-test-logjson-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    log_set_fd(fd);
    log_set_json(1);
    char q[64];
    log_info("shard_started", "stream=%s shard=%s checkpoint=%s", "words", "shardId-1", log_quote("a b", q, sizeof q));
    log_set_json(0);
    log_info("plain", "k=%d", 1);
    log_set_fd(2);
    char buf[1024] = "";
    assert_true(pread(fd, buf, sizeof buf - 1, 0) > 0);
    close(fd);
    unlink(path);
    char *nl = strchr(buf, '\n');
    assert_non_null(nl);
    *nl = '\0';
    cJSON *j = cJSON_Parse(buf);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItem(j, "level")->valuestring, "info");
    assert_string_equal(cJSON_GetObjectItem(j, "event")->valuestring, "shard_started");
    assert_string_equal(cJSON_GetObjectItem(j, "checkpoint")->valuestring, "a b");
    assert_int_equal(strlen(cJSON_GetObjectItem(j, "ts")->valuestring), strlen("2024-01-02T03:04:05.006Z"));
    cJSON_Delete(j);
    assert_true(!strncmp(nl + 1, "ts=", 3)); /* the next line is key=value again */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields_become_string_members_in_order),
        cmocka_unit_test(test_text_that_is_not_key_value_goes_to_msg),
        cmocka_unit_test(test_bytes_that_are_not_utf8_are_replaced_and_controls_escaped),
        cmocka_unit_test(test_a_line_too_long_is_cut_at_a_field_and_stays_json),
        cmocka_unit_test(test_log_writes_one_json_object_per_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
