/* aws_cred: every provider of the chain, against temp files and a local
 * server (127.0.0.1 only). AWS_EC2_METADATA_DISABLED=true everywhere except
 * the IMDS tests, which point AWS_EC2_METADATA_SERVICE_ENDPOINT at the local
 * server. Every test also checks that no secret reached the log. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "aws_fixture.h"
#include "aws/credentials.h"
#include "aws/http.h"
#include "base/log.h"

static aws_fixture_t fx;
static aws_http_t *http;

/* what the fake services answer; read by server threads under fx.srv.mu */
static int imds_fetches;
static int imds_refresh_delay_ms;
static long imds_expires_in_s = 3600;
static int sts_fail;

static const char *const secrets[] = {
    "env/secret", "explicit/secret", "profile/secret", "dev/secret", "ops/secret", "sts/secret",
    "ecs/secret", "imds/secret", "sess-token-", "webid-jwt-token", "ecs-auth-token", "IMDSTOKEN-1",
    NULL};

static void imds(const ts_request_t *req, ts_response_t *resp)
{
    const char *prefix = "/latest/meta-data/iam/security-credentials/";
    char v[256], exp[32];
    if (!strcmp(req->target, "/latest/api/token")) {
        /* IMDSv2: the token must be asked for with PUT and a TTL */
        if (strcmp(req->method, "PUT") != 0 ||
            !ts_header(req, "X-aws-ec2-metadata-token-ttl-seconds", v, sizeof v) || atoi(v) <= 0)
            resp->status = 400;
        else
            strcpy(resp->body, "IMDSTOKEN-1");
        return;
    }
    if (!ts_header(req, "X-aws-ec2-metadata-token", v, sizeof v) || strcmp(v, "IMDSTOKEN-1") != 0) {
        resp->status = 401;
        return;
    }
    const char *rest = req->target + strlen(prefix);
    if (!*rest) {
        strcpy(resp->body, "shardrun-role\n");
    } else if (!strcmp(rest, "shardrun-role")) {
        int n = ++imds_fetches;
        if (n >= 2 && imds_refresh_delay_ms) usleep((useconds_t)imds_refresh_delay_ms * 1000);
        fx_iso_time(time(NULL) + imds_expires_in_s, exp, sizeof exp);
        snprintf(resp->body, sizeof resp->body,
                 "{\"Code\":\"Success\",\"Type\":\"AWS-HMAC\",\"AccessKeyId\":\"AKIDIMDS%d\","
                 "\"SecretAccessKey\":\"imds/secret%d\",\"Token\":\"sess-token-imds%d\","
                 "\"Expiration\":\"%s\"}", n, n, n, exp);
    } else {
        resp->status = 404;
    }
}

static void sts(const ts_request_t *req, ts_response_t *resp)
{
    const char *want[] = {"Action=AssumeRoleWithWebIdentity", "Version=2011-06-15",
                          "RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fshardrun",
                          "RoleSessionName=test-session", "WebIdentityToken=webid-jwt-token", NULL};
    for (int i = 0; want[i]; i++)
        if (!strstr(req->body, want[i])) resp->status = 400;
    if (sts_fail || resp->status != 200) {
        resp->status = 403;
        strcpy(resp->body, "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>"
                           "<Message>Not authorized to perform sts:AssumeRoleWithWebIdentity</Message>"
                           "</Error></ErrorResponse>");
        return;
    }
    fx_sts_answer(resp, "ASIASTSEXAMPLE", "sts/secret&amp;x", "sess-token-sts");
}

static void ecs(const ts_request_t *req, ts_response_t *resp)
{
    char v[256], exp[32];
    if (!ts_header(req, "Authorization", v, sizeof v) || strcmp(v, "ecs-auth-token") != 0) {
        resp->status = 401;
        return;
    }
    fx_iso_time(time(NULL) + 3600, exp, sizeof exp);
    snprintf(resp->body, sizeof resp->body,
             "{\"AccessKeyId\":\"ASIAECSEXAMPLE\",\"SecretAccessKey\":\"ecs/secret\","
             "\"Token\":\"sess-token-ecs\",\"Expiration\":\"%s\",\"RoleArn\":\"arn:aws:iam::1:role/t\"}", exp);
}

static void route(ts_server_t *s, const ts_request_t *req, ts_response_t *resp)
{
    (void)s;
    if (!strncmp(req->target, "/latest/", 8)) imds(req, resp);
    else if (!strcmp(req->target, "/sts/")) sts(req, resp);
    else if (!strcmp(req->target, "/ecs/creds")) ecs(req, resp);
    else resp->status = 404;
}

static void write_file(const char *rel, const char *text)
{
    tempdir_write(fx.home, rel, text);
}

static int setup(void **state)
{
    (void)state;
    imds_fetches = 0;
    imds_refresh_delay_ms = 0;
    imds_expires_in_s = 3600;
    sts_fail = 0;
    if (fx_start(&fx, "cred", route, 1) != 0) return -1;
    char aws_dir[512];
    snprintf(aws_dir, sizeof aws_dir, "%s/.aws", fx.home);
    mkdir(aws_dir, 0700);
    aws_http_options_t o = {.retry_base_ms = 10, .retry_max_ms = 20};
    http = aws_http_new(fx.loop, &o);
    return http ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    if (http) aws_http_free(http);
    http = NULL;
    int leaked = fx_log_leaks(&fx, secrets);
    return fx_stop(&fx) != 0 || leaked ? -1 : 0;
}

typedef struct waited {
    aws_cred_waiter_t w;
    int done, status;
} waited_t;

static void on_ready(aws_cred_waiter_t *w, int status)
{
    waited_t *x = w->data;
    x->done++;
    x->status = status;
}

/* Resolves the chain; 1 = credentials, -1 = failure. */
static int resolve(aws_cred_t *c)
{
    waited_t x = {.w = {.cb = on_ready}};
    x.w.data = &x;
    int r = aws_cred_wait(c, &x.w);
    if (r != 0) return r;
    assert_int_equal(x.done, 0); /* never from inside aws_cred_wait */
    fx_run_until(fx.loop, &x.done, 10);
    assert_int_equal(x.done, 1);
    return x.status == 0 ? 1 : -1;
}

static void expect_creds(aws_cred_t *c, const char *ak, const char *sk, const char *token)
{
    aws_sigv4_credentials_t cr;
    assert_int_equal(aws_cred_current(c, &cr), 0);
    assert_string_equal(cr.access_key_id, ak);
    assert_string_equal(cr.secret_access_key, sk);
    if (token) assert_string_equal(cr.session_token, token);
    else assert_null(cr.session_token);
}

static void expect_describe(aws_cred_t *c, const char *part)
{
    char d[256];
    aws_cred_describe(c, d, sizeof d);
    if (!strstr(d, part)) print_error("describe: %s\n", d);
    assert_non_null(strstr(d, part));
    for (int i = 0; secrets[i]; i++) assert_null(strstr(d, secrets[i]));
}

/* ---- static providers ---------------------------------------------------- */

static void test_explicit_config_beats_environment(void **state)
{
    (void)state;
    setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "env/secret", 1);
    aws_cred_options_t o = {.access_key_id = "AKIDEXPLICIT", .secret_access_key = "explicit/secret"};
    aws_cred_t *c = aws_cred_new(fx.loop, http, &o);
    assert_int_equal(aws_cred_current(c, &(aws_sigv4_credentials_t){0}), -1); /* nothing before resolving */
    assert_int_equal(resolve(c), 1);
    expect_describe(c, "source=explicit ");
    expect_creds(c, "AKIDEXPLICIT", "explicit/secret", NULL);
    expect_describe(c, "source=explicit key=****ICIT expires=never");
    aws_cred_free(c);
}

static void test_environment_with_session_token(void **state)
{
    (void)state;
    setenv("AWS_ACCESS_KEY_ID", "AKIDENV1", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "env/secret", 1);
    setenv("AWS_SESSION_TOKEN", "sess-token-env", 1);
    write_file(".aws/credentials", "[default]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = profile/secret\n");
    aws_cred_t *c = aws_cred_new(fx.loop, http, NULL);
    assert_int_equal(resolve(c), 1);
    expect_describe(c, "source=env ");
    expect_creds(c, "AKIDENV1", "env/secret", "sess-token-env");
    aws_cred_free(c);
}

static void test_profile_from_credentials_file_by_aws_profile(void **state)
{
    (void)state;
    write_file(".aws/credentials", "# comment\n[default]\naws_access_key_id = AKIDPROFILE\n"
                                   "aws_secret_access_key = profile/secret\n\n[dev]\n"
                                   "aws_access_key_id=AKIDDEV\naws_secret_access_key=dev/secret\n"
                                   "aws_session_token = sess-token-dev\n");
    setenv("AWS_PROFILE", "dev", 1);
    aws_cred_t *c = aws_cred_new(fx.loop, http, NULL);
    assert_int_equal(resolve(c), 1);
    expect_describe(c, "source=profile ");
    expect_creds(c, "AKIDDEV", "dev/secret", "sess-token-dev");
    expect_describe(c, "source=profile profile=dev key=****DDEV");
    aws_cred_free(c);
}

static void test_config_file_profiles_are_named_profile_x(void **state)
{
    (void)state;
    /* "[ops]" is not a profile in the config file; "[profile ops]" is */
    write_file(".aws/config", "[ops]\naws_access_key_id = AKIDWRONG\naws_secret_access_key = x\n"
                              "[profile ops]\naws_access_key_id = AKIDOPS\naws_secret_access_key = ops/secret\n"
                              "region = eu-north-1\n");
    aws_cred_options_t o = {.profile = "ops"};
    aws_cred_t *c = aws_cred_new(fx.loop, http, &o);
    assert_int_equal(resolve(c), 1);
    expect_creds(c, "AKIDOPS", "ops/secret", NULL);
    aws_cred_free(c);
    char *r = aws_cred_region_resolve(NULL, "ops");
    assert_string_equal(r, "eu-north-1");
    free(r);
}

static void test_shared_file_locations_from_environment(void **state)
{
    (void)state;
    write_file("creds-elsewhere", "[default]\naws_access_key_id = AKIDFILEENV\naws_secret_access_key = profile/secret\n");
    write_file(".aws/credentials", "[default]\naws_access_key_id = AKIDHOME\naws_secret_access_key = x\n");
    char path[600];
    snprintf(path, sizeof path, "%s/creds-elsewhere", fx.home);
    setenv("AWS_SHARED_CREDENTIALS_FILE", path, 1);
    aws_cred_t *c = aws_cred_new(fx.loop, http, NULL);
    assert_int_equal(resolve(c), 1);
    expect_creds(c, "AKIDFILEENV", "profile/secret", NULL);
    aws_cred_free(c);

    write_file("config-elsewhere", "[default]\nregion = ap-south-1\n");
    snprintf(path, sizeof path, "%s/config-elsewhere", fx.home);
    setenv("AWS_CONFIG_FILE", path, 1);
    char *r = aws_cred_region_resolve(NULL, NULL);
    assert_string_equal(r, "ap-south-1");
    free(r);
}

static void test_region_resolution_order(void **state)
{
    (void)state;
    write_file(".aws/config", "[default]\nregion = us-west-2\n");
    char *r = aws_cred_region_resolve(NULL, NULL);
    assert_string_equal(r, "us-west-2");
    free(r);
    setenv("AWS_DEFAULT_REGION", "eu-west-1", 1);
    r = aws_cred_region_resolve(NULL, NULL);
    assert_string_equal(r, "eu-west-1");
    free(r);
    setenv("AWS_REGION", "eu-central-1", 1);
    r = aws_cred_region_resolve(NULL, NULL);
    assert_string_equal(r, "eu-central-1");
    free(r);
    r = aws_cred_region_resolve("sa-east-1", NULL);
    assert_string_equal(r, "sa-east-1");
    free(r);
    unsetenv("AWS_REGION");
    unsetenv("AWS_DEFAULT_REGION");
    write_file(".aws/config", "[profile other]\nregion = us-west-2\n");
    assert_null(aws_cred_region_resolve(NULL, NULL));
}

static void test_nothing_configured_fails_without_network(void **state)
{
    (void)state;
    setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", fx.srv.base, 1); /* must not be used: disabled */
    aws_cred_t *c = aws_cred_new(fx.loop, http, NULL);
    waited_t x = {.w = {.cb = on_ready}};
    x.w.data = &x;
    assert_int_equal(aws_cred_wait(c, &x.w), -1);
    assert_non_null(strstr(aws_cred_error(c), "no AWS credentials found"));
    expect_describe(c, "source=none state=failed");
    int never = 0;
    fx_run_until(fx.loop, &never, 0.1);
    assert_int_equal(x.done, 0);
    assert_int_equal(ts_count(&fx.srv), 0);
    aws_cred_free(c);
}

/* ---- the config's profile, and what the chain says when it finds nothing ---- */

static void test_config_profile_beats_environment(void **state)
{
    (void)state;
    setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "env/secret", 1);
    write_file(".aws/credentials", "[prod]\naws_access_key_id = AKIDPROD\naws_secret_access_key = profile/secret\n");
    aws_cred_options_t o = {.profile = "prod"};
    aws_cred_t *c = aws_cred_new(fx.loop, http, &o);
    assert_int_equal(resolve(c), 1);
    expect_describe(c, "source=profile profile=prod key=****PROD");
    expect_creds(c, "AKIDPROD", "profile/secret", NULL);
    assert_non_null(strstr(fx_log(&fx), "event=aws_credentials_resolved source=profile profile=prod"));
    aws_cred_free(c);
}

static void test_config_profile_that_gives_nothing_fails_naming_it(void **state)
{
    (void)state;
    setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1); /* never a fallback for a profile the config names */
    setenv("AWS_SECRET_ACCESS_KEY", "env/secret", 1);
    write_file(".aws/config", "[profile assumed]\nrole_arn = arn:aws:iam::1:role/x\nsource_profile = base\n");
    static const struct { const char *profile, *want; } cases[] = {
        {"nope", "profile \"nope\" is in neither"},
        {"assumed", "profile \"assumed\" uses role_arn, which shardrun does not support"},
    };
    for (size_t i = 0; i < 2; i++) {
        aws_cred_options_t o = {.profile = cases[i].profile};
        aws_cred_t *c = aws_cred_new(fx.loop, http, &o);
        errbuf_t err;
        assert_int_equal(aws_cred_check(c, &err), -1);
        if (!strstr(err.msg, "aws.profile") || !strstr(err.msg, cases[i].want)) fail_msg("%s", err.msg);
        assert_int_equal(aws_cred_current(c, &(aws_sigv4_credentials_t){0}), -1);
        aws_cred_free(c);
    }
    assert_null(strstr(fx_log(&fx), "aws_credentials_failed")); /* aws_cred_check's caller reports it */
}

/* Nothing configured: one error naming each step and why it gave nothing. */
static void test_the_chain_error_names_each_step_and_why(void **state)
{
    (void)state;
    static const struct { const char *var, *value, *want; } cases[] = {
        {"AWS_PROFILE", "nope", "4. shared files (profile from AWS_PROFILE): profile \"nope\" is in neither"},
        {"AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/creds", "/nonexistent/creds (no such file)"},
        {"AWS_ACCESS_KEY_ID", "AKIDHALF", "2. environment: AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not"},
        {"AWS_ROLE_ARN", "arn:aws:iam::1:role/x", "3. web identity: AWS_ROLE_ARN is set but"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        setenv(cases[i].var, cases[i].value, 1);
        aws_cred_t *c = aws_cred_new(fx.loop, http, NULL);
        errbuf_t err;
        assert_int_equal(aws_cred_check(c, &err), -1);
        if (!strstr(err.msg, cases[i].want)) fail_msg("case %zu: %s", i, err.msg);
        for (int step = 1; step <= 6; step++) {
            char n[16];
            snprintf(n, sizeof n, "%d. ", step);
            if (!strstr(err.msg, n)) fail_msg("case %zu: step %d not named: %s", i, step, err.msg);
        }
        aws_cred_free(c);
        unsetenv(cases[i].var);
    }
}

static void test_a_failure_is_logged_once_however_often_it_is_met(void **state)
{
    (void)state;
    aws_cred_t *c = aws_cred_new(fx.loop, http, NULL);
    for (int i = 0; i < 3; i++) assert_int_equal(aws_cred_resolve(c), -1);
    const char *log = fx_log(&fx), *first = strstr(log, "event=aws_credentials_failed");
    assert_non_null(first);
    assert_null(strstr(first + 1, "event=aws_credentials_failed"));
    aws_cred_free(c);
}

/* ---- HTTP providers -------------------------------------------------------- */

static void test_web_identity_assumes_role_via_sts(void **state)
{
    (void)state;
    fx_web_identity(&fx);
    write_file(".aws/credentials", "[default]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = profile/secret\n");
    aws_cred_t *c = aws_cred_new(fx.loop, http, NULL);
    assert_int_equal(resolve(c), 1);
    expect_describe(c, "source=web-identity ");
    expect_creds(c, "ASIASTSEXAMPLE", "sts/secret&x", "sess-token-sts");
    expect_describe(c, "source=web-identity role=arn:aws:sts::123456789012:assumed-role/shardrun/test-session");
    ts_lock(&fx.srv);
    assert_int_equal(fx.srv.nreqs, 1);
    assert_string_equal(fx.srv.reqs[0].method, "POST");
    ts_unlock(&fx.srv);
    aws_cred_free(c);
}

static void test_web_identity_sts_error_is_reported(void **state)
{
    (void)state;
    fx_web_identity(&fx);
    sts_fail = 1;
    aws_cred_t *c = aws_cred_new(fx.loop, http, NULL);
    assert_int_equal(resolve(c), -1);
    assert_non_null(strstr(aws_cred_error(c), "AccessDenied"));
    assert_int_equal(aws_cred_current(c, &(aws_sigv4_credentials_t){0}), -1);
    assert_int_equal(ts_count(&fx.srv), 1); /* 403 is not retried */
    aws_cred_free(c);
}

static void test_container_full_uri_with_token(void **state)
{
    (void)state;
    char url[128];
    snprintf(url, sizeof url, "%s/ecs/creds", fx.srv.base);
    setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", url, 1);
    setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "ecs-auth-token", 1);
    aws_cred_t *c = aws_cred_new(fx.loop, http, NULL);
    assert_int_equal(resolve(c), 1);
    expect_describe(c, "source=ecs ");
    expect_creds(c, "ASIAECSEXAMPLE", "ecs/secret", "sess-token-ecs");
    aws_cred_free(c);
}

static void test_container_token_file_wins_over_variable(void **state)
{
    (void)state;
    char url[128], path[600];
    snprintf(url, sizeof url, "%s/ecs/creds", fx.srv.base);
    write_file("ecs-token", "ecs-auth-token\n");
    snprintf(path, sizeof path, "%s/ecs-token", fx.home);
    setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", url, 1);
    setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "wrong-token", 1);
    setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", path, 1);
    aws_cred_t *c = aws_cred_new(fx.loop, http, NULL);
    assert_int_equal(resolve(c), 1);
    expect_creds(c, "ASIAECSEXAMPLE", "ecs/secret", "sess-token-ecs");
    aws_cred_free(c);
}

static void test_container_url_rule(void **state)
{
    (void)state;
    assert_true(aws_cred_container_url_allowed("http://127.0.0.1:8080/creds"));
    assert_true(aws_cred_container_url_allowed("http://localhost/creds"));
    assert_true(aws_cred_container_url_allowed("http://169.254.170.2/v2/credentials"));
    assert_true(aws_cred_container_url_allowed("http://169.254.170.23/v1/credentials"));
    assert_true(aws_cred_container_url_allowed("https://creds.example.com/"));
    assert_false(aws_cred_container_url_allowed("http://192.0.2.1/creds"));
    assert_false(aws_cred_container_url_allowed("http://127.0.0.1.evil.example/"));
    assert_false(aws_cred_container_url_allowed("http://127.0.0.1@evil.example/"));
    assert_false(aws_cred_container_url_allowed("http://localhost.evil.example/"));
    assert_false(aws_cred_container_url_allowed("file:///etc/passwd"));
}

static void test_imds_v2_token_role_and_credentials(void **state)
{
    (void)state;
    fx_imds_on(&fx);
    aws_cred_t *c = aws_cred_new(fx.loop, http, NULL);
    assert_int_equal(resolve(c), 1);
    expect_describe(c, "source=imds ");
    expect_creds(c, "AKIDIMDS1", "imds/secret1", "sess-token-imds1");
    expect_describe(c, "source=imds role=shardrun-role key=****MDS1 expires=");
    ts_lock(&fx.srv);
    assert_int_equal(fx.srv.nreqs, 3);
    assert_string_equal(fx.srv.reqs[0].method, "PUT");
    assert_string_equal(fx.srv.reqs[1].target, "/latest/meta-data/iam/security-credentials/");
    assert_string_equal(fx.srv.reqs[2].target, "/latest/meta-data/iam/security-credentials/shardrun-role");
    ts_unlock(&fx.srv);
    aws_cred_free(c);
}

static void test_imds_disabled_sends_nothing(void **state)
{
    (void)state;
    setenv("AWS_EC2_METADATA_DISABLED", "TRUE", 1);
    setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", fx.srv.base, 1);
    aws_cred_t *c = aws_cred_new(fx.loop, http, NULL);
    assert_int_equal(aws_cred_resolve(c), -1);
    assert_int_equal(ts_count(&fx.srv), 0);
    aws_cred_free(c);
}

/* Expiring credentials are refreshed on the loop; until the new ones arrive
 * the old ones stay current, so requests never wait. */
static void test_refresh_before_expiry_keeps_old_credentials_meanwhile(void **state)
{
    (void)state;
    fx_imds_on(&fx);
    imds_refresh_delay_ms = 400;
    /* Expiry comes in whole seconds 3600 s ahead, so 3599 or 3600 s remain when
     * the answer is read: refreshing 3598 s early lands 1-2 s from now. (3599
     * could leave 0 s, which the provider rightly treats as "lifetime shorter
     * than refresh_before" and refreshes halfway, 30 minutes later.) */
    aws_cred_options_t o = {.refresh_before_s = 3598};
    aws_cred_t *c = aws_cred_new(fx.loop, http, &o);
    assert_int_equal(resolve(c), 1);
    expect_creds(c, "AKIDIMDS1", "imds/secret1", "sess-token-imds1");
    /* wait until the refresh asks for the new credentials (request 6) */
    int seen = 0;
    double start = ev_time();
    while (!seen && ev_time() - start < 10) {
        fx_run_until(fx.loop, &seen, 0.02);
        seen = ts_count(&fx.srv) >= 6;
    }
    assert_true(seen);
    expect_creds(c, "AKIDIMDS1", "imds/secret1", "sess-token-imds1"); /* still the old ones */
    int refreshed = 0;
    start = ev_time();
    while (!refreshed && ev_time() - start < 10) {
        fx_run_until(fx.loop, &refreshed, 0.02);
        aws_sigv4_credentials_t cr;
        refreshed = aws_cred_current(c, &cr) == 0 && !strcmp(cr.access_key_id, "AKIDIMDS2");
    }
    assert_true(refreshed);
    expect_creds(c, "AKIDIMDS2", "imds/secret2", "sess-token-imds2");
    assert_non_null(strstr(fx_log(&fx), "event=aws_credentials_refreshed"));
    aws_cred_free(c);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_explicit_config_beats_environment),
        T(test_environment_with_session_token),
        T(test_profile_from_credentials_file_by_aws_profile),
        T(test_config_file_profiles_are_named_profile_x),
        T(test_shared_file_locations_from_environment),
        T(test_region_resolution_order),
        T(test_nothing_configured_fails_without_network),
        T(test_config_profile_beats_environment),
        T(test_config_profile_that_gives_nothing_fails_naming_it),
        T(test_the_chain_error_names_each_step_and_why),
        T(test_a_failure_is_logged_once_however_often_it_is_met),
        T(test_web_identity_assumes_role_via_sts),
        T(test_web_identity_sts_error_is_reported),
        T(test_container_full_uri_with_token),
        T(test_container_token_file_wins_over_variable),
        cmocka_unit_test(test_container_url_rule),
        T(test_imds_v2_token_role_and_credentials),
        T(test_imds_disabled_sends_nothing),
        T(test_refresh_before_expiry_keeps_old_credentials_meanwhile),
    };
    return cmocka_run_group_tests_name("aws_cred", tests, NULL, NULL);
}
