/* backends: a config with a Kinesis source and a DynamoDB lease store opens
 * both over one AWS client, so the process resolves its credentials once:
 * with web identity, exactly one STS AssumeRoleWithWebIdentity call, however
 * many calls each backend makes. The services are a local fake (127.0.0.1). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "aws_fixture.h"
#include "base/log.h"
#include "config/config.h"
#include "worker/backends.h"

static aws_fixture_t fx;
static int sts_calls, kinesis_calls, dynamodb_calls; /* under fx.srv.mu */

static void route(ts_server_t *s, const ts_request_t *req, ts_response_t *resp)
{
    (void)s;
    char target[128] = "";
    ts_header(req, "X-Amz-Target", target, sizeof target);
    if (!strcmp(req->target, "/sts/") && strstr(req->body, "Action=AssumeRoleWithWebIdentity")) {
        sts_calls++;
        fx_sts_answer(resp, "ASIASTS", "sts/secret", "sts-token");
    } else if (!strcmp(target, "Kinesis_20131202.ListShards")) {
        kinesis_calls++;
        strcpy(resp->body, "{\"Shards\":[{\"ShardId\":\"shardId-000000000000\",\"HashKeyRange\":"
                           "{\"StartingHashKey\":\"0\",\"EndingHashKey\":\"9\"},\"SequenceNumberRange\":"
                           "{\"StartingSequenceNumber\":\"1\"}}]}");
    } else if (!strcmp(target, "DynamoDB_20120810.DescribeTable")) {
        dynamodb_calls++;
        strcpy(resp->body, "{\"Table\":{\"TableStatus\":\"ACTIVE\"}}");
    } else if (!strcmp(target, "DynamoDB_20120810.Scan")) {
        dynamodb_calls++;
        strcpy(resp->body, "{\"Items\":[],\"Count\":0}");
    } else {
        resp->status = 400;
        strcpy(resp->body, "{\"__type\":\"UnknownOperationException\"}");
    }
}

static const char *write_file(const char *name, const char *text)
{
    return tempdir_write(fx.home, name, text);
}

static int setup(void **state)
{
    (void)state;
    sts_calls = kinesis_calls = dynamodb_calls = 0;
    if (fx_start(&fx, "backends", route, 0) != 0) return -1;
    log_set_level(LOG_WARN);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return fx_stop(&fx);
}

typedef struct outcome {
    int done, ok;
} outcome_t;

static void on_shards(void *ud, source_err_t err, const char *message, source_shard_list_t *shards)
{
    outcome_t *o = ud;
    o->done++;
    o->ok = err == SOURCE_OK && shards && shards->count == 1;
    if (err) fprintf(stderr, "list_shards: %s\n", message);
    source_shard_list_free(shards);
}

static void on_leases(void *ud, lease_status_t st, const char *msg, lease_list_t *list)
{
    outcome_t *o = ud;
    o->done++;
    o->ok = st == LEASE_OK && list;
    if (st) fprintf(stderr, "lease list: %s\n", msg);
    lease_list_free(list);
}

static void test_kinesis_and_dynamodb_share_one_credentials_resolution(void **state)
{
    (void)state;
    fx_web_identity(&fx);
    write_file("p.lua", "return { processRecords = function() end }\n");
    char cfgtext[1024];
    snprintf(cfgtext, sizeof cfgtext,
             "application = 'app'\n"
             "source = { type = 'kinesis', region = 'us-east-1', endpoint = '%s' }\n"
             "leases = { type = 'dynamodb', table = 'app', region = 'eu-west-1', endpoint = '%s/' }\n"
             "streams = { { name = 's', processor = 'p.lua' } }\n", fx.srv.base, fx.srv.base);
    errbuf_t err;
    config_t *cfg = config_load(write_file("c.lua", cfgtext), &err);
    if (!cfg) fail_msg("%s", err.msg);

    aws_client_t *aws = NULL;
    assert_int_equal(backend_aws_new(cfg, fx.loop, &aws, &err), 0);
    assert_non_null(aws);
    source_t *src = backend_source_new(cfg, fx.loop, aws, &err);
    lease_store_t *store = backend_lease_store_new(cfg, fx.loop, aws, 1, &err);
    assert_non_null(src);
    assert_non_null(store);
    /* both backends call at once, before any credentials exist, and again after */
    outcome_t shards[2] = {{0}}, leases[2] = {{0}};
    for (int round = 0; round < 2; round++) {
        source_list_shards(src, "s", on_shards, &shards[round]);
        store->ops->list(store, on_leases, &leases[round]);
        fx_run_until(fx.loop, &shards[round].done, 10);
        fx_run_until(fx.loop, &leases[round].done, 10);
        assert_true(shards[round].ok);
        assert_true(leases[round].ok);
    }
    ts_lock(&fx.srv);
    assert_int_equal(kinesis_calls, 2);
    assert_true(dynamodb_calls >= 2);
    assert_int_equal(sts_calls, 1);
    ts_unlock(&fx.srv);
    lease_store_destroy(store);
    source_destroy(src);
    aws_client_free(aws);
    config_free(cfg);
}

static void test_local_backends_need_no_aws_client(void **state)
{
    (void)state;
    write_file("p.lua", "return { processRecords = function() end }\n");
    errbuf_t err;
    config_t *cfg = config_load(write_file("c.lua", "application = 'app'\n"
                                                    "source = { type = 'local', path = 's.db' }\n"
                                                    "leases = { type = 'local', path = 'l.db' }\n"
                                                    "streams = { { name = 's', processor = 'p.lua' } }\n"),
                                &err);
    if (!cfg) fail_msg("%s", err.msg);
    aws_client_t *aws = (aws_client_t *)&err; /* must be overwritten */
    assert_int_equal(backend_aws_new(cfg, fx.loop, &aws, &err), 0);
    assert_null(aws);
    config_free(cfg);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_kinesis_and_dynamodb_share_one_credentials_resolution),
        T(test_local_backends_need_no_aws_client),
    };
    return cmocka_run_group_tests_name("backends", tests, NULL, NULL);
}
