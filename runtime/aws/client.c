/* aws_client: signed AWS JSON API calls over one HTTP client and one
 * credentials chain (see client.h).
 *
 * A call is an aws_http request whose prepare hook (client_prepare) signs
 * each attempt; when the chain has no credentials yet, the hook holds the
 * request and a waiter on the chain resumes it. */
#include "client.h"

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "aws_metrics.h"
#include "base/buf.h"
#include "base/xalloc.h"
#include "sigv4.h"

/* A signing key and what it was derived from (see client_signing_key). */
typedef struct client_key {
    char date[9];                    /* YYYYMMDD; "" = unused */
    char *region, *service, *secret; /* secret: wiped before it is freed */
    unsigned char key[AWS_SIGV4_KEY_LEN];
} client_key_t;

#define CLIENT_KEYS 4 /* a client serves a service or two in a region or two */

struct aws_client {
    struct ev_loop *loop;
    aws_http_t *http;
    aws_cred_t *cred;
    char *profile;              /* the config's, for region resolution; NULL = AWS_PROFILE */
    aws_client_req_t *reqs;     /* calls until their callback */
    aws_metrics_t *metrics;     /* NULL: none */
    client_key_t keys[CLIENT_KEYS];
    size_t next_key;            /* the entry a new key replaces */
};

/* One call: what signing needs, and the waiter for the first credentials.
 * Owned by the client's list; freed after the callback or on cancel. */
struct aws_client_req {
    aws_client_t *c;
    aws_client_req_t *next, *prev;
    aws_http_req_t *http;
    aws_cred_waiter_t waiter;
    int waiting;
    char *region, *service, *host, *path, *query, *content_type, *target;
    aws_http_done_cb cb;
    void *ud;
};

aws_client_t *aws_client_new(struct ev_loop *loop, const aws_http_options_t *http_opt,
                             const aws_cred_options_t *cred_opt, errbuf_t *err)
{
    aws_client_t *c = xcalloc(1, sizeof *c); /* the caller's: aws_client_free */
    c->loop = loop;
    c->http = aws_http_new(loop, http_opt);
    if (!c->http) {
        errbuf_set(err, "cannot initialise the HTTP client (libcurl%s%s)",
                   http_opt && http_opt->ca_file ? ", or no PEM certificate in " : "",
                   http_opt && http_opt->ca_file ? http_opt->ca_file : "");
        free(c);
        return NULL;
    }
    c->cred = aws_cred_new(loop, c->http, cred_opt);
    c->profile = cred_opt && cred_opt->profile ? xstrdup(cred_opt->profile) : NULL;
    return c;
}

static void client_req_free(aws_client_req_t *r)
{
    aws_client_t *c = r->c;
    if (r->waiting) aws_cred_unwait(c->cred, &r->waiter);
    if (r->prev) r->prev->next = r->next;
    else c->reqs = r->next;
    if (r->next) r->next->prev = r->prev;
    free(r->region);
    free(r->service);
    free(r->host);
    free(r->path);
    free(r->query);
    free(r->content_type);
    free(r->target);
    free(r);
}

static void client_key_clear(client_key_t *k)
{
    if (k->secret) OPENSSL_cleanse(k->secret, strlen(k->secret));
    free(k->secret);
    free(k->region);
    free(k->service);
    OPENSSL_cleanse(k->key, sizeof k->key);
    memset(k, 0, sizeof *k);
}

void aws_client_free(aws_client_t *c)
{
    if (!c) return;
    /* http first: its requests (the calls' and the providers') end cancelled */
    aws_http_free(c->http);
    aws_cred_free(c->cred);
    aws_metrics_free(c->metrics);
    for (size_t i = 0; i < CLIENT_KEYS; i++) client_key_clear(&c->keys[i]);
    free(c->profile);
    free(c);
}

aws_cred_t *aws_client_cred(aws_client_t *c) { return c->cred; }

int aws_client_endpoint(aws_client_t *c, aws_endpoint_t *ep, const char *service, const char *what,
                        const char *region, const char *endpoint, errbuf_t *err)
{
    memset(ep, 0, sizeof *ep);
    ep->service = service;
    ep->region = aws_cred_region_resolve(region, c->profile);
    if (!ep->region)
        return errbuf_set(err, "%s.region is not set, and neither AWS_REGION, AWS_DEFAULT_REGION nor the profile "
                          "names one: add region = \"us-east-1\" (or yours) to %s", what, what);
    if (endpoint && *endpoint) {
        ep->url = xstrdup(endpoint);
    } else {
        buf_t b = BUF_INIT;
        (void)buf_printf(&b, "https://%s.%s.amazonaws.com/", service, ep->region);
        ep->url = buf_detach(&b); /* owned by ep */
    }
    return 0;
}

void aws_client_endpoint_clear(aws_endpoint_t *ep)
{
    free(ep->region);
    free(ep->url);
    memset(ep, 0, sizeof *ep);
}

/* ---- signing ------------------------------------------------------------------ */

/* The signing key of this day, region, service and secret: derived once and
 * kept, so a request costs one HMAC, not five. Keyed by all the key depends
 * on: new credentials (a refresh, a rotation) or a new day make a new key. */
static const unsigned char *client_signing_key(aws_client_t *c, const char *secret, const char *amz_date,
                                               const char *region, const char *service)
{
    if (!secret || !region || !service || strlen(amz_date) < 8) return NULL; /* the signer refuses these */
    for (size_t i = 0; i < CLIENT_KEYS; i++) {
        client_key_t *k = &c->keys[i];
        if (k->date[0] && !strncmp(k->date, amz_date, 8) && !strcmp(k->region, region) &&
            !strcmp(k->service, service) && !strcmp(k->secret, secret))
            return k->key;
    }
    client_key_t *k = &c->keys[c->next_key++ % CLIENT_KEYS];
    client_key_clear(k);
    memcpy(k->date, amz_date, 8);
    k->region = xstrdup(region); /* owned by the entry: client_key_clear */
    k->service = xstrdup(service);
    k->secret = xstrdup(secret);
    aws_sigv4_signing_key(secret, amz_date, region, service, k->key);
    return k->key;
}

/* Adds the SigV4 headers of this attempt; 0, or -1 when signing failed. */
static int client_sign(aws_client_req_t *r, aws_http_req_t *hr, const aws_sigv4_credentials_t *cr)
{
    char date[AWS_SIGV4_AMZ_DATE_LEN + 1];
    size_t body_len = 0;
    const char *body = aws_http_body(hr, &body_len);
    aws_sigv4_amz_date(time(NULL), date);
    aws_sigv4_header_t sh[] = {{"Host", r->host}, {"Content-Type", r->content_type}, {"X-Amz-Target", r->target}};
    aws_sigv4_request_t sreq = {.method = "POST", .path = r->path, .query = r->query, .headers = sh, .nheaders = 3,
                                .body = body, .body_len = body_len, .region = r->region, .service = r->service,
                                .amz_date = date, .creds = cr, .normalize_path = 1,
                                .signing_key = client_signing_key(r->c, cr->secret_access_key, date, r->region,
                                                                  r->service)};
    aws_sigv4_result_t res;
    if (aws_sigv4_sign(&sreq, &res) != 0) return -1;
    for (size_t i = 0; i < res.nadd_headers; i++) aws_http_attempt_header(hr, res.add_headers[i]);
    aws_sigv4_result_free(&res);
    return 0;
}

static const char *client_cred_why(aws_client_t *c)
{
    const char *why = aws_cred_error(c->cred);
    return why ? why : "no AWS credentials available";
}

/* aws_http's prepare hook: every attempt signed with the credentials current now. */
static int client_prepare(void *ud, aws_http_req_t *hr, const char **why)
{
    aws_client_req_t *r = ud;
    aws_sigv4_credentials_t cr;
    if (aws_cred_current(r->c->cred, &cr) != 0) {
        int w = aws_cred_wait(r->c->cred, &r->waiter);
        if (w == 0) {
            r->waiting = 1;
            return AWS_HTTP_HOLD;
        }
        if (w < 0 || aws_cred_current(r->c->cred, &cr) != 0) {
            *why = client_cred_why(r->c);
            return AWS_HTTP_ECREDENTIALS;
        }
    }
    if (client_sign(r, hr, &cr) != 0) {
        *why = "SigV4 signing failed";
        return AWS_HTTP_EINTERNAL;
    }
    return 0;
}

static void client_cred_ready(aws_cred_waiter_t *w, int status)
{
    aws_client_req_t *r = w->data;
    r->waiting = 0;
    aws_http_resume(r->http, status == 0 ? 0 : AWS_HTTP_ECREDENTIALS, status == 0 ? NULL : client_cred_why(r->c));
}

static void client_done(void *ud, const aws_http_response_t *resp)
{
    aws_client_req_t *r = ud;
    r->http = NULL;
    r->cb(r->ud, resp);
    client_req_free(r);
}

/* ---- calls ------------------------------------------------------------------------ */

/* Splits the URL for signing: host (with a non-default port), path, query. */
static int client_split_url(aws_client_req_t *r, const char *url)
{
    CURLU *u = curl_url();
    char *host = NULL, *port = NULL, *path = NULL, *query = NULL;
    int ok = u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
             curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
             curl_url_get(u, CURLUPART_PATH, &path, 0) == CURLUE_OK;
    if (ok) {
        (void)curl_url_get(u, CURLUPART_PORT, &port, 0); /* absent = default port */
        (void)curl_url_get(u, CURLUPART_QUERY, &query, 0);
        buf_t b = BUF_INIT;
        (void)buf_printf(&b, "%s%s%s", host, port ? ":" : "", port ? port : "");
        r->host = buf_detach(&b);
        r->path = xstrdup(path);
        r->query = query ? xstrdup(query) : NULL;
    }
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_free(query);
    curl_url_cleanup(u);
    return ok ? 0 : -1;
}

/* "Kinesis_20131202.GetRecords" -> "GetRecords": the API, for the metrics. */
static const char *client_api(const char *target)
{
    const char *dot = strrchr(target, '.');
    return dot ? dot + 1 : target;
}

void aws_client_set_metrics(aws_client_t *c, metrics_t *registry)
{
    if (!c || c->metrics || !registry) return;
    c->metrics = aws_metrics_new(registry);
    aws_http_set_observer(c->http, aws_metrics_observe, c->metrics);
}

/* A call (retried, whole-request timeout) or a stream (on_data set: never
 * retried, idle watchdog). */
static aws_client_req_t *client_start(aws_client_t *c, const aws_endpoint_t *ep, const char *target,
                                      const char *json_version, const char *body, long timeout_ms,
                                      void (*on_data)(void *, const char *, size_t), aws_http_done_cb cb, void *ud)
{
    if (!c || !ep || !ep->region || !ep->service || !ep->url || !target || !json_version || !cb) return NULL;
    aws_client_req_t *r = xcalloc(1, sizeof *r); /* freed by client_req_free */
    r->c = c;
    r->cb = cb;
    r->ud = ud;
    r->region = xstrdup(ep->region);
    r->service = xstrdup(ep->service);
    r->target = xstrdup(target);
    r->waiter.cb = client_cred_ready;
    r->waiter.data = r;
    buf_t ct = BUF_INIT;
    (void)buf_printf(&ct, "application/x-amz-json-%s", json_version);
    r->content_type = buf_detach(&ct);
    r->next = c->reqs;
    if (c->reqs) c->reqs->prev = r;
    c->reqs = r;
    if (client_split_url(r, ep->url) != 0) {
        client_req_free(r);
        return NULL;
    }
    /* the signed Host, Content-Type and X-Amz-Target go out exactly as signed */
    buf_t l0 = BUF_INIT, l1 = BUF_INIT, l2 = BUF_INIT;
    (void)buf_printf(&l0, "Host: %s", r->host);
    (void)buf_printf(&l1, "Content-Type: %s", r->content_type);
    (void)buf_printf(&l2, "X-Amz-Target: %s", r->target);
    const char *headers[] = {buf_str(&l0), buf_str(&l1), buf_str(&l2), NULL};
    aws_http_request_t q = {.method = "POST", .url = ep->url, .headers = headers, .body = body ? body : "",
                            .body_len = body ? strlen(body) : 0, .timeout_ms = on_data ? 0 : timeout_ms,
                            .retry = !on_data, .prepare = client_prepare, .prepare_ud = r,
                            .http_version = ep->http_version, .on_data = on_data, .data_ud = ud,
                            .idle_timeout_ms = on_data ? timeout_ms : 0,
                            .label = client_api(r->target)};
    r->http = aws_http_send(c->http, &q, client_done, r);
    buf_free(&l0);
    buf_free(&l1);
    buf_free(&l2);
    if (!r->http) {
        client_req_free(r);
        return NULL;
    }
    return r;
}

aws_client_req_t *aws_client_call(aws_client_t *c, const aws_endpoint_t *ep, const char *target,
                                  const char *json_version, const char *body, long timeout_ms, aws_http_done_cb cb,
                                  void *ud)
{
    return client_start(c, ep, target, json_version, body, timeout_ms, NULL, cb, ud);
}

aws_client_req_t *aws_client_stream(aws_client_t *c, const aws_endpoint_t *ep, const char *target,
                                    const char *json_version, const char *body, long idle_timeout_ms,
                                    void (*on_data)(void *ud, const char *p, size_t n), aws_http_done_cb cb, void *ud)
{
    if (!on_data) return NULL;
    return client_start(c, ep, target, json_version, body, idle_timeout_ms, on_data, cb, ud);
}

void aws_client_pause(aws_client_req_t *r, int paused)
{
    if (r) aws_http_pause(r->http, paused);
}

const char *aws_client_http_version(aws_client_req_t *r)
{
    return r ? aws_http_version_used(r->http) : "unknown";
}

void aws_client_cancel(aws_client_t *c, aws_client_req_t *r)
{
    if (!c || !r) return;
    aws_http_cancel(c->http, r->http);
    client_req_free(r);
}

/* ---- error rules -------------------------------------------------------------------- */

int aws_client_is(const aws_http_response_t *r, const char *type)
{
    return r->aws_error_type && !strcmp(r->aws_error_type, type);
}

int aws_client_foreign(const aws_http_response_t *r)
{
    return r->error == AWS_HTTP_EHTTP &&
           (r->status == 404 || aws_client_is(r, "UnknownOperationException") ||
            (r->body && strstr(r->body, "UnknownOperationException")));
}

int aws_client_transient(const aws_http_response_t *r)
{
    switch (r->error) {
    case AWS_HTTP_OK: return 0;
    case AWS_HTTP_ECONNECT:
    case AWS_HTTP_ETIMEOUT:
    case AWS_HTTP_EINTERNAL: return 1;
    case AWS_HTTP_EHTTP:
        return r->status >= 500 || r->status == 429 || aws_http_is_throttle(r->aws_error_type) ||
               aws_client_is(r, "ProvisionedThroughputExceededException") ||
               aws_client_is(r, "LimitExceededException") || aws_client_is(r, "KMSThrottlingException") ||
               aws_client_is(r, "RequestLimitExceeded");
    default: return 0;
    }
}

const char *aws_client_describe(const aws_http_response_t *r, char *out, size_t n)
{
    if (r->error == AWS_HTTP_ECREDENTIALS) /* the chain's own words; no attempt was made */
        snprintf(out, n, "%s", r->message ? r->message : aws_http_strerror(r->error));
    else if (r->error == AWS_HTTP_EHTTP)
        snprintf(out, n, "%s: %s (HTTP %ld%s%s)", r->aws_error_type ? r->aws_error_type : "error",
                 r->message ? r->message : "no message", r->status, r->request_id ? ", request " : "",
                 r->request_id ? r->request_id : "");
    else
        snprintf(out, n, "%s%s%s (after %d attempt%s)", aws_http_strerror(r->error), r->message ? ": " : "",
                 r->message ? r->message : "", r->attempts, r->attempts == 1 ? "" : "s");
    return out;
}
