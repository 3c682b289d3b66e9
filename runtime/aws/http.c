/* aws_http: curl multi driven by libev (see http.h).
 *
 * curl tells us which sockets to watch (http_sock_cb) and when to wake it
 * (http_timer_cb); libev calls back into curl_multi_socket_action. A request
 * owns one easy handle for all its attempts; the multi handle owns the
 * connection cache, so keep-alive connections are shared by all requests.
 *
 * A stream's body pieces are queued by curl's write callback (the request
 * joins the `ready` queue) and handed to on_data by http_deliver once curl
 * has returned, so a stream's owner may cancel or pause from its callback.
 * Streams share the transfer machinery (easy handles, the multi, the error
 * mapping), hence one file of a little over 800 lines. */
#include "http.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <ev.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "awsjson.h"
#include "base/backoff.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/logsum.h"
#include "base/xalloc.h"

#define HTTP_MAX_HOSTS 8

typedef struct http_sock {
    ev_io io; /* io.data = this */
    curl_socket_t fd;
    aws_http_t *h;
    struct http_sock *next, *prev;
} http_sock_t;

struct aws_http {
    struct ev_loop *loop;
    CURLM *multi;
    ev_timer timer; /* curl's timeout */
    STACK_OF(X509) *extra_ca; /* from opt.ca_file, added to every TLS context */
    long connect_timeout_ms, retry_base_ms, retry_max_ms;
    int max_retries;
    size_t max_response;
    aws_http_req_t *reqs; /* every live request */
    aws_http_req_t *ready, *ready_tail; /* streams with received bytes to hand over, in order */
    http_sock_t *socks;
    uint64_t rng;
    struct http_host {
        char name[128];     /* host:port */
        logsum_t sum;       /* its retries, told once per outage */
    } hosts[HTTP_MAX_HOSTS];  /* the hosts seen (a process talks to a handful); the oldest make room */
    size_t nhosts, next_host;
    int closing;     /* in aws_http_free: no new requests */
    int dispatching; /* inside a user callback: aws_http_free is forbidden */
    aws_http_observe_fn observe;  /* every attempt (metrics); NULL: none */
    void *observe_ud;
};

struct aws_http_req {
    aws_http_t *h;
    aws_http_req_t *next, *prev;
    CURL *easy;
    int in_multi;
    struct curl_slist *slist;
    char *method, *url, *body;
    size_t body_len;
    char **headers; /* owned "K: V" lines, NULL-terminated */
    long timeout_ms;
    int retry, max_retries, attempts;
    ev_timer wake; /* next attempt (0 s for the first, backoff after) */
    aws_http_done_cb cb;
    void *ud;
    /* response of the current attempt */
    buf_t resp;
    long status;
    char *error_type_hdr, *request_id;
    int too_large;
    char errbuf[CURL_ERROR_SIZE];
    int (*prepare)(void *, aws_http_req_t *, const char **);
    void *prepare_ud;
    int held;       /* the prepare hook asked to wait: aws_http_resume ends it */
    /* a stream (on_data set): resp holds what was received and not yet handed over */
    void (*on_data)(void *, const char *, size_t);
    void *data_ud;
    long idle_ms;
    int http_version;
    int paused;     /* aws_http_pause(1) */
    int in_ready;
    aws_http_req_t *ready_next;
    ev_timer idle;  /* the watchdog */
    ev_timer kick;  /* resumes a paused transfer on a loop turn */
    char *label;    /* for the observer; NULL: none */
};

static const char *const http_throttle_types[] = {
    "ThrottlingException", "ProvisionedThroughputExceededException", "LimitExceededException",
    "RequestLimitExceeded", "TooManyRequestsException", "Throttling", "ThrottledException",
    "RequestThrottledException", "RequestThrottled", "SlowDown", NULL};

int aws_http_is_throttle(const char *t)
{
    for (int i = 0; t && http_throttle_types[i]; i++)
        if (!strcmp(t, http_throttle_types[i])) return 1;
    return 0;
}

const char *aws_http_strerror(int e)
{
    switch (e) {
    case AWS_HTTP_OK: return "ok";
    case AWS_HTTP_EINVAL: return "invalid request";
    case AWS_HTTP_ECONNECT: return "connection failed";
    case AWS_HTTP_ETIMEOUT: return "timed out";
    case AWS_HTTP_ETLS: return "TLS failure";
    case AWS_HTTP_ECANCELLED: return "cancelled";
    case AWS_HTTP_EHTTP: return "HTTP error status";
    case AWS_HTTP_ECREDENTIALS: return "no AWS credentials";
    case AWS_HTTP_ETOOLARGE: return "response too large";
    default: return "internal error";
    }
}

/* ---- backoff ------------------------------------------------------------- */

static uint64_t http_rand(aws_http_t *h)
{
    /* xorshift64*: jitter only needs to decorrelate workers, not be secret */
    h->rng ^= h->rng >> 12;
    h->rng ^= h->rng << 25;
    h->rng ^= h->rng >> 27;
    return h->rng * 2685821657736338717ULL;
}

long aws_http_backoff_ms(aws_http_t *h, int retry)
{
    return (long)backoff_delay_ms(h->retry_base_ms, h->retry_max_ms, retry, http_rand(h));
}

/* ---- curl <-> libev -------------------------------------------------------- */

static void http_check_done(aws_http_t *h);
static void http_idle_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void http_kick_cb(struct ev_loop *loop, ev_timer *w, int revents);

static void http_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    http_sock_t *sk = w->data;
    int action = (revents & EV_READ ? CURL_CSELECT_IN : 0) | (revents & EV_WRITE ? CURL_CSELECT_OUT : 0);
    int running = 0;
    aws_http_t *h = sk->h; /* sk may be freed by the call below */
    (void)loop;
    CURLMcode rc = curl_multi_socket_action(h->multi, sk->fd, action, &running);
    if (rc != CURLM_OK) log_error("aws_http_socket_action", "error=%s", curl_multi_strerror(rc));
    http_check_done(h);
}

static void http_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    aws_http_t *h = w->data;
    int running = 0;
    (void)loop;
    (void)revents;
    CURLMcode rc = curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    if (rc != CURLM_OK) log_error("aws_http_socket_action", "error=%s", curl_multi_strerror(rc));
    http_check_done(h);
}

static void http_sock_free(aws_http_t *h, http_sock_t *sk)
{
    ev_io_stop(h->loop, &sk->io);
    if (sk->prev) sk->prev->next = sk->next;
    else h->socks = sk->next;
    if (sk->next) sk->next->prev = sk->prev;
    free(sk);
}

static int http_sock_cb(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
    aws_http_t *h = userp;
    http_sock_t *sk = socketp;
    (void)e;
    if (what == CURL_POLL_REMOVE) {
        if (sk) http_sock_free(h, sk);
        return 0;
    }
    if (!sk) {
        sk = xcalloc(1, sizeof *sk); /* freed on CURL_POLL_REMOVE or in aws_http_free */
        sk->fd = s;
        sk->h = h;
        sk->next = h->socks;
        if (h->socks) h->socks->prev = sk;
        h->socks = sk;
        ev_init(&sk->io, http_io_cb);
        sk->io.data = sk;
        if (curl_multi_assign(h->multi, s, sk) != CURLM_OK) log_error("aws_http_assign", NULL);
    }
    int events = (what & CURL_POLL_IN ? EV_READ : 0) | (what & CURL_POLL_OUT ? EV_WRITE : 0);
    ev_io_stop(h->loop, &sk->io);
    ev_io_set(&sk->io, s, events);
    ev_io_start(h->loop, &sk->io);
    return 0;
}

static int http_timer_cb(CURLM *m, long timeout_ms, void *userp)
{
    aws_http_t *h = userp;
    (void)m;
    ev_timer_stop(h->loop, &h->timer);
    if (timeout_ms >= 0) { /* -1 = no timeout wanted */
        ev_timer_set(&h->timer, (double)timeout_ms / 1000.0, 0.);
        ev_timer_start(h->loop, &h->timer);
    }
    return 0;
}

/* ---- TLS: extra CA ------------------------------------------------------- */

/* Adds the extra CAs to curl's context, which already holds the default
 * bundle: a private CA is trusted in addition to the public ones. */
static CURLcode http_ssl_ctx_cb(CURL *e, void *sslctx, void *userp)
{
    aws_http_t *h = userp;
    X509_STORE *st = SSL_CTX_get_cert_store((SSL_CTX *)sslctx);
    (void)e;
    for (int i = 0; st && i < sk_X509_num(h->extra_ca); i++)
        (void)X509_STORE_add_cert(st, sk_X509_value(h->extra_ca, i)); /* duplicates are fine */
    return CURLE_OK;
}

static int http_load_ca(aws_http_t *h, const char *file)
{
    FILE *f = fopen(file, "r");
    if (!f) return -1;
    h->extra_ca = sk_X509_new_null();
    X509 *x;
    while ((x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL)
        if (!sk_X509_push(h->extra_ca, x)) X509_free(x);
    fclose(f);
    return sk_X509_num(h->extra_ca) > 0 ? 0 : -1;
}

/* ---- lifecycle ----------------------------------------------------------- */

static void http_global_init(void)
{
    static int done;
    /* curl_global_init is not thread-safe: the loop thread calls it first */
    if (!done && curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK) done = 1;
}

aws_http_t *aws_http_new(struct ev_loop *loop, const aws_http_options_t *opt)
{
    aws_http_options_t d = {0};
    if (!opt) opt = &d;
    http_global_init();
    aws_http_t *h = xcalloc(1, sizeof *h); /* freed by aws_http_free */
    h->loop = loop;
    h->connect_timeout_ms = opt->connect_timeout_ms > 0 ? opt->connect_timeout_ms : 5000;
    h->max_retries = opt->max_retries < 0 ? 0 : opt->max_retries ? opt->max_retries : 3;
    h->retry_base_ms = opt->retry_base_ms > 0 ? opt->retry_base_ms : 100;
    h->retry_max_ms = opt->retry_max_ms > 0 ? opt->retry_max_ms : 20000;
    if (h->retry_max_ms < h->retry_base_ms) h->retry_max_ms = h->retry_base_ms;
    h->max_response = opt->max_response_bytes ? opt->max_response_bytes : (size_t)32 << 20;
    h->rng = ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid() ^ (uint64_t)(uintptr_t)h;
    if (!h->rng) h->rng = 88172645463325252ULL;
    if (opt->ca_file && http_load_ca(h, opt->ca_file) != 0) {
        char q[512];
        log_error("aws_http_ca_file", "file=%s error=\"no PEM certificate could be read\"",
                  log_quote(opt->ca_file, q, sizeof q));
        aws_http_free(h);
        return NULL;
    }
    h->multi = curl_multi_init();
    if (!h->multi) {
        aws_http_free(h);
        return NULL;
    }
    ev_init(&h->timer, http_timeout_cb);
    h->timer.data = h;
    if (curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, http_sock_cb) != CURLM_OK ||
        curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h) != CURLM_OK ||
        curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, http_timer_cb) != CURLM_OK ||
        curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h) != CURLM_OK) {
        aws_http_free(h);
        return NULL;
    }
    return h;
}

static void http_ready_unlink(aws_http_req_t *r)
{
    aws_http_t *h = r->h;
    aws_http_req_t **pp = &h->ready, *prev = NULL;
    while (*pp && *pp != r) {
        prev = *pp;
        pp = &(*pp)->ready_next;
    }
    if (!*pp) return;
    *pp = r->ready_next;
    if (h->ready_tail == r) h->ready_tail = prev;
    r->in_ready = 0;
    r->ready_next = NULL;
}

static void http_req_free(aws_http_req_t *r)
{
    aws_http_t *h = r->h;
    if (r->in_multi) (void)curl_multi_remove_handle(h->multi, r->easy);
    ev_timer_stop(h->loop, &r->wake);
    ev_timer_stop(h->loop, &r->idle);
    ev_timer_stop(h->loop, &r->kick);
    if (r->in_ready) http_ready_unlink(r);
    if (r->prev) r->prev->next = r->next;
    else h->reqs = r->next;
    if (r->next) r->next->prev = r->prev;
    if (r->easy) curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->slist);
    for (char **p = r->headers; p && *p; p++) free(*p);
    free(r->headers);
    free(r->method);
    free(r->url);
    free(r->body);
    buf_free(&r->resp);
    free(r->error_type_hdr);
    free(r->request_id);
    free(r->label);
    free(r);
}

/* Delivers the outcome and frees the request. */
static void http_finish(aws_http_req_t *r, int error, const char *type, const char *message)
{
    aws_http_t *h = r->h;
    aws_http_response_t resp = {
        .error = error, .status = r->status, .body = buf_str(&r->resp), .body_len = r->resp.len,
        .aws_error_type = type, .message = message, .request_id = r->request_id,
        .attempts = r->attempts,
    };
    h->dispatching++;
    r->cb(r->ud, &resp);
    h->dispatching--;
    http_req_free(r);
}

void aws_http_free(aws_http_t *h)
{
    if (!h) return;
    assert(!h->dispatching && "aws_http_free called from inside an aws_http callback");
    h->closing = 1;
    /* a callback may end other requests of the list (a cancelled credentials
     * request resumes the requests held for it): take the head each time */
    while (h->reqs) http_finish(h->reqs, AWS_HTTP_ECANCELLED, NULL, "client shut down");
    if (h->multi) curl_multi_cleanup(h->multi); /* may report CURL_POLL_REMOVE for cached sockets */
    while (h->socks) http_sock_free(h, h->socks);
    ev_timer_stop(h->loop, &h->timer);
    if (h->extra_ca) sk_X509_pop_free(h->extra_ca, X509_free);
    free(h);
}

/* ---- one attempt ------------------------------------------------------------ */

static int http_is_stream_body(const aws_http_req_t *r)
{
    return r->on_data && r->status >= 200 && r->status < 300;
}

static size_t http_write_cb(char *p, size_t size, size_t n, void *ud)
{
    aws_http_req_t *r = ud;
    if (http_is_stream_body(r) && r->idle_ms) ev_timer_again(r->h->loop, &r->idle);
    if (http_is_stream_body(r) && !r->in_ready && size * n > 0) {
        aws_http_t *h = r->h;
        if (h->ready_tail) h->ready_tail->ready_next = r;
        else h->ready = r;
        h->ready_tail = r;
        r->in_ready = 1;
    }
    if (buf_append(&r->resp, p, size * n) != 0) {
        r->too_large = 1;
        return 0; /* curl aborts with CURLE_WRITE_ERROR */
    }
    return size * n;
}

static char *http_header_value(const char *line, size_t n, const char *name)
{
    size_t nl = strlen(name);
    if (n <= nl || strncasecmp(line, name, nl) != 0 || line[nl] != ':') return NULL;
    const char *v = line + nl + 1, *e = line + n;
    while (v < e && (*v == ' ' || *v == '\t')) v++;
    while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' ')) e--;
    return xstrndup(v, (size_t)(e - v)); /* caller frees */
}

static size_t http_header_cb(char *p, size_t size, size_t n, void *ud)
{
    aws_http_req_t *r = ud;
    size_t len = size * n;
    char *v;
    if (len > 5 && !strncmp(p, "HTTP/", 5)) { /* a new response (after 100 Continue) */
        free(r->error_type_hdr);
        free(r->request_id);
        r->error_type_hdr = r->request_id = NULL;
        const char *sp = memchr(p, ' ', len);
        r->status = sp ? strtol(sp + 1, NULL, 10) : 0; /* a stream's body is handed over only after a 2xx */
        if (r->on_data && r->idle_ms) ev_timer_again(r->h->loop, &r->idle);
    } else if ((v = http_header_value(p, len, "x-amzn-ErrorType")) != NULL) {
        free(r->error_type_hdr);
        r->error_type_hdr = v;
    } else if ((v = http_header_value(p, len, "x-amzn-RequestId")) != NULL ||
               (v = http_header_value(p, len, "x-amz-request-id")) != NULL) {
        free(r->request_id);
        r->request_id = v;
    }
    return len;
}

static int http_set_version(aws_http_req_t *r)
{
    CURL *e = r->easy;
    int tls = !strncasecmp(r->url, "https://", 8);
    switch (r->http_version) {
    case AWS_HTTP_VERSION_1_1: return curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1) != CURLE_OK;
    case AWS_HTTP_VERSION_2:
        /* never CURL_HTTP_VERSION_2_0 on http://: that is the Upgrade */
        if (curl_easy_setopt(e, CURLOPT_HTTP_VERSION,
                             tls ? (long)CURL_HTTP_VERSION_2TLS : (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE) != CURLE_OK)
            return -1;
        if (!tls && curl_version_info(CURLVERSION_NOW)->version_num < 0x080000) {
            /* libcurl before 8.0 fails every request that reuses an h2c
             * prior-knowledge connection ("Error in the HTTP2 framing layer",
             * curl#10634): a connection of its own per request there */
            return curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L) != CURLE_OK ||
                   curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L) != CURLE_OK;
        }
        /* requests started together wait for the first connection rather than each opening one */
        return curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L) != CURLE_OK;
    default:
        return tls && r->on_data ? curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L) != CURLE_OK : 0;
    }
}

/* Sets up the easy handle once; attempts only change the headers. */
static int http_easy_setup(aws_http_req_t *r)
{
    aws_http_t *h = r->h;
    CURL *e = r->easy = curl_easy_init();
    if (!e) return -1;
    int bad = 0;
    bad |= curl_easy_setopt(e, CURLOPT_URL, r->url) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_PRIVATE, r) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, h->connect_timeout_ms) != CURLE_OK;
    /* a stream lasts as long as the server sends: the idle watchdog instead */
    bad |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, r->on_data ? 0L : r->timeout_ms) != CURLE_OK;
    bad |= http_set_version(r) != 0;
    bad |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, http_write_cb) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_WRITEDATA, r) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, http_header_cb) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_HEADERDATA, r) != CURLE_OK;
    if (h->extra_ca) {
        bad |= curl_easy_setopt(e, CURLOPT_SSL_CTX_FUNCTION, http_ssl_ctx_cb) != CURLE_OK;
        bad |= curl_easy_setopt(e, CURLOPT_SSL_CTX_DATA, h) != CURLE_OK;
    }
    if (!strcmp(r->method, "GET")) {
        bad |= curl_easy_setopt(e, CURLOPT_HTTPGET, 1L) != CURLE_OK;
    } else if (r->body || !strcmp(r->method, "POST") || !strcmp(r->method, "PUT")) {
        /* the body is owned by r, stable for every attempt */
        bad |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len) != CURLE_OK;
        bad |= curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body ? r->body : "") != CURLE_OK;
        if (strcmp(r->method, "POST") != 0)
            bad |= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method) != CURLE_OK;
    } else {
        bad |= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method) != CURLE_OK;
        bad |= curl_easy_setopt(e, CURLOPT_NOBODY, !strcmp(r->method, "HEAD") ? 1L : 0L) != CURLE_OK;
    }
    return bad ? -1 : 0;
}

static struct curl_slist *http_slist_add(struct curl_slist *l, const char *line)
{
    struct curl_slist *n = curl_slist_append(l, line);
    if (!n) xalloc_oom(strlen(line)); /* curl only fails on allocation */
    return n;
}

static void http_attempt(aws_http_req_t *r)
{
    curl_slist_free_all(r->slist);
    r->slist = NULL;
    buf_reset(&r->resp);
    free(r->error_type_hdr);
    free(r->request_id);
    r->error_type_hdr = r->request_id = NULL;
    r->status = 0;
    r->too_large = 0;
    r->errbuf[0] = '\0';
    for (char **p = r->headers; p && *p; p++) r->slist = http_slist_add(r->slist, *p);
    /* no "Expect: 100-continue" round trip before large bodies */
    r->slist = http_slist_add(r->slist, "Expect:");
    if (r->prepare) {
        const char *why = NULL;
        int p = r->prepare(r->prepare_ud, r, &why);
        if (p == AWS_HTTP_HOLD) {
            r->held = 1;
            return;
        }
        if (p != 0) {
            http_finish(r, p, NULL, why ? why : aws_http_strerror(p));
            return;
        }
    }
    r->attempts++;
    if (curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->slist) != CURLE_OK ||
        curl_multi_add_handle(r->h->multi, r->easy) != CURLM_OK) {
        http_finish(r, AWS_HTTP_EINTERNAL, NULL, "could not start the transfer");
        return;
    }
    r->in_multi = 1;
    if (r->on_data) {
        if (r->paused) (void)curl_easy_pause(r->easy, CURLPAUSE_RECV);
        else if (r->idle_ms) ev_timer_again(r->h->loop, &r->idle);
    }
}

static void http_wake_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    http_attempt(w->data);
}

void aws_http_attempt_header(aws_http_req_t *r, const char *line)
{
    r->slist = http_slist_add(r->slist, line);
}

const char *aws_http_body(const aws_http_req_t *r, size_t *len)
{
    *len = r->body_len;
    return r->body ? r->body : "";
}

void aws_http_resume(aws_http_req_t *r, int error, const char *why)
{
    assert(r->held && "aws_http_resume on a request that is not held");
    r->held = 0;
    if (r->h->closing) http_finish(r, AWS_HTTP_ECANCELLED, NULL, "client shut down");
    else if (error) http_finish(r, error, NULL, why ? why : aws_http_strerror(error));
    else http_attempt(r);
}

/* ---- outcome ------------------------------------------------------------- */

static char *http_xml_tag(const char *body, const char *tag)
{
    char open[64], close[64];
    snprintf(open, sizeof open, "<%s>", tag);
    snprintf(close, sizeof close, "</%s>", tag);
    const char *s = strstr(body, open);
    if (!s) return NULL;
    s += strlen(open);
    const char *e = strstr(s, close);
    return e ? xstrndup(s, (size_t)(e - s)) : NULL; /* caller frees */
}

/* Error type and message of an AWS error body, into *type and *msg (malloc'd
 * or NULL). The header wins over the body; "ns#Type" and "Type:uri" are cut. */
static void http_parse_error(aws_http_req_t *r, char **type, char **msg)
{
    *type = r->error_type_hdr ? xstrdup(r->error_type_hdr) : NULL;
    *msg = NULL;
    const char *body = buf_str(&r->resp);
    cJSON *j = r->resp.len ? cJSON_ParseWithLength(body, r->resp.len) : NULL;
    if (cJSON_IsObject(j)) {
        /* an error body is read leniently: null or a wrong type is no value */
        const char *keys[] = {"__type", "code", "Code"};
        int bad = 0;
        for (int i = 0; i < 3 && !*type; i++) *type = awsjson_strdup(j, keys[i], &bad);
        *msg = awsjson_strdup(j, "message", &bad);
        if (!*msg) *msg = awsjson_strdup(j, "Message", &bad);
    } else if (r->resp.len && body[0] == '<') { /* query APIs (STS) answer in XML */
        if (!*type) *type = http_xml_tag(body, "Code");
        *msg = http_xml_tag(body, "Message");
    }
    cJSON_Delete(j);
    if (*type) {
        char *hash = strrchr(*type, '#');
        if (hash) memmove(*type, hash + 1, strlen(hash + 1) + 1);
        char *colon = strchr(*type, ':');
        if (colon) *colon = '\0';
    }
}

static int http_map_curl(CURLcode rc, int *transient)
{
    *transient = 1;
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST: case CURLE_COULDNT_RESOLVE_PROXY: case CURLE_COULDNT_CONNECT:
    case CURLE_SEND_ERROR: case CURLE_RECV_ERROR: case CURLE_GOT_NOTHING: case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2: case CURLE_HTTP2_STREAM:
        return AWS_HTTP_ECONNECT;
    case CURLE_OPERATION_TIMEDOUT:
        return AWS_HTTP_ETIMEOUT;
    case CURLE_SSL_CONNECT_ERROR: /* handshake cut short: may be a reset, retry */
        return AWS_HTTP_ETLS;
    case CURLE_PEER_FAILED_VERIFICATION: case CURLE_SSL_CERTPROBLEM: case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE: case CURLE_SSL_ISSUER_ERROR: case CURLE_USE_SSL_FAILED:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH: case CURLE_SSL_INVALIDCERTSTATUS: case CURLE_SSL_CRL_BADFILE:
        *transient = 0; /* a certificate does not fix itself */
        return AWS_HTTP_ETLS;
    default:
        *transient = 0;
        return AWS_HTTP_EINTERNAL;
    }
}

/* The request's host:port (URLs carry no secrets here, but stay terse). */
static void http_host_name(const aws_http_req_t *r, char *out, size_t n)
{
    const char *p = strstr(r->url, "://");
    snprintf(out, n, "%.*s", p ? (int)strcspn(p + 3, "/?") : 0, p ? p + 3 : "");
}

static struct http_host *http_host(aws_http_t *h, const char *name)
{
    for (size_t i = 0; i < h->nhosts; i++)
        if (!strcmp(h->hosts[i].name, name)) return &h->hosts[i];
    struct http_host *x = &h->hosts[h->nhosts < HTTP_MAX_HOSTS ? h->nhosts++ : h->next_host++ % HTTP_MAX_HOSTS];
    memset(x, 0, sizeof *x);
    snprintf(x->name, sizeof x->name, "%s", name);
    return x;
}

/* A transient failure about to be retried: the first of an outage of its
 * host is logged in full, the rest are summarised (logsum). */
static void http_log_retry(aws_http_req_t *r, int error, const char *type, const char *msg, long delay)
{
    char name[128], scope[160], why[512];
    http_host_name(r, name, sizeof name);
    snprintf(scope, sizeof scope, "host=%s", name);
    snprintf(why, sizeof why, "%s%s%s%s%s", aws_http_strerror(error), type ? " " : "", type ? type : "",
             msg ? ": " : "", msg ? msg : "");
    if (!logsum_failed(&http_host(r->h, name)->sum, clock_mono_ms(), "aws_http", scope, why)) return;
    log_warn("aws_http_retry", "method=%s host=%s error=%s status=%ld type=%s attempt=%d delay_ms=%ld "
             "then=\"aws_http_outage every 10 s until the host answers\"", r->method, name, aws_http_strerror(error), r->status, type ? type : "-", r->attempts, delay);
}

/* The host answered (a success, or an answer that is not worth retrying). */
static void http_host_answered(aws_http_req_t *r)
{
    char name[128], scope[160];
    http_host_name(r, name, sizeof name);
    struct http_host *x = http_host(r->h, name);
    if (!x->sum.start_ms) return;
    snprintf(scope, sizeof scope, "host=%s", name);
    logsum_ok(&x->sum, clock_mono_ms(), "aws_http", scope);
}

void aws_http_set_observer(aws_http_t *h, aws_http_observe_fn fn, void *ud)
{
    h->observe = fn;
    h->observe_ud = ud;
}

/* Tells the observer how an attempt went. */
static void http_observe(aws_http_req_t *r, int error, const char *type)
{
    if (!r->h->observe) return;
    curl_off_t us = 0;
    (void)curl_easy_getinfo(r->easy, CURLINFO_TOTAL_TIME_T, &us);
    aws_http_attempt_t a = {r->label, error, r->status, r->status == 429 || aws_http_is_throttle(type),
                            (double)us / 1e6};
    r->h->observe(r->h->observe_ud, &a);
}

static void http_attempt_done(aws_http_req_t *r, CURLcode rc)
{
    int error, transient;
    char *type = NULL, *msg = NULL;
    ev_timer_stop(r->h->loop, &r->idle);
    if (rc == CURLE_OK) {
        (void)curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->status);
        if (r->status >= 200 && r->status < 300) {
            http_observe(r, AWS_HTTP_OK, NULL);
            http_host_answered(r);
            if (r->on_data) buf_reset(&r->resp); /* handed over already */
            http_finish(r, AWS_HTTP_OK, NULL, NULL);
            return;
        }
        error = AWS_HTTP_EHTTP;
        http_parse_error(r, &type, &msg);
        transient = r->status >= 500 || r->status == 429 || aws_http_is_throttle(type);
    } else if (r->too_large) {
        error = AWS_HTTP_ETOOLARGE;
        transient = 0;
        msg = xstrdup("response body above the size limit");
    } else {
        error = http_map_curl(rc, &transient);
        msg = xstrdup(r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc));
    }
    http_observe(r, error, type);
    int limit = r->max_retries < 0 ? 0 : r->max_retries ? r->max_retries : r->h->max_retries;
    if (!transient && error == AWS_HTTP_EHTTP) http_host_answered(r);
    if (r->retry && transient && r->attempts <= limit && !r->h->closing) {
        long delay = aws_http_backoff_ms(r->h, r->attempts);
        http_log_retry(r, error, type, msg, delay);
        ev_timer_set(&r->wake, (double)delay / 1000.0, 0.);
        ev_timer_start(r->h->loop, &r->wake);
    } else {
        http_finish(r, error, type, msg);
    }
    free(type);
    free(msg);
}

/* Hands each stream what it received, in order of arrival. A callback may
 * cancel or pause any request, this one included. */
static void http_deliver(aws_http_t *h)
{
    aws_http_req_t *r;
    while ((r = h->ready) != NULL) {
        h->ready = r->ready_next;
        if (!h->ready) h->ready_tail = NULL;
        r->in_ready = 0;
        r->ready_next = NULL;
        buf_t piece = r->resp; /* taken out: r may be freed by the callback */
        buf_init(&r->resp, h->max_response);
        h->dispatching++;
        r->on_data(r->data_ud, piece.data ? piece.data : "", piece.len);
        h->dispatching--;
        buf_free(&piece);
    }
}

static void http_check_done(aws_http_t *h)
{
    CURLMsg *m;
    int left;
    http_deliver(h); /* a stream's last bytes before its end */
    while ((m = curl_multi_info_read(h->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE) continue;
        CURL *e = m->easy_handle;
        CURLcode rc = m->data.result; /* m is invalid after remove_handle */
        aws_http_req_t *r = NULL;
        (void)curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&r);
        (void)curl_multi_remove_handle(h->multi, e);
        r->in_multi = 0;
        http_attempt_done(r, rc);
    }
}

/* ---- requests ------------------------------------------------------------ */

static aws_http_req_t *http_req_new(aws_http_t *h, const aws_http_request_t *q, aws_http_done_cb cb,
                                    void *ud)
{
    aws_http_req_t *r = xcalloc(1, sizeof *r); /* freed by http_req_free after the callback */
    r->h = h;
    r->method = xstrdup(q->method);
    r->url = xstrdup(q->url);
    if (q->body) {
        r->body = xmalloc(q->body_len + 1);
        memcpy(r->body, q->body, q->body_len);
        r->body[q->body_len] = '\0';
        r->body_len = q->body_len;
    }
    size_t n = 0;
    while (q->headers && q->headers[n]) n++;
    r->headers = xcalloc(n + 1, sizeof *r->headers);
    for (size_t i = 0; i < n; i++) r->headers[i] = xstrdup(q->headers[i]);
    r->timeout_ms = q->timeout_ms > 0 ? q->timeout_ms : 30000;
    r->retry = q->retry;
    r->max_retries = q->max_retries;
    r->cb = cb;
    r->ud = ud;
    buf_init(&r->resp, h->max_response);
    ev_init(&r->wake, http_wake_cb);
    r->wake.data = r;
    r->prepare = q->prepare;
    r->prepare_ud = q->prepare_ud;
    r->http_version = q->http_version;
    r->on_data = q->on_data;
    r->data_ud = q->data_ud;
    r->idle_ms = q->on_data && q->idle_timeout_ms > 0 ? q->idle_timeout_ms : 0;
    ev_init(&r->idle, http_idle_cb);
    r->idle.repeat = (double)r->idle_ms / 1000.0;
    r->idle.data = r;
    ev_init(&r->kick, http_kick_cb);
    r->kick.data = r;
    r->label = xstrdup(q->label);
    r->next = h->reqs;
    if (h->reqs) h->reqs->prev = r;
    h->reqs = r;
    return r;
}

static int http_url_ok(const char *url)
{
    return url && (!strncasecmp(url, "http://", 7) || !strncasecmp(url, "https://", 8));
}

/* The first attempt starts on the next loop turn, so the callback never runs
 * inside aws_http_send. */
static aws_http_req_t *http_start(aws_http_req_t *r)
{
    if (http_easy_setup(r) != 0) {
        http_req_free(r);
        return NULL;
    }
    ev_timer_set(&r->wake, 0., 0.);
    ev_timer_start(r->h->loop, &r->wake);
    return r;
}

aws_http_req_t *aws_http_send(aws_http_t *h, const aws_http_request_t *req, aws_http_done_cb cb,
                              void *ud)
{
    if (!h || h->closing || !req || !req->method || !*req->method || !http_url_ok(req->url) || !cb)
        return NULL;
    if (req->on_data && req->retry) return NULL; /* a stream is never retried (see http.h) */
    return http_start(http_req_new(h, req, cb, ud));
}

void aws_http_cancel(aws_http_t *h, aws_http_req_t *r)
{
    if (h && r) http_req_free(r);
}

/* ---- streams ------------------------------------------------------------- */

static void http_idle_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    aws_http_req_t *r = w->data;
    char msg[96];
    (void)loop;
    (void)revents;
    if (r->in_multi) (void)curl_multi_remove_handle(r->h->multi, r->easy);
    r->in_multi = 0;
    snprintf(msg, sizeof msg, "the stream sent nothing for %ld ms", r->idle_ms);
    http_finish(r, AWS_HTTP_ETIMEOUT, NULL, msg);
}

static void http_kick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    aws_http_req_t *r = w->data;
    aws_http_t *h = r->h;
    (void)loop;
    (void)revents;
    if (r->paused) return; /* paused again meanwhile */
    if (r->idle_ms && r->in_multi) ev_timer_again(h->loop, &r->idle);
    /* may hand what curl held back to the write callback at once: queued, delivered below */
    if (r->in_multi) (void)curl_easy_pause(r->easy, CURLPAUSE_CONT);
    http_check_done(h);
}

const char *aws_http_version_used(aws_http_req_t *r)
{
    long v = 0;
    if (!r || !r->easy || curl_easy_getinfo(r->easy, CURLINFO_HTTP_VERSION, &v) != CURLE_OK) return "unknown";
    return v == CURL_HTTP_VERSION_2_0 ? "HTTP/2" : v == CURL_HTTP_VERSION_1_1 ? "HTTP/1.1"
           : v == CURL_HTTP_VERSION_1_0 ? "HTTP/1.0" : "unknown";
}

void aws_http_pause(aws_http_req_t *r, int paused)
{
    if (!r || !r->on_data || !paused == !r->paused) return;
    aws_http_t *h = r->h;
    r->paused = !!paused;
    if (r->paused) {
        ev_timer_stop(h->loop, &r->idle);
        ev_timer_stop(h->loop, &r->kick);
        if (r->in_multi) (void)curl_easy_pause(r->easy, CURLPAUSE_RECV);
    } else {
        ev_timer_set(&r->kick, 0., 0.);
        ev_timer_start(h->loop, &r->kick);
    }
}
