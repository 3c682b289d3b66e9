/* aws_cred: the credentials chain (see credentials.h).
 *
 * State: NONE -> RESOLVING -> READY | FAILED. Static providers (explicit, env,
 * profile) settle at once; the HTTP ones (web identity, ECS, IMDS) run as a
 * small state machine over aws_http requests. A READY chain with an expiry
 * refreshes from the same provider; the old values stay current meanwhile. */
#include "credentials.h"

#include <cjson/cJSON.h>
#include <ev.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "awsjson.h"
#include "profile.h"
#include "base/buf.h"
#include "base/log.h"
#include "base/xalloc.h"

typedef enum { CRED_NONE, CRED_RESOLVING, CRED_READY, CRED_FAILED } cred_state_t;
typedef enum { SRC_NONE, SRC_EXPLICIT, SRC_ENV, SRC_WEBID, SRC_PROFILE, SRC_ECS, SRC_IMDS } cred_src_t;

static const char *const cred_src_names[] = {NULL, "explicit", "env", "web-identity", "profile",
                                             "ecs", "imds"};

/* one set of credentials; all strings owned, secrets wiped on free */
typedef struct cred_value {
    char *ak, *sk, *token;
    time_t expiration; /* 0 = never */
    char *detail;      /* "role=..." or "profile=...": shown by describe, never secret */
} cred_value_t;

struct aws_cred {
    struct ev_loop *loop;
    aws_http_t *http;
    char *ak, *sk, *token, *profile, *region; /* options, copied */
    long refresh_before_s, http_timeout_ms;
    cred_state_t state;
    cred_src_t source;
    cred_value_t cur;
    aws_cred_waiter_t *waiters;
    aws_http_req_t *req; /* the provider's request in flight, or NULL */
    cred_src_t req_src;
    int imds_step;
    char *imds_base, *imds_token, *imds_role;
    ev_timer refresh;
    char err[2048];
    int failures_logged; /* aws_credentials_failed lines for the same error: one */
    int quiet;           /* inside aws_cred_check: the caller reports a failure */
};

/* ---- small helpers --------------------------------------------------------- */

static const char *cred_env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

static void cred_value_free(cred_value_t *v)
{
    if (v->sk) OPENSSL_cleanse(v->sk, strlen(v->sk));
    if (v->token) OPENSSL_cleanse(v->token, strlen(v->token));
    free(v->ak);
    free(v->sk);
    free(v->token);
    free(v->detail);
    memset(v, 0, sizeof *v);
}

/* "2024-01-01T00:00:00Z" or with ".000Z": UTC seconds, 0 when unparsable. */
static time_t cred_parse_time(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                     &tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6)
        return 0;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return timegm(&tm);
}

char *aws_cred_region_resolve(const char *config_region, const char *profile)
{
    if (config_region && *config_region) return xstrdup(config_region);
    const char *r = cred_env("AWS_REGION");
    if (!r) r = cred_env("AWS_DEFAULT_REGION");
    if (r) return xstrdup(r);
    return aws_profile_config_get(aws_profile_name(profile), "region");
}

/* A profile's static keys as the chain's value (detail "profile=NAME"). */
static int cred_profile(const char *profile, cred_value_t *v, char *why, size_t whylen)
{
    aws_profile_keys_t k = {0};
    if (!aws_profile_keys(profile, &k, why, whylen)) return 0;
    buf_t d = BUF_INIT;
    (void)buf_printf(&d, "profile=%s", profile);
    *v = (cred_value_t){k.ak, k.sk, k.token && *k.token ? k.token : NULL, 0, buf_detach(&d)};
    if (k.token && !*k.token) free(k.token);
    return 1;
}

/* ---- outcome ---------------------------------------------------------------- */

static void cred_schedule_refresh(aws_cred_t *c, double delay)
{
    ev_timer_stop(c->loop, &c->refresh);
    ev_timer_set(&c->refresh, delay, 0.);
    ev_timer_start(c->loop, &c->refresh);
}

/* Seconds until the next refresh of credentials expiring at `exp`. */
static double cred_refresh_delay(const aws_cred_t *c, time_t exp)
{
    double left = difftime(exp, time(NULL));
    double d = left - (double)c->refresh_before_s;
    if (d < 1.0) d = left / 2; /* short-lived: refresh halfway */
    return d < 1.0 ? 1.0 : d;
}

static void cred_notify(aws_cred_t *c, int status)
{
    aws_cred_waiter_t *w = c->waiters;
    c->waiters = NULL; /* callbacks may register again */
    while (w) {
        aws_cred_waiter_t *next = w->next;
        w->next = w->prev = NULL;
        w->cb(w, status);
        w = next;
    }
}

static void cred_key_tail(const char *ak, char out[16])
{
    size_t n = ak ? strlen(ak) : 0;
    snprintf(out, 16, "****%s", n >= 4 ? ak + n - 4 : "");
}

/* Takes over *v on success (v == NULL: failure, `why` says so). */
static void cred_result(aws_cred_t *c, cred_src_t src, cred_value_t *v, const char *why)
{
    char q[2200];
    if (v) {
        int first = c->state != CRED_READY;
        cred_value_free(&c->cur);
        c->cur = *v;
        memset(v, 0, sizeof *v);
        c->source = src;
        c->state = CRED_READY;
        c->err[0] = '\0';
        char what[400];
        log_info(first ? "aws_credentials_resolved" : "aws_credentials_refreshed", "%s expires_in_s=%.0f",
                 aws_cred_describe(c, what, sizeof what),
                 c->cur.expiration ? difftime(c->cur.expiration, time(NULL)) : -1.0);
        if (c->cur.expiration) cred_schedule_refresh(c, cred_refresh_delay(c, c->cur.expiration));
    } else if (c->state == CRED_READY) {
        /* refresh failed: keep what we have, try again well before expiry */
        double left = c->cur.expiration ? difftime(c->cur.expiration, time(NULL)) : 0;
        double retry = left > 240 ? 60 : left > 20 ? left / 4 : 5;
        log_warn("aws_credentials_refresh_failed", "source=%s error=%s expires_in_s=%.0f retry_s=%.0f",
                 cred_src_names[src], log_quote(why, q, sizeof q), left, retry);
        cred_schedule_refresh(c, retry);
    } else {
        /* the same failure again (each call re-runs the chain) is not news:
         * one line per distinct error, so the list of steps shows once */
        int same = c->failures_logged && !strcmp(c->err, why);
        c->state = CRED_FAILED;
        snprintf(c->err, sizeof c->err, "%s", why);
        if (!same && !c->quiet)
            log_error("aws_credentials_failed", "source=%s error=%s", src ? cred_src_names[src] : "-",
                      log_quote(why, q, sizeof q));
        c->failures_logged = 1;
    }
    cred_notify(c, c->state == CRED_READY ? 0 : -1);
}

static void cred_static(aws_cred_t *c, cred_src_t src, const char *ak, const char *sk,
                        const char *token, const char *detail)
{
    cred_value_t v = {xstrdup(ak), xstrdup(sk), token && *token ? xstrdup(token) : NULL, 0,
                      detail ? xstrdup(detail) : NULL};
    cred_result(c, src, &v, NULL);
}

/* ---- HTTP providers ----------------------------------------------------------- */

static void cred_http_done(void *ud, const aws_http_response_t *resp);

static void cred_send(aws_cred_t *c, cred_src_t src, const char *method, const char *url,
                      const char *const *headers, const char *body, long timeout_ms)
{
    aws_http_request_t q = {.method = method, .url = url, .headers = headers, .body = body,
                            .body_len = body ? strlen(body) : 0, .timeout_ms = timeout_ms,
                            .retry = 1, .max_retries = 2};
    c->req_src = src;
    c->req = c->http ? aws_http_send(c->http, &q, cred_http_done, c) : NULL;
    if (!c->req) cred_result(c, src, NULL, "could not start the credentials request");
}

static void cred_start_webid(aws_cred_t *c)
{
    char *token = aws_profile_read_file(cred_env("AWS_WEB_IDENTITY_TOKEN_FILE"));
    if (!token) {
        cred_result(c, SRC_WEBID, NULL, "web identity: cannot read AWS_WEB_IDENTITY_TOKEN_FILE");
        return;
    }
    const char *arn = cred_env("AWS_ROLE_ARN");
    char session[64];
    const char *name = cred_env("AWS_ROLE_SESSION_NAME");
    if (!name) {
        snprintf(session, sizeof session, "shardrun-%ld-%ld", (long)getpid(), (long)time(NULL));
        name = session;
    }
    char *t = aws_profile_trim(token);
    char *e_arn = aws_sigv4_uri_encode(arn, strlen(arn), 0);
    char *e_name = aws_sigv4_uri_encode(name, strlen(name), 0);
    char *e_tok = aws_sigv4_uri_encode(t, strlen(t), 0);
    buf_t body = BUF_INIT, url = BUF_INIT;
    (void)buf_printf(&body, "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=%s"
                            "&RoleSessionName=%s&WebIdentityToken=%s", e_arn, e_name, e_tok);
    const char *ep = cred_env("AWS_ENDPOINT_URL_STS");
    char *region = aws_cred_region_resolve(c->region, c->profile);
    if (ep) (void)buf_append_str(&url, ep);
    else if (region) (void)buf_printf(&url, "https://sts.%s.amazonaws.com/", region);
    else (void)buf_append_str(&url, "https://sts.amazonaws.com/");
    static const char *const hdrs[] = {"Content-Type: application/x-www-form-urlencoded",
                                       "Accept: application/xml", NULL};
    cred_send(c, SRC_WEBID, "POST", buf_str(&url), hdrs, buf_str(&body), c->http_timeout_ms);
    OPENSSL_cleanse(token, strlen(token));
    OPENSSL_cleanse(e_tok, strlen(e_tok));
    OPENSSL_cleanse(body.data, body.len);
    free(token);
    free(e_arn);
    free(e_name);
    free(e_tok);
    free(region);
    buf_free(&body);
    buf_free(&url);
}

static void cred_start_ecs(aws_cred_t *c)
{
    const char *rel = cred_env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    buf_t url = BUF_INIT, auth = BUF_INIT;
    if (rel) (void)buf_printf(&url, "http://169.254.170.2%s", rel);
    else (void)buf_append_str(&url, cred_env("AWS_CONTAINER_CREDENTIALS_FULL_URI"));
    if (!rel && !aws_cred_container_url_allowed(buf_str(&url))) {
        buf_free(&url);
        cred_result(c, SRC_ECS, NULL, "container credentials: AWS_CONTAINER_CREDENTIALS_FULL_URI "
                                      "must be https or a loopback/ECS/EKS address");
        return;
    }
    char *file_tok = aws_profile_read_file(cred_env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"));
    const char *tok = file_tok ? aws_profile_trim(file_tok) : cred_env("AWS_CONTAINER_AUTHORIZATION_TOKEN");
    if (cred_env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") && !file_tok) {
        cred_result(c, SRC_ECS, NULL, "container credentials: cannot read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
    } else if (tok && strpbrk(tok, "\r\n")) {
        cred_result(c, SRC_ECS, NULL, "container credentials: authorization token holds a line break");
    } else {
        if (tok) (void)buf_printf(&auth, "Authorization: %s", tok);
        const char *hdrs[] = {"Accept: application/json", tok ? buf_str(&auth) : NULL, NULL};
        cred_send(c, SRC_ECS, "GET", buf_str(&url), hdrs, NULL, c->http_timeout_ms);
    }
    if (file_tok) OPENSSL_cleanse(file_tok, strlen(file_tok));
    if (auth.data) OPENSSL_cleanse(auth.data, auth.len);
    free(file_tok);
    buf_free(&auth);
    buf_free(&url);
}

static void cred_imds_step(aws_cred_t *c)
{
    buf_t url = BUF_INIT, tok = BUF_INIT;
    const char *prefix = "/latest/meta-data/iam/security-credentials/";
    if (c->imds_token) (void)buf_printf(&tok, "X-aws-ec2-metadata-token: %s", c->imds_token);
    const char *hdrs[] = {c->imds_token ? buf_str(&tok) : NULL, NULL};
    static const char *const ttl[] = {"X-aws-ec2-metadata-token-ttl-seconds: 21600", NULL};
    if (c->imds_step == 0) {
        (void)buf_printf(&url, "%s/latest/api/token", c->imds_base);
        cred_send(c, SRC_IMDS, "PUT", buf_str(&url), ttl, NULL, 1000);
    } else if (c->imds_step == 1) {
        (void)buf_printf(&url, "%s%s", c->imds_base, prefix);
        cred_send(c, SRC_IMDS, "GET", buf_str(&url), hdrs, NULL, 1000);
    } else {
        char *role = aws_sigv4_uri_encode(c->imds_role, strlen(c->imds_role), 0);
        (void)buf_printf(&url, "%s%s%s", c->imds_base, prefix, role);
        free(role);
        cred_send(c, SRC_IMDS, "GET", buf_str(&url), hdrs, NULL, 1000);
    }
    buf_free(&url);
    buf_free(&tok);
}

static void cred_start_imds(aws_cred_t *c)
{
    const char *ep = cred_env("AWS_EC2_METADATA_SERVICE_ENDPOINT");
    free(c->imds_base);
    c->imds_base = xstrdup(ep ? ep : "http://169.254.169.254");
    size_t n = strlen(c->imds_base);
    while (n > 0 && c->imds_base[n - 1] == '/') c->imds_base[--n] = '\0';
    free(c->imds_token);
    free(c->imds_role);
    c->imds_token = c->imds_role = NULL;
    c->imds_step = 0;
    cred_imds_step(c);
}

static char *cred_xml_text(const char *body, const char *tag)
{
    char open[64], close[64];
    snprintf(open, sizeof open, "<%s>", tag);
    snprintf(close, sizeof close, "</%s>", tag);
    const char *s = strstr(body, open);
    const char *e = s ? strstr(s, close) : NULL;
    if (!e) return NULL;
    s += strlen(open);
    buf_t b = BUF_INIT;
    static const char *const ent[][2] = {{"&amp;", "&"}, {"&lt;", "<"}, {"&gt;", ">"},
                                         {"&quot;", "\""}, {"&apos;", "'"}};
    while (s < e) {
        size_t i, k = 5;
        for (i = 0; *s == '&' && i < 5; i++)
            if (!strncmp(s, ent[i][0], strlen(ent[i][0]))) k = i;
        if (k < 5) {
            (void)buf_append_str(&b, ent[k][1]);
            s += strlen(ent[k][0]);
        } else {
            (void)buf_append_char(&b, *s++);
        }
    }
    return buf_detach(&b); /* caller frees */
}

static int cred_parse_sts(const char *body, cred_value_t *v)
{
    v->ak = cred_xml_text(body, "AccessKeyId");
    v->sk = cred_xml_text(body, "SecretAccessKey");
    v->token = cred_xml_text(body, "SessionToken");
    char *exp = cred_xml_text(body, "Expiration");
    v->expiration = cred_parse_time(exp);
    free(exp);
    char *arn = cred_xml_text(body, "Arn");
    buf_t d = BUF_INIT;
    (void)buf_printf(&d, "role=%s", arn ? arn : cred_env("AWS_ROLE_ARN"));
    v->detail = buf_detach(&d);
    free(arn);
    return v->ak && v->sk && *v->ak && *v->sk ? 0 : -1;
}

/* ECS and IMDS both answer {"AccessKeyId", "SecretAccessKey", "Token", "Expiration"}. */
static int cred_parse_json(const char *body, size_t len, cred_value_t *v)
{
    cJSON *j = cJSON_ParseWithLength(body, len);
    const char *keys[] = {"AccessKeyId", "SecretAccessKey", "Token", "Expiration", "Code"};
    const char *val[5] = {NULL};
    int bad = 0; /* a field of another type counts as absent: the required ones are checked below */
    for (int i = 0; i < 5; i++) val[i] = awsjson_str(j, keys[i], &bad);
    int ok = val[0] && val[1] && *val[0] && *val[1] && (!val[4] || !strcmp(val[4], "Success"));
    if (ok) {
        v->ak = xstrdup(val[0]);
        v->sk = xstrdup(val[1]);
        v->token = val[2] ? xstrdup(val[2]) : NULL;
        v->expiration = cred_parse_time(val[3]);
    }
    cJSON_Delete(j);
    return ok ? 0 : -1;
}

static void cred_http_fail(aws_cred_t *c, const char *what, const aws_http_response_t *resp)
{
    char why[400];
    snprintf(why, sizeof why, "%s: %s (status %ld%s%s)", what, aws_http_strerror(resp->error),
             resp->status, resp->aws_error_type ? ", " : "",
             resp->aws_error_type ? resp->aws_error_type : "");
    cred_result(c, c->req_src, NULL, why);
}

static void cred_imds_done(aws_cred_t *c, const aws_http_response_t *resp)
{
    cred_value_t v = {0};
    if (resp->error) {
        static const char *const what[] = {"imds: token", "imds: role list", "imds: credentials"};
        cred_http_fail(c, what[c->imds_step], resp);
    } else if (c->imds_step == 0) {
        c->imds_token = xstrndup(resp->body, resp->body_len);
        aws_profile_trim(c->imds_token);
        c->imds_step = 1;
        cred_imds_step(c);
    } else if (c->imds_step == 1) {
        char *list = xstrndup(resp->body, resp->body_len);
        char *nl = strchr(list, '\n');
        if (nl) *nl = '\0'; /* an instance profile has one role: take the first line */
        char *role = aws_profile_trim(list);
        if (!*role) {
            cred_result(c, SRC_IMDS, NULL, "imds: no IAM role attached to this instance");
        } else {
            c->imds_role = xstrdup(role);
            c->imds_step = 2;
            cred_imds_step(c);
        }
        free(list);
    } else if (cred_parse_json(resp->body, resp->body_len, &v) == 0) {
        buf_t d = BUF_INIT;
        (void)buf_printf(&d, "role=%s", c->imds_role);
        v.detail = buf_detach(&d);
        cred_result(c, SRC_IMDS, &v, NULL);
    } else {
        cred_result(c, SRC_IMDS, NULL, "imds: credentials document incomplete or Code != Success");
    }
}

static void cred_http_done(void *ud, const aws_http_response_t *resp)
{
    aws_cred_t *c = ud;
    cred_value_t v = {0};
    c->req = NULL;
    if (resp->error == AWS_HTTP_ECANCELLED) { /* the HTTP client is shutting down: stay quiet */
        if (c->state == CRED_RESOLVING) c->state = CRED_FAILED;
        snprintf(c->err, sizeof c->err, "credentials request cancelled");
        cred_notify(c, c->state == CRED_READY ? 0 : -1);
        return;
    }
    if (c->req_src == SRC_IMDS) {
        cred_imds_done(c, resp);
    } else if (resp->error) {
        cred_http_fail(c, c->req_src == SRC_WEBID ? "web identity: STS" : "container credentials", resp);
    } else if (c->req_src == SRC_WEBID ? cred_parse_sts(resp->body, &v) == 0
                                       : cred_parse_json(resp->body, resp->body_len, &v) == 0) {
        cred_result(c, c->req_src, &v, NULL);
    } else {
        cred_value_free(&v);
        cred_result(c, c->req_src, NULL, c->req_src == SRC_WEBID
                                             ? "web identity: STS response without credentials"
                                             : "container credentials: response without credentials");
    }
    cred_value_free(&v);
}

static void cred_start(aws_cred_t *c, cred_src_t src)
{
    if (src == SRC_WEBID) cred_start_webid(c);
    else if (src == SRC_ECS) cred_start_ecs(c);
    else cred_start_imds(c);
}

/* ---- the chain ------------------------------------------------------------------ */

static int cred_imds_disabled(void)
{
    const char *d = cred_env("AWS_EC2_METADATA_DISABLED");
    return d && !strcasecmp(d, "true");
}

/* Why one step of the chain gave nothing, for the error that lists them all. */
static void cred_tried(buf_t *b, const char *step, const char *why)
{
    (void)buf_printf(b, "%s%s: %s", b->len ? "; " : "", step, why);
}

/* The environment step: 1 with both keys, 0 with `why` (one without the other
 * is named: a half-set pair is a mistake, not an absence). */
static int cred_env_keys(char *why, size_t n)
{
    const char *ak = cred_env("AWS_ACCESS_KEY_ID"), *sk = cred_env("AWS_SECRET_ACCESS_KEY");
    if (ak && sk) return 1;
    snprintf(why, n, "%s", ak ? "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not"
                           : sk ? "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not"
                                : "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set");
    return 0;
}

/* Runs the chain; returns 1 (READY now), -1 (FAILED now) or 0 (resolving).
 * A profile named in the config is the chain's first step and its only one:
 * that profile's keys, or a failure naming it. Otherwise the SDKs' order;
 * when no step is configured, the failure says why each gave nothing. */
static int cred_begin(aws_cred_t *c)
{
    cred_value_t v = {0};
    char why[1024];
    buf_t tried = BUF_INIT;
    c->state = CRED_RESOLVING;
    if (c->ak && c->sk) {
        cred_static(c, SRC_EXPLICIT, c->ak, c->sk, c->token, NULL);
    } else if (c->profile && *c->profile) {
        if (cred_profile(c->profile, &v, why, sizeof why)) {
            cred_result(c, SRC_PROFILE, &v, NULL);
        } else {
            char msg[1200];
            snprintf(msg, sizeof msg, "aws.profile in the config names a profile that gives no credentials: %s", why);
            cred_result(c, SRC_PROFILE, NULL, msg);
        }
    } else if (cred_env_keys(why, sizeof why)) {
        cred_static(c, SRC_ENV, cred_env("AWS_ACCESS_KEY_ID"), cred_env("AWS_SECRET_ACCESS_KEY"),
                    cred_env("AWS_SESSION_TOKEN"), NULL);
    } else {
        cred_tried(&tried, "1. config (aws table)", "no access_key_id/secret_access_key or profile");
        cred_tried(&tried, "2. environment", why);
        const char *tf = cred_env("AWS_WEB_IDENTITY_TOKEN_FILE"), *arn = cred_env("AWS_ROLE_ARN");
        const char *profile = aws_profile_name(NULL);
        if (tf && arn) {
            cred_start(c, SRC_WEBID);
        } else {
            cred_tried(&tried, "3. web identity", tf ? "AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not"
                                                     : arn ? "AWS_ROLE_ARN is set but AWS_WEB_IDENTITY_TOKEN_FILE is not"
                                                           : "AWS_WEB_IDENTITY_TOKEN_FILE is not set");
            if (cred_profile(profile, &v, why, sizeof why)) {
                cred_result(c, SRC_PROFILE, &v, NULL);
            } else {
                char step[600];
                snprintf(step, sizeof step, "4. shared files (profile from %s)",
                         cred_env("AWS_PROFILE") ? "AWS_PROFILE" : "the default");
                cred_tried(&tried, step, why);
                if (cred_env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") ||
                    cred_env("AWS_CONTAINER_CREDENTIALS_FULL_URI")) {
                    cred_start(c, SRC_ECS);
                } else {
                    cred_tried(&tried, "5. container (ECS/EKS)",
                               "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI and _FULL_URI are not set");
                    if (!cred_imds_disabled()) {
                        cred_start(c, SRC_IMDS);
                    } else {
                        cred_tried(&tried, "6. EC2 instance metadata", "disabled by AWS_EC2_METADATA_DISABLED");
                        buf_t msg = BUF_INIT;
                        (void)buf_printf(&msg, "no AWS credentials found; the chain tried, in order: %s",
                                         buf_str(&tried));
                        cred_result(c, SRC_NONE, NULL, buf_str(&msg));
                        buf_free(&msg);
                    }
                }
            }
        }
    }
    buf_free(&tried);
    return c->state == CRED_READY ? 1 : c->state == CRED_FAILED ? -1 : 0;
}

static void cred_refresh_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    aws_cred_t *c = w->data;
    (void)loop;
    (void)revents;
    if (c->req) return; /* one request at a time; its outcome reschedules */
    if (c->source == SRC_WEBID || c->source == SRC_ECS || c->source == SRC_IMDS)
        cred_start(c, c->source);
}

aws_cred_t *aws_cred_new(struct ev_loop *loop, aws_http_t *http, const aws_cred_options_t *opt)
{
    aws_cred_options_t d = {0};
    if (!opt) opt = &d;
    aws_cred_t *c = xcalloc(1, sizeof *c); /* freed by aws_cred_free */
    c->loop = loop;
    c->http = http;
    if (opt->access_key_id && *opt->access_key_id && opt->secret_access_key && *opt->secret_access_key) {
        c->ak = xstrdup(opt->access_key_id);
        c->sk = xstrdup(opt->secret_access_key);
        c->token = xstrdup(opt->session_token);
    }
    c->profile = xstrdup(opt->profile);
    c->region = xstrdup(opt->region);
    c->refresh_before_s = opt->refresh_before_s > 0 ? opt->refresh_before_s : 300;
    c->http_timeout_ms = opt->http_timeout_ms > 0 ? opt->http_timeout_ms : 5000;
    ev_init(&c->refresh, cred_refresh_cb);
    c->refresh.data = c;
    return c;
}

void aws_cred_free(aws_cred_t *c)
{
    if (!c) return;
    if (c->req) aws_http_cancel(c->http, c->req);
    c->req = NULL;
    ev_timer_stop(c->loop, &c->refresh);
    snprintf(c->err, sizeof c->err, "credentials provider shut down");
    cred_notify(c, -1);
    cred_value_free(&c->cur);
    if (c->sk) OPENSSL_cleanse(c->sk, strlen(c->sk));
    if (c->token) OPENSSL_cleanse(c->token, strlen(c->token));
    if (c->imds_token) OPENSSL_cleanse(c->imds_token, strlen(c->imds_token));
    free(c->ak);
    free(c->sk);
    free(c->token);
    free(c->profile);
    free(c->region);
    free(c->imds_base);
    free(c->imds_token);
    free(c->imds_role);
    free(c);
}

int aws_cred_resolve(aws_cred_t *c)
{
    if (c->state == CRED_READY) return 1;
    if (c->state == CRED_RESOLVING) return 0;
    return cred_begin(c);
}

int aws_cred_check(aws_cred_t *c, errbuf_t *err)
{
    c->quiet = 1;
    int r = aws_cred_resolve(c);
    c->quiet = 0;
    if (r < 0) return errbuf_set(err, "%s", c->err[0] ? c->err : "no AWS credentials");
    return 0;
}

int aws_cred_current(aws_cred_t *c, aws_sigv4_credentials_t *out)
{
    if (c->state != CRED_READY) return -1; /* a refresh in flight keeps READY */
    out->access_key_id = c->cur.ak;
    out->secret_access_key = c->cur.sk;
    out->session_token = c->cur.token;
    return 0;
}

int aws_cred_wait(aws_cred_t *c, aws_cred_waiter_t *w)
{
    int r = aws_cred_resolve(c);
    if (r != 0) return r;
    w->prev = NULL;
    w->next = c->waiters;
    if (c->waiters) c->waiters->prev = w;
    c->waiters = w;
    return 0;
}

void aws_cred_unwait(aws_cred_t *c, aws_cred_waiter_t *w)
{
    int listed = w->prev || c->waiters == w;
    if (!listed) return;
    if (w->prev) w->prev->next = w->next;
    else c->waiters = w->next;
    if (w->next) w->next->prev = w->prev;
    w->next = w->prev = NULL;
}

const char *aws_cred_error(const aws_cred_t *c) { return c->err[0] ? c->err : NULL; }

const char *aws_cred_describe(aws_cred_t *c, char *out, size_t n)
{
    char tail[16], when[32] = "never", q[600];
    if (c->state != CRED_READY) {
        snprintf(out, n, "source=none state=%s%s%s",
                 c->state == CRED_RESOLVING ? "resolving" : c->state == CRED_FAILED ? "failed" : "unresolved",
                 c->err[0] ? " error=" : "", c->err[0] ? log_quote(c->err, q, sizeof q) : "");
        return out;
    }
    cred_key_tail(c->cur.ak, tail);
    if (c->cur.expiration) {
        struct tm tm;
        gmtime_r(&c->cur.expiration, &tm);
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    }
    snprintf(out, n, "source=%s%s%s key=%s expires=%s", cred_src_names[c->source], c->cur.detail ? " " : "",
             c->cur.detail ? c->cur.detail : "", tail, when);
    return out;
}

int aws_cred_container_url_allowed(const char *url)
{
    if (!url) return 0;
    if (!strncasecmp(url, "https://", 8)) return 1;
    if (strncasecmp(url, "http://", 7) != 0) return 0;
    const char *h = url + 7;
    unsigned a, b, d, e;
    int used = 0;
    /* the host must end right after the address: "127.0.0.1@evil" or "127.0.0.1.evil" do not */
    if (sscanf(h, "%3u.%3u.%3u.%3u%n", &a, &b, &d, &e, &used) == 4 && a == 127 && b < 256 &&
        d < 256 && e < 256 && (h[used] == '\0' || h[used] == ':' || h[used] == '/'))
        return 1;
    static const char *const hosts[] = {"localhost", "[::1]", "169.254.170.2", "169.254.170.23",
                                        "[fd00:ec2::23]", NULL};
    for (int i = 0; hosts[i]; i++) {
        size_t n = strlen(hosts[i]);
        char next = h[n];
        if (!strncasecmp(h, hosts[i], n) && (next == '\0' || next == ':' || next == '/')) return 1;
    }
    return 0;
}
