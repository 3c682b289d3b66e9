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
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "aws_test_server.h"
#include "base/log.h"
#include "config/config.h"
#include "worker/backends.h"

static ts_server_t srv;
static struct ev_loop *loop;
static char dir[] = "/tmp/shardrun-test-backends-XXXXXX";
static int sts_calls, kinesis_calls, dynamodb_calls; /* under srv.mu */

static void route(ts_server_t *s, const ts_request_t *req, ts_response_t *resp)
{
    (void)s;
    char target[128] = "", exp[32];
    ts_header(req, "X-Amz-Target", target, sizeof target);
    if (!strcmp(req->target, "/sts/") && strstr(req->body, "Action=AssumeRoleWithWebIdentity")) {
        sts_calls++;
        time_t t = time(NULL) + 3600;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(exp, sizeof exp, "%Y-%m-%dT%H:%M:%SZ", &tm);
        snprintf(resp->body, sizeof resp->body,
                 "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>"
                 "<AccessKeyId>ASIASTS</AccessKeyId><SecretAccessKey>sts/secret</SecretAccessKey>"
                 "<SessionToken>sts-token</SessionToken><Expiration>%s</Expiration></Credentials>"
                 "</AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>", exp);
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
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static int setup(void **state)
{
    (void)state;
    static const char *const vars[] = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                                       "AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "http_proxy",
                                       "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", NULL};
    for (int i = 0; vars[i]; i++) unsetenv(vars[i]);
    setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
    strcpy(dir, "/tmp/shardrun-test-backends-XXXXXX");
    if (!mkdtemp(dir)) return -1;
    setenv("HOME", dir, 1);
    sts_calls = kinesis_calls = dynamodb_calls = 0;
    if (ts_start(&srv, route, NULL) != 0) return -1;
    loop = ev_loop_new(EVFLAG_AUTO);
    log_set_level(LOG_WARN);
    return loop ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    ev_loop_destroy(loop);
    ts_stop(&srv);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void tick(struct ev_loop *l, ev_timer *w, int revents)
{
    (void)l;
    (void)w;
    (void)revents;
}

static void run_until(const int *flag, double max_s)
{
    ev_timer t;
    ev_timer_init(&t, tick, 0.02, 0.02);
    ev_timer_start(loop, &t);
    double start = ev_time();
    while (!*flag && ev_time() - start < max_s) ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &t);
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
    char path[600], url[128];
    snprintf(path, sizeof path, "%s", write_file("token.jwt", "webid-jwt\n"));
    setenv("AWS_WEB_IDENTITY_TOKEN_FILE", path, 1);
    setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/shardrun", 1);
    snprintf(url, sizeof url, "%s/sts/", srv.base);
    setenv("AWS_ENDPOINT_URL_STS", url, 1);
    write_file("p.lua", "return { processRecords = function() end }\n");
    char cfgtext[1024];
    snprintf(cfgtext, sizeof cfgtext,
             "application = 'app'\n"
             "source = { type = 'kinesis', region = 'us-east-1', endpoint = '%s' }\n"
             "leases = { type = 'dynamodb', table = 'app', region = 'eu-west-1', endpoint = '%s/' }\n"
             "streams = { { name = 's', processor = 'p.lua' } }\n", srv.base, srv.base);
    errbuf_t err;
    config_t *cfg = config_load(write_file("c.lua", cfgtext), &err);
    if (!cfg) fail_msg("%s", err.msg);

    aws_client_t *aws = NULL;
    assert_int_equal(backend_aws_new(cfg, loop, &aws, &err), 0);
    assert_non_null(aws);
    source_t *src = backend_source_new(cfg, loop, aws, &err);
    lease_store_t *store = backend_lease_store_new(cfg, loop, aws, 1, &err);
    assert_non_null(src);
    assert_non_null(store);
    /* both backends call at once, before any credentials exist, and again after */
    outcome_t shards[2] = {{0}}, leases[2] = {{0}};
    for (int round = 0; round < 2; round++) {
        source_list_shards(src, "s", on_shards, &shards[round]);
        store->ops->list(store, on_leases, &leases[round]);
        run_until(&shards[round].done, 10);
        run_until(&leases[round].done, 10);
        assert_true(shards[round].ok);
        assert_true(leases[round].ok);
    }
    ts_lock(&srv);
    assert_int_equal(kinesis_calls, 2);
    assert_true(dynamodb_calls >= 2);
    assert_int_equal(sts_calls, 1);
    ts_unlock(&srv);
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
    assert_int_equal(backend_aws_new(cfg, loop, &aws, &err), 0);
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
