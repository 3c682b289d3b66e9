/* aws_client against a local server (127.0.0.1 only) playing Kinesis,
 * DynamoDB, STS and IMDS: every attempt is signed with the credentials and
 * time current at that attempt (a retry after a refresh carries the new
 * key), a call waits for the first credentials, a call without any fails
 * typed, a cancelled call never calls back, and two endpoints of one client
 * share one credentials chain (one STS call). */
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

#include "aws/client.h"
#include "aws/sigv4.h"
#include "aws_fixture.h"
#include "base/log.h"

static aws_fixture_t fx;

/* what the fake services do; read by server threads under fx.srv.mu */
static int fail_first_call;   /* the first /svc/ call answers 503 */
static int svc_calls, sts_calls, imds_fetches;
static int imds_delay_ms;     /* the credentials document comes this late */

/* what teardown looks for in the log of every test */
static const char *const secrets[] = {"test+secret", "imds/secret", "sts/secret", "Signature=",
                                      "imds-token-", "sts-token", NULL};

static void route(ts_server_t *s, const ts_request_t *req, ts_response_t *resp)
{
    (void)s;
    char exp[32];
    if (!strcmp(req->target, "/latest/api/token")) {
        strcpy(resp->body, "IMDSTOKEN-1");
    } else if (!strcmp(req->target, "/latest/meta-data/iam/security-credentials/")) {
        strcpy(resp->body, "role\n");
    } else if (!strcmp(req->target, "/latest/meta-data/iam/security-credentials/role")) {
        int n = ++imds_fetches;
        if (imds_delay_ms) usleep((useconds_t)imds_delay_ms * 1000);
        fx_iso_time(time(NULL) + 3600, exp, sizeof exp);
        snprintf(resp->body, sizeof resp->body,
                 "{\"Code\":\"Success\",\"AccessKeyId\":\"AKIDIMDS%d\",\"SecretAccessKey\":\"imds/secret%d\","
                 "\"Token\":\"imds-token-%d\",\"Expiration\":\"%s\"}", n, n, n, exp);
    } else if (!strcmp(req->target, "/sts/")) {
        sts_calls++;
        fx_sts_answer(resp, "ASIASTS", "sts/secret", "sts-token");
    } else if (!strncmp(req->target, "/svc/", 5)) {
        if (fail_first_call && svc_calls++ == 0) {
            resp->status = 503;
            strcpy(resp->body, "{\"__type\":\"ServiceUnavailable\"}");
        } else {
            strcpy(resp->body, "{\"ok\":true}");
        }
    } else {
        resp->status = 404;
    }
}

static int setup(void **state)
{
    (void)state;
    fail_first_call = svc_calls = sts_calls = imds_fetches = imds_delay_ms = 0;
    return fx_start(&fx, "client", route, 1);
}

static int teardown(void **state)
{
    (void)state;
    int leaked = fx_log_leaks(&fx, secrets);
    return fx_stop(&fx) != 0 || leaked ? -1 : 0;
}

typedef struct result {
    int done, error, attempts;
} result_t;

static void on_done(void *ud, const aws_http_response_t *r)
{
    result_t *res = ud;
    res->done++;
    res->error = r->error;
    res->attempts = r->attempts;
}

/* A client whose HTTP retries wait retry_base_ms (0: 10 ms). */
static aws_client_t *client(const aws_cred_options_t *co, long retry_base_ms)
{
    aws_http_options_t ho = {.retry_base_ms = retry_base_ms ? retry_base_ms : 10,
                             .retry_max_ms = retry_base_ms ? retry_base_ms : 20};
    errbuf_t err;
    aws_client_t *c = aws_client_new(fx.loop, &ho, co, &err);
    assert_non_null(c);
    return c;
}

static void endpoint(aws_client_t *c, aws_endpoint_t *ep, const char *service)
{
    char url[128];
    errbuf_t err;
    snprintf(url, sizeof url, "%s/svc/%s", fx.srv.base, service);
    assert_int_equal(aws_client_endpoint(c, ep, service, "source", "us-east-1", url, &err), 0);
}

/* The request as received must verify: recompute the signature from what
 * arrived on the wire (host with port, date, target) with the same secret. */
static void verify_signed(const ts_request_t *req, const char *ak, const char *sk, const char *token)
{
    char host[128], ctype[128], target[128], date[32], auth[512], tok[256];
    assert_true(ts_header(req, "Host", host, sizeof host));
    assert_true(ts_header(req, "Content-Type", ctype, sizeof ctype));
    assert_true(ts_header(req, "X-Amz-Target", target, sizeof target));
    assert_true(ts_header(req, "X-Amz-Date", date, sizeof date));
    assert_true(ts_header(req, "Authorization", auth, sizeof auth));
    assert_true(ts_header(req, "X-Amz-Security-Token", tok, sizeof tok));
    assert_string_equal(tok, token);
    assert_string_equal(ctype, "application/x-amz-json-1.1");
    assert_string_equal(target, "Kinesis_20131202.GetRecords");
    char want_host[64];
    snprintf(want_host, sizeof want_host, "127.0.0.1:%d", fx.srv.port);
    assert_string_equal(host, want_host);
    aws_sigv4_credentials_t cr = {ak, sk, token};
    aws_sigv4_header_t h[] = {{"Host", host}, {"Content-Type", ctype}, {"X-Amz-Target", target}};
    aws_sigv4_request_t sr = {.method = "POST", .path = "/svc/kinesis", .headers = h, .nheaders = 3,
                              .body = req->body, .body_len = req->body_len, .region = "us-east-1",
                              .service = "kinesis", .amz_date = date, .creds = &cr, .normalize_path = 1};
    aws_sigv4_result_t res;
    assert_int_equal(aws_sigv4_sign(&sr, &res), 0);
    assert_string_equal(auth, res.authorization);
    assert_non_null(strstr(auth, "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target"));
    aws_sigv4_result_free(&res);
}

static const char *const body = "{\"ShardIterator\":\"it\",\"Limit\":10}";

/* A GetRecords call whose first attempt the fake refuses (503): it must
 * succeed on its second attempt, made retry_base_ms later (0: 10 ms), within
 * max_s. The requests stay in fx.srv for the test to check. */
static void get_records_retried_once(const aws_cred_options_t *co, long retry_base_ms, double max_s)
{
    aws_client_t *c = client(co, retry_base_ms);
    aws_endpoint_t ep;
    endpoint(c, &ep, "kinesis");
    fail_first_call = 1;
    result_t res = {0};
    assert_non_null(aws_client_call(c, &ep, "Kinesis_20131202.GetRecords", "1.1", body, 5000, on_done, &res));
    fx_run_until(fx.loop, &res.done, max_s);
    assert_int_equal(res.error, AWS_HTTP_OK);
    assert_int_equal(res.attempts, 2);
    aws_client_endpoint_clear(&ep);
    aws_client_free(c);
}

static void test_every_attempt_is_signed(void **state)
{
    (void)state;
    aws_cred_options_t co = {.access_key_id = "AKIDCLIENT", .secret_access_key = "client/test+secret",
                             .session_token = "tok/en+1=="};
    get_records_retried_once(&co, 0, 10);
    ts_lock(&fx.srv);
    assert_int_equal(fx.srv.nreqs, 2);
    verify_signed(&fx.srv.reqs[0], "AKIDCLIENT", "client/test+secret", "tok/en+1==");
    verify_signed(&fx.srv.reqs[1], "AKIDCLIENT", "client/test+secret", "tok/en+1==");
    assert_memory_equal(fx.srv.reqs[1].body, body, strlen(body));
    ts_unlock(&fx.srv);
    assert_non_null(strstr(fx_log(&fx), "aws_http_retry"));
}

/* The retry after a credentials refresh is signed with the new key: the
 * signature is made at each attempt, from the chain's current credentials. */
static void test_a_retry_after_a_refresh_carries_the_new_credentials(void **state)
{
    (void)state;
    fx_imds_on(&fx);
    /* credentials expire in 3600 s and are refreshed 3598 s early: 1-2 s after
     * the first ones arrive; the retry waits 3-6 s, so it comes after. */
    aws_cred_options_t co = {.refresh_before_s = 3598};
    get_records_retried_once(&co, 6000, 15);
    ts_lock(&fx.srv);
    int first = -1, second = -1;
    for (int i = 0; i < fx.srv.nreqs && i < TS_MAX_REQS; i++)
        if (!strncmp(fx.srv.reqs[i].target, "/svc/", 5)) {
            if (first < 0) first = i;
            else second = i;
        }
    assert_true(first >= 0 && second > first);
    verify_signed(&fx.srv.reqs[first], "AKIDIMDS1", "imds/secret1", "imds-token-1");
    /* the retry carries a refreshed key (the 2nd, or a later one if the
     * refresh ran again meanwhile), signed with its own secret */
    char auth[512], ak[32], sk[32], tok[32];
    assert_true(ts_header(&fx.srv.reqs[second], "Authorization", auth, sizeof auth));
    const char *k = strstr(auth, "Credential=AKIDIMDS");
    assert_non_null(k);
    int n = atoi(k + strlen("Credential=AKIDIMDS"));
    assert_true(n >= 2);
    snprintf(ak, sizeof ak, "AKIDIMDS%d", n);
    snprintf(sk, sizeof sk, "imds/secret%d", n);
    snprintf(tok, sizeof tok, "imds-token-%d", n);
    verify_signed(&fx.srv.reqs[second], ak, sk, tok);
    ts_unlock(&fx.srv);
}

/* A call made before any credentials exist waits for them. */
static void test_a_call_waits_for_the_first_credentials(void **state)
{
    (void)state;
    fx_imds_on(&fx);
    aws_client_t *c = client(NULL, 0);
    aws_endpoint_t ep;
    endpoint(c, &ep, "kinesis");
    result_t res = {0};
    assert_non_null(aws_client_call(c, &ep, "Kinesis_20131202.ListShards", "1.1", "{}", 5000, on_done, &res));
    assert_int_equal(res.done, 0);
    fx_run_until(fx.loop, &res.done, 10);
    assert_int_equal(res.error, AWS_HTTP_OK);
    char auth[512];
    ts_lock(&fx.srv);
    assert_int_equal(fx.srv.nreqs, 4); /* token, role, credentials, then the call */
    assert_string_equal(fx.srv.reqs[3].target, "/svc/kinesis");
    assert_true(ts_header(&fx.srv.reqs[3], "Authorization", auth, sizeof auth));
    assert_non_null(strstr(auth, "Credential=AKIDIMDS1/"));
    ts_unlock(&fx.srv);
    aws_client_endpoint_clear(&ep);
    aws_client_free(c);
}

static void test_a_call_without_credentials_fails_typed_and_unsent(void **state)
{
    (void)state;
    aws_client_t *c = client(NULL, 0);
    aws_endpoint_t ep;
    endpoint(c, &ep, "kinesis");
    result_t res = {0};
    assert_non_null(aws_client_call(c, &ep, "Kinesis_20131202.ListShards", "1.1", "{}", 5000, on_done, &res));
    fx_run_until(fx.loop, &res.done, 10);
    assert_int_equal(res.error, AWS_HTTP_ECREDENTIALS);
    assert_int_equal(ts_count(&fx.srv), 0);
    aws_client_endpoint_clear(&ep);
    aws_client_free(c);
}

/* Cancelled while it waits for credentials: no callback, nothing sent, and
 * freeing the client afterwards finds nothing left. */
static void test_a_cancelled_call_never_calls_back(void **state)
{
    (void)state;
    fx_imds_on(&fx);
    imds_delay_ms = 300;
    aws_client_t *c = client(NULL, 0);
    aws_endpoint_t ep;
    endpoint(c, &ep, "kinesis");
    result_t res = {0}, other = {0};
    aws_client_req_t *r =
        aws_client_call(c, &ep, "Kinesis_20131202.ListShards", "1.1", "{}", 5000, on_done, &res);
    assert_non_null(aws_client_call(c, &ep, "Kinesis_20131202.ListShards", "1.1", "{}", 5000, on_done, &other));
    int never = 0;
    fx_run_until(fx.loop, &never, 0.1); /* the calls now wait for the IMDS answers */
    aws_client_cancel(c, r);
    fx_run_until(fx.loop, &other.done, 10);
    assert_int_equal(other.error, AWS_HTTP_OK);
    assert_int_equal(res.done, 0);
    ts_lock(&fx.srv);
    int calls = 0;
    for (int i = 0; i < fx.srv.nreqs; i++) calls += !strncmp(fx.srv.reqs[i].target, "/svc/", 5);
    assert_int_equal(calls, 1);
    ts_unlock(&fx.srv);
    aws_client_endpoint_clear(&ep);
    aws_client_free(c);
    assert_int_equal(res.done, 0);
}

/* Kinesis and DynamoDB endpoints of one client: one chain, one STS call. */
static void test_endpoints_of_one_client_share_one_credentials_chain(void **state)
{
    (void)state;
    fx_web_identity(&fx);
    aws_client_t *c = client(NULL, 0);
    aws_endpoint_t kin, ddb;
    endpoint(c, &kin, "kinesis");
    endpoint(c, &ddb, "dynamodb");
    result_t a = {0}, b = {0};
    assert_non_null(aws_client_call(c, &kin, "Kinesis_20131202.ListShards", "1.1", "{}", 5000, on_done, &a));
    assert_non_null(aws_client_call(c, &ddb, "DynamoDB_20120810.Scan", "1.0", "{}", 5000, on_done, &b));
    fx_run_until(fx.loop, &a.done, 10);
    fx_run_until(fx.loop, &b.done, 10);
    assert_int_equal(a.error, AWS_HTTP_OK);
    assert_int_equal(b.error, AWS_HTTP_OK);
    ts_lock(&fx.srv);
    assert_int_equal(sts_calls, 1);
    ts_unlock(&fx.srv);
    aws_client_endpoint_clear(&kin);
    aws_client_endpoint_clear(&ddb);
    aws_client_free(c);
}

static void test_endpoint_region_and_default_url(void **state)
{
    (void)state;
    aws_client_t *c = client(NULL, 0);
    aws_endpoint_t ep;
    errbuf_t err;
    assert_int_equal(aws_client_endpoint(c, &ep, "dynamodb", "leases", "eu-west-1", NULL, &err), 0);
    assert_string_equal(ep.url, "https://dynamodb.eu-west-1.amazonaws.com/");
    assert_string_equal(ep.region, "eu-west-1");
    aws_client_endpoint_clear(&ep);
    assert_int_equal(aws_client_endpoint(c, &ep, "dynamodb", "leases", NULL, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "leases.region is not set"));
    aws_client_endpoint_clear(&ep);
    aws_client_free(c);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_every_attempt_is_signed),
        T(test_a_retry_after_a_refresh_carries_the_new_credentials),
        T(test_a_call_waits_for_the_first_credentials),
        T(test_a_call_without_credentials_fails_typed_and_unsent),
        T(test_a_cancelled_call_never_calls_back),
        T(test_endpoints_of_one_client_share_one_credentials_chain),
        T(test_endpoint_region_and_default_url),
    };
    return cmocka_run_group_tests_name("aws_client", tests, NULL, NULL);
}
