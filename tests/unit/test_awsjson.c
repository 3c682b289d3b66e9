/* test_awsjson: the generic AWS JSON rules (a null member is an absent one,
 * a member of the wrong type is reported, DynamoDB attribute values) and
 * base64, which every response with data goes through. */
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
#include "aws/jscan.h"
#include "base/base64.h"
#include "base/buf.h"

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

/* ---- members ------------------------------------------------------------------ */

static void test_null_members_are_absent_and_wrong_types_are_reported(void **state)
{
    cJSON *o = cJSON_Parse("{\"s\":\"x\",\"n\":null,\"num\":5,\"a\":[],\"o\":{},\"wrong\":7}");
    int bad = 0;
    double d = 0;
    assert_string_equal(awsjson_str(o, "s", &bad), "x");
    assert_null(awsjson_str(o, "n", &bad));
    assert_null(awsjson_str(o, "missing", &bad));
    assert_null(awsjson_array(o, "n", &bad));
    assert_null(awsjson_object(o, "n", &bad));
    assert_int_equal(awsjson_number(o, "n", &d, &bad), 0);
    assert_int_equal(bad, 0);
    assert_int_equal(awsjson_number(o, "num", &d, &bad), 1);
    assert_true(d == 5.0);
    assert_non_null(awsjson_array(o, "a", &bad));
    assert_non_null(awsjson_object(o, "o", &bad));
    assert_int_equal(bad, 0);
    assert_null(awsjson_str(o, "wrong", &bad));
    assert_int_equal(bad, 1);
    bad = 0;
    assert_null(awsjson_array(o, "o", &bad));
    assert_int_equal(bad, 1);
    bad = 0;
    assert_null(awsjson_str(NULL, "s", &bad)); /* not an object: nothing, and nothing bad */
    assert_int_equal(bad, 0);
    char *copy = awsjson_strdup(o, "s", &bad);
    assert_string_equal(copy, "x");
    free(copy);
    cJSON_Delete(o);
}

static void test_scan_values_null_is_absent(void **state)
{
    const char *text = "[\"abc\", null, 7, 2.5, null, \"x\"]";
    jscan_t js;
    jscan_init(&js, text, strlen(text));
    const char *s;
    size_t n;
    double d;
    int bad = 0;
    assert_int_equal(jscan_expect(&js, '['), 0);
    assert_int_equal(awsjson_scan_string(&js, &s, &n, &bad), 1);
    assert_memory_equal(s, "abc", 3);
    assert_int_equal(jscan_expect(&js, ','), 0);
    assert_int_equal(awsjson_scan_string(&js, &s, &n, &bad), 0);
    assert_int_equal(jscan_expect(&js, ','), 0);
    assert_int_equal(awsjson_scan_string(&js, &s, &n, &bad), -1); /* a number where a string belongs */
    assert_int_equal(bad, 1);
    bad = 0;
    assert_int_equal(jscan_expect(&js, ','), 0);
    assert_int_equal(awsjson_scan_number(&js, &d, &bad), 1);
    assert_true(d == 2.5);
    assert_int_equal(jscan_expect(&js, ','), 0);
    assert_int_equal(awsjson_scan_number(&js, &d, &bad), 0);
    assert_int_equal(jscan_expect(&js, ','), 0);
    assert_int_equal(awsjson_scan_number(&js, &d, &bad), -1);
    assert_int_equal(bad, 1);
    free(js.scratch);
}

/* ---- DynamoDB attribute values ---------------------------------------------------- */

static void test_ddb_attributes_read_back_as_written(void **state)
{
    cJSON *item = cJSON_CreateObject();
    char *ids[] = {"a", "b"};
    awsjson_ddb_attr(item, "s", "S", "text");
    awsjson_ddb_attr_n(item, "n", -42);
    cJSON_AddItemToObject(item, "ss", awsjson_ddb_ss(ids, 2));
    cJSON_AddItemToObject(item, "nul", cJSON_Parse("{\"NULL\":true}"));
    cJSON_AddNullToObject(item, "jnull");
    int bad = 0;
    int64_t v = 0;
    assert_string_equal(awsjson_ddb_get(item, "s", "S", &bad)->valuestring, "text");
    assert_int_equal(awsjson_parse_i64(awsjson_ddb_get(item, "n", "N", &bad)->valuestring, &v), 0);
    assert_int_equal(v, -42);
    assert_int_equal(cJSON_GetArraySize(awsjson_ddb_get(item, "ss", "SS", &bad)), 2);
    assert_null(awsjson_ddb_get(item, "nul", "S", &bad));
    assert_null(awsjson_ddb_get(item, "jnull", "S", &bad));
    assert_null(awsjson_ddb_get(item, "missing", "S", &bad));
    assert_int_equal(bad, 0);
    assert_null(awsjson_ddb_get(item, "s", "N", &bad)); /* a string where a number belongs */
    assert_int_equal(bad, 1);
    cJSON_Delete(item);
    assert_int_equal(awsjson_parse_i64("12a", &v), -1);
    assert_int_equal(awsjson_parse_i64("", &v), -1);
    assert_int_equal(awsjson_parse_i64("99999999999999999999", &v), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base64_decodes_every_padding),
        cmocka_unit_test(test_base64_rejects_what_kinesis_rejects),
        cmocka_unit_test(test_base64_round_trips_all_lengths),
        cmocka_unit_test(test_null_members_are_absent_and_wrong_types_are_reported),
        cmocka_unit_test(test_scan_values_null_is_absent),
        cmocka_unit_test(test_ddb_attributes_read_back_as_written),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
