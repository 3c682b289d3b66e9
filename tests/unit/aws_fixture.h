/* aws_fixture: what the tests against the fake AWS services share around
 * aws_test_server.h (header only; include it after cmocka.h).
 *
 * Each test gets an environment cleared of the user's AWS settings and
 * proxies (so nothing on this machine answers in place of the fake), a fresh
 * HOME (so no ~/.aws of the user's is read), the server on 127.0.0.1, a loop,
 * and optionally the log captured into HOME/log for the test to read back
 * (for the "no secret in the log" checks). Also here: the loop driver, the
 * fake STS answer, and the IMDS and web identity settings that point at the
 * fake, which the client, credentials and backends tests all use alike. */
#ifndef SHARDRUN_TEST_AWS_FIXTURE_H
#define SHARDRUN_TEST_AWS_FIXTURE_H

#include <ev.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "aws_test_server.h"
#include "base/log.h"
#include "tempdir.h"

typedef struct aws_fixture {
    ts_server_t srv;       /* the fake services */
    struct ev_loop *loop;
    char home[256];        /* a fresh directory, set as HOME; removed by fx_stop */
    int log_fd;            /* the captured log (HOME/log), or -1 */
} aws_fixture_t;

/* What the credentials chain, the region lookup and the HTTP client read. */
static const char *const fx_aws_vars[] = {
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN", "AWS_ROLE_SESSION_NAME", "AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_EC2_METADATA_SERVICE_ENDPOINT", "AWS_ENDPOINT_URL_STS", "AWS_REGION", "AWS_DEFAULT_REGION",
    "http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", NULL};

/* Clears fx_aws_vars; IMDS stays disabled unless a test turns it on. */
static inline void fx_clear_aws_env(void)
{
    for (int i = 0; fx_aws_vars[i]; i++) unsetenv(fx_aws_vars[i]);
    setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
}

/* Starts the fixture: HOME is /tmp/shardrun-test-<name>-XXXXXX, the server
 * answers with route; capture_log: the log goes to HOME/log at LOG_DEBUG
 * (else the test sets its level). 0 or -1. */
static inline int fx_start(aws_fixture_t *f, const char *name, ts_handler_t route, int capture_log)
{
    f->loop = NULL;
    f->log_fd = -1;
    fx_clear_aws_env();
    if (tempdir_make(f->home, sizeof f->home, name) != 0) return -1;
    setenv("HOME", f->home, 1);
    if (ts_start(&f->srv, route, NULL) != 0) return -1;
    f->loop = ev_loop_new(EVFLAG_AUTO);
    if (!f->loop) return -1;
    if (capture_log) {
        char path[300];
        snprintf(path, sizeof path, "%s/log", f->home);
        f->log_fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
        if (f->log_fd < 0) return -1;
        log_set_fd(f->log_fd);
        log_set_level(LOG_DEBUG);
    }
    return 0;
}

/* The captured log so far (a buffer the next call overwrites). */
static inline const char *fx_log(const aws_fixture_t *f)
{
    static char text[1 << 16];
    ssize_t n = f->log_fd >= 0 ? pread(f->log_fd, text, sizeof text - 1, 0) : -1;
    text[n > 0 ? n : 0] = '\0';
    return text;
}

/* 1 when one of secrets (NULL-ended) is in the captured log, which is then
 * printed; else 0. */
static inline int fx_log_leaks(const aws_fixture_t *f, const char *const *secrets)
{
    const char *log = fx_log(f);
    int leaked = 0;
    for (int i = 0; secrets[i]; i++)
        if (strstr(log, secrets[i])) {
            fprintf(stderr, "secret %s found in log:\n%s\n", secrets[i], log);
            leaked = 1;
        }
    return leaked;
}

/* Stops what fx_start started and removes HOME; 0 or -1. */
static inline int fx_stop(aws_fixture_t *f)
{
    ev_loop_destroy(f->loop);
    ts_stop(&f->srv);
    if (f->log_fd >= 0) {
        log_set_fd(2);
        close(f->log_fd);
        f->log_fd = -1;
    }
    if (tempdir_remove(f->home) == 0) return 0;
    fprintf(stderr, "could not remove %s\n", f->home);
    return -1;
}

static inline void fx_tick(struct ev_loop *l, ev_timer *w, int revents)
{
    (void)l;
    (void)w;
    (void)revents;
}

/* Runs the loop until *flag or max_s seconds; a ticking timer bounds each
 * turn, so a flag set by another thread is seen too. */
static inline void fx_run_until(struct ev_loop *loop, const int *flag, double max_s)
{
    ev_timer t;
    ev_timer_init(&t, fx_tick, 0.02, 0.02);
    ev_timer_start(loop, &t);
    double start = ev_time();
    while (!*flag && ev_time() - start < max_s) ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &t);
}

/* t as AWS writes expiry times: 2026-01-02T03:04:05Z. */
static inline void fx_iso_time(time_t t, char *out, size_t n)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The fake STS's AssumeRoleWithWebIdentity answer: these credentials, valid
 * for an hour, for the role and session fx_web_identity sets. The values go
 * into the XML as given (a test of unescaping passes "&amp;"). */
static inline void fx_sts_answer(ts_response_t *resp, const char *key_id, const char *secret, const char *token)
{
    char exp[32];
    fx_iso_time(time(NULL) + 3600, exp, sizeof exp);
    snprintf(resp->body, sizeof resp->body,
             "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"
             "<AssumeRoleWithWebIdentityResult><AssumedRoleUser><Arn>arn:aws:sts::123456789012:"
             "assumed-role/shardrun/test-session</Arn></AssumedRoleUser><Credentials>"
             "<AccessKeyId>%s</AccessKeyId><SecretAccessKey>%s</SecretAccessKey>"
             "<SessionToken>%s</SessionToken><Expiration>%s</Expiration></Credentials>"
             "</AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>",
             key_id, secret, token, exp);
}

/* Turns IMDS on (fx_start leaves it disabled), aimed at the fake server. */
static inline void fx_imds_on(const aws_fixture_t *f)
{
    unsetenv("AWS_EC2_METADATA_DISABLED");
    setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", f->srv.base, 1);
}

/* Web identity settings aimed at the fake STS (<base>/sts/): the token file
 * HOME/token.jwt holds "webid-jwt-token", the role is
 * arn:aws:iam::123456789012:role/shardrun, the session test-session. */
static inline void fx_web_identity(const aws_fixture_t *f)
{
    char url[128];
    setenv("AWS_WEB_IDENTITY_TOKEN_FILE", tempdir_write(f->home, "token.jwt", "webid-jwt-token\n"), 1);
    snprintf(url, sizeof url, "%s/sts/", f->srv.base);
    setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/shardrun", 1);
    setenv("AWS_ROLE_SESSION_NAME", "test-session", 1);
    setenv("AWS_ENDPOINT_URL_STS", url, 1);
}

#endif
