/* The Kinesis source's read pacing (issue 18: the Kinesis drain took twice
 * its floor's wall time with little CPU): a shard's next GetRecords waits
 * for its records' bytes at 2 MiB/s, what Kinesis counts, not for the size
 * of the JSON that carried them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base64.h"
#include "base/buf.h"
#include "record/batch.h"
#include "source/kinesis_json.h"
#include "source/source_kinesis.h"

/* A GetRecords body as Kinesis sends it: n records of `size` bytes of data. */
static void body_of(buf_t *b, int n, size_t size)
{
    char *data = malloc(size);
    memset(data, 'x', size);
    buf_t enc = BUF_INIT;
    assert_int_equal(base64_encode(&enc, data, size), 0);
    buf_append_str(b, "{\"MillisBehindLatest\":0,\"NextShardIterator\":\"it\",\"Records\":[");
    for (int i = 0; i < n; i++)
        buf_printf(b, "%s{\"SequenceNumber\":\"4959000000000000000000000000000000000000000000000%07d\","
                   "\"ApproximateArrivalTimestamp\":1700000000.123,\"PartitionKey\":"
                   "\"6f1ed002ab5595859014ebf0951522d9\",\"Data\":\"%s\"}", i ? "," : "", i, buf_str(&enc));
    buf_append_str(b, "]}");
    buf_free(&enc);
    free(data);
}

static int64_t pace_of(const buf_t *b, size_t *data_bytes)
{
    source_records_t res = {0};
    errbuf_t err;
    assert_int_equal(kinesis_json_get_records(b->data, b->len, &res, &err), AWSJSON_OK);
    *data_bytes = res.bytes;
    int64_t ms = kinesis_read_pace_ms(&res);
    batch_free(res.batch);
    free(res.next_iterator);
    return ms;
}

static void test_small_records_are_paced_by_their_data_not_by_their_json(void **state)
{
    buf_t b = BUF_INIT;
    body_of(&b, 10000, 100); /* a full read of 100-byte records: ~2.9 MB of JSON for 1 MB of data */
    size_t data = 0;
    int64_t ms = pace_of(&b, &data);
    assert_int_equal(data, 10000 * 100);
    assert_int_equal(ms, (int64_t)data * 1000 / (2 * 1024 * 1024)); /* 476 ms */
    assert_true(b.len > 2 * data);
    assert_true(ms * 2 < (int64_t)b.len * 1000 / (2 * 1024 * 1024)); /* what pacing by the body would wait */
    buf_free(&b);
}

static void test_two_mib_of_records_wait_a_second(void **state)
{
    buf_t b = BUF_INIT;
    body_of(&b, 2, 1024 * 1024);
    size_t data = 0;
    assert_int_equal(pace_of(&b, &data), 1000);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_records_are_paced_by_their_data_not_by_their_json),
        cmocka_unit_test(test_two_mib_of_records_wait_a_second),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
