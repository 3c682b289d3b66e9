/* source_kinesis against a scripted Kinesis on 127.0.0.1: puts (the
 * dead-letter path) read PutRecords' answer entry by entry: an ErrorCode
 * null or absent is a written record whatever FailedRecordCount says or
 * leaves out; a refusal is retryable (throttled) or final, and named. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aws/client.h"
#include "aws_fixture.h"
#include "base/log.h"
#include "source/source_kinesis.h"

static aws_fixture_t fx;
static const char *put_answer; /* the body PutRecords answers with */

static void route(ts_server_t *s, const ts_request_t *req, ts_response_t *resp)
{
    (void)s;
    char target[128] = "";
    ts_header(req, "X-Amz-Target", target, sizeof target);
    if (!strcmp(target, "Kinesis_20131202.PutRecords")) {
        snprintf(resp->body, sizeof resp->body, "%s", put_answer);
    } else {
        resp->status = 400;
        strcpy(resp->body, "{\"__type\":\"UnknownOperationException\"}");
    }
}

static int setup(void **state)
{
    (void)state;
    if (fx_start(&fx, "source-kinesis", route, 0) != 0) return -1;
    setenv("AWS_ACCESS_KEY_ID", "AKIDTEST", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "test/secret", 1);
    log_set_level(LOG_ERROR);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return fx_stop(&fx);
}

typedef struct outcome {
    int done;
    source_err_t err;
    char msg[1024];
    int flagged;              /* the answer named the records not written */
    unsigned char failed[2];
    int throttled;
} outcome_t;

static void on_put(void *ud, const source_put_result_t *r)
{
    outcome_t *o = ud;
    o->done++;
    o->err = r->error;
    snprintf(o->msg, sizeof o->msg, "%s", r->message ? r->message : "");
    o->flagged = r->failed != NULL;
    if (r->failed) memcpy(o->failed, r->failed, 2);
    o->throttled = r->throttled;
}

/* Puts two records with PutRecords answering `answer`. */
static outcome_t put_two(const char *answer)
{
    put_answer = answer;
    errbuf_t err;
    aws_client_t *aws = aws_client_new(fx.loop, NULL, NULL, &err);
    assert_non_null(aws);
    source_kinesis_options_t opt = {.aws = aws, .region = "us-east-1", .endpoint = fx.srv.base};
    source_t *src = source_kinesis_new(fx.loop, &opt, &err);
    assert_non_null(src);
    source_put_record_t recs[] = {{"one", 3, "k1", NULL}, {"two", 3, "k2", NULL}};
    outcome_t o = {0};
    src->ops->put(src, "dead-letters", recs, 2, on_put, &o);
    fx_run_until(fx.loop, &o.done, 10);
    assert_int_equal(o.done, 1);
    source_destroy(src);
    aws_client_free(aws);
    return o;
}

static void test_null_error_codes_are_written_records(void **state)
{
    (void)state;
    outcome_t o = put_two("{\"Records\":[{\"SequenceNumber\":\"1\",\"ShardId\":\"shardId-000000000000\","
                          "\"ErrorCode\":null,\"ErrorMessage\":null},{\"SequenceNumber\":\"2\","
                          "\"ShardId\":\"shardId-000000000000\",\"ErrorCode\":null,\"ErrorMessage\":null}]}");
    if (o.err != SOURCE_OK) fail_msg("put failed: %s", o.msg);
    o = put_two("{\"FailedRecordCount\":null,\"Records\":[{\"SequenceNumber\":\"1\"},{\"SequenceNumber\":\"2\"}]}");
    if (o.err != SOURCE_OK) fail_msg("put failed: %s", o.msg);
}

static void test_a_throttled_entry_is_retryable_and_named(void **state)
{
    (void)state;
    outcome_t o = put_two("{\"FailedRecordCount\":1,\"Records\":[{\"SequenceNumber\":\"1\",\"ErrorCode\":null},"
                          "{\"ErrorCode\":\"ProvisionedThroughputExceededException\",\"ErrorMessage\":\"Rate exceeded\"}]}");
    assert_int_equal(o.err, SOURCE_ERETRY);
    assert_non_null(strstr(o.msg, "stream dead-letters"));
    assert_non_null(strstr(o.msg, "1 of 2 records refused"));
    assert_non_null(strstr(o.msg, "ProvisionedThroughputExceededException: Rate exceeded"));
    /* only the refused entry is to be put again; the first is in the stream */
    assert_true(o.flagged && o.throttled);
    assert_int_equal(o.failed[0], 0);
    assert_int_equal(o.failed[1], 1);
}

static void test_a_refusal_for_good_is_fatal(void **state)
{
    (void)state;
    outcome_t o = put_two("{\"FailedRecordCount\":2,\"Records\":[{\"ErrorCode\":\"KMSAccessDeniedException\","
                          "\"ErrorMessage\":\"denied\"},{\"ErrorCode\":\"KMSAccessDeniedException\"}]}");
    assert_int_equal(o.err, SOURCE_EFATAL);
    assert_non_null(strstr(o.msg, "KMSAccessDeniedException: denied"));
    assert_true(o.flagged && !o.throttled);
    assert_true(o.failed[0] && o.failed[1]);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_null_error_codes_are_written_records),
        T(test_a_throttled_entry_is_retryable_and_named),
        T(test_a_refusal_for_good_is_fatal),
    };
    return cmocka_run_group_tests_name("source_kinesis", tests, NULL, NULL);
}
