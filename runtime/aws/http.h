/* aws_http: asynchronous HTTP client on a libev loop (curl multi, socket API):
 * transport and retries only.
 *
 * One aws_http_t per loop: one curl multi handle, so connections are kept
 * alive and reused across requests. Everything runs on the loop thread; no
 * function here blocks. TLS peer and host verification are always on
 * (opt.ca_file only adds a CA bundle); proxies come from the usual environment
 * variables (curl's default). Header values are never logged.
 *
 * Retries (request.retry): 5xx, HTTP 429, the throttling error types
 * (ThrottlingException, ProvisionedThroughputExceededException, ...),
 * connection failures and timeouts are retried up to opt.max_retries times,
 * with jittered exponential backoff. Other errors reach the caller at once.
 * What must change from one attempt to the next (a SigV4 signature over the
 * current time and credentials) is added by the request's `prepare` hook,
 * which the layer above (aws_client) provides: this module knows neither
 * credentials nor signing.
 *
 * Streams (request.on_data set: SubscribeToShard's event stream): a 2xx
 * body goes to on_data piece by piece as it arrives instead of being
 * collected; any other status is collected and ends in the done callback as
 * usual. A stream is never retried (a blind retry would start again from the
 * request's first position: its owner decides where to go on), has no
 * whole-request timeout but an idle watchdog, and can be paused: curl then
 * stops receiving it (HTTP/2 closes the stream's flow-control window,
 * HTTP/1.1 stops reading the socket), so the sender is held back.
 *
 * HTTP versions (request.http_version): by default curl's (HTTP/2 over TLS
 * when the server offers it by ALPN, HTTP/1.1 for http://). HTTP/2 on an
 * http:// URL is h2c with prior knowledge, never the Upgrade (which
 * emulators answer badly). HTTP/2 requests to one host share one connection
 * (multiplexed) as far as the server's stream limit allows; except h2c with
 * libcurl before 8.0, whose reuse of such a connection fails (curl#10634):
 * there each request has a connection of its own. */
#ifndef SHARDRUN_AWS_HTTP_H
#define SHARDRUN_AWS_HTTP_H

#include <stddef.h>

struct ev_loop;

typedef struct aws_http aws_http_t;
typedef struct aws_http_req aws_http_req_t;

/* Typed errors (response.error); 0 = a 2xx response. */
enum {
    AWS_HTTP_OK = 0,
    AWS_HTTP_EINVAL,       /* bad request arguments */
    AWS_HTTP_ECONNECT,     /* resolve/connect failed, connection reset, empty reply */
    AWS_HTTP_ETIMEOUT,     /* connect or whole-request timeout */
    AWS_HTTP_ETLS,         /* TLS handshake or certificate verification failed */
    AWS_HTTP_ECANCELLED,   /* aws_http_free() while in flight */
    AWS_HTTP_EHTTP,        /* the server answered with a non-2xx status */
    AWS_HTTP_ECREDENTIALS, /* no credentials could be obtained (a prepare hook's verdict) */
    AWS_HTTP_ETOOLARGE,    /* response body above opt.max_response_bytes */
    AWS_HTTP_EINTERNAL     /* any other curl failure */
};

typedef struct aws_http_options {
    const char *ca_file;       /* extra CA bundle (PEM) or NULL; copied */
    long connect_timeout_ms;   /* 0 = 5000 */
    int max_retries;           /* retries after the first attempt; < 0 = 0, 0 = default 3 */
    long retry_base_ms;        /* 0 = 100: first backoff is in [base/2, base] */
    long retry_max_ms;         /* 0 = 20000: cap of one backoff */
    size_t max_response_bytes; /* 0 = 32 MiB */
} aws_http_options_t;

/* request.http_version */
enum {
    AWS_HTTP_VERSION_DEFAULT = 0, /* curl's: HTTP/2 by ALPN over TLS, else HTTP/1.1 */
    AWS_HTTP_VERSION_1_1,         /* HTTP/1.1 only */
    AWS_HTTP_VERSION_2,           /* https: HTTP/2 by ALPN (HTTP/1.1 if not offered); http: h2c, prior knowledge */
};

typedef struct aws_http_request {
    const char *method;          /* "GET", "POST", "PUT" */
    const char *url;             /* http:// or https:// */
    const char *const *headers;  /* "Name: value" lines, NULL-terminated, or NULL */
    const char *body;            /* may be NULL */
    size_t body_len;
    long timeout_ms;             /* per attempt; 0 = 30000 */
    int retry;                   /* 1 = retry transient failures (see top) */
    int max_retries;             /* 0 = the client's option, < 0 = none */
    /* Runs before each attempt, the first and every retry (NULL: none), on the
     * loop: adds that attempt's headers with aws_http_attempt_header. Returns 0
     * to send, AWS_HTTP_HOLD to wait (whoever holds it then calls
     * aws_http_resume exactly once), or an AWS_HTTP_E* error to end the
     * request with *why (valid until the hook returns) as its message. */
    int (*prepare)(void *prepare_ud, aws_http_req_t *r, const char **why);
    void *prepare_ud;
    int http_version;            /* AWS_HTTP_VERSION_* */
    /* A stream (see top) when set: a 2xx body's pieces, in order, on the loop
     * and never inside curl, so it may pause, resume or cancel any request.
     * retry must be 0; timeout_ms is ignored. */
    void (*on_data)(void *data_ud, const char *p, size_t n);
    void *data_ud;
    long idle_timeout_ms;        /* stream: no byte for this long while not paused ends it
                                    with AWS_HTTP_ETIMEOUT; 0 = no watchdog */
    const char *label;           /* what the observer calls it: the API ("GetRecords"); NULL: "other" */
} aws_http_request_t;

#define AWS_HTTP_HOLD (-1)

/* Valid only during the callback: copy what you keep. */
typedef struct aws_http_response {
    int error;                  /* AWS_HTTP_* */
    long status;                /* HTTP status, 0 when none was received */
    const char *body;           /* NUL-terminated too; "" when empty */
    size_t body_len;
    const char *aws_error_type; /* "ProvisionedThroughputExceededException" (x-amzn-ErrorType,
                                   JSON __type or XML <Code>, "prefix#" removed), NULL if none */
    const char *message;        /* AWS error message or curl's description, NULL if none */
    const char *request_id;     /* x-amzn-RequestId, NULL if none */
    int attempts;               /* attempts made, >= 1 unless rejected before sending */
} aws_http_response_t;

typedef void (*aws_http_done_cb)(void *ud, const aws_http_response_t *resp);

/* Creates a client on `loop` (opt may be NULL for defaults). The caller frees
 * it with aws_http_free(). Returns NULL if curl cannot be initialised. */
aws_http_t *aws_http_new(struct ev_loop *loop, const aws_http_options_t *opt);

/* Cancels every request in flight, held or waiting (each callback runs once
 * with AWS_HTTP_ECANCELLED) and frees the client. Must not be called from
 * inside one of its callbacks. When credentials providers use this client,
 * free it first, then the providers (aws_cred_free). */
void aws_http_free(aws_http_t *h);

/* Starts a request; everything in `req` is copied. `cb` runs exactly once, on
 * the loop, never from inside this call. Returns a handle usable with
 * aws_http_cancel() until the callback runs, or NULL when the arguments are
 * invalid (then the callback is not called). */
aws_http_req_t *aws_http_send(aws_http_t *h, const aws_http_request_t *req, aws_http_done_cb cb,
                              void *ud);

/* Abandons a request: its callback will not be called. */
void aws_http_cancel(aws_http_t *h, aws_http_req_t *r);

/* A stream stops receiving (paused = 1): what curl already received is
 * still handed over, nothing more is read until it is resumed (paused = 0;
 * the transfer goes on at a later loop turn). The idle watchdog does not run
 * while paused. No effect on a request that is not a stream. */
void aws_http_pause(aws_http_req_t *r, int paused);

/* The HTTP version the transfer uses ("HTTP/2", "HTTP/1.1"), once its
 * response began; "unknown" before. */
const char *aws_http_version_used(aws_http_req_t *r);

/* For a prepare hook: adds a "Name: value" header line to the attempt
 * being prepared (copied; dropped again before the next attempt). */
void aws_http_attempt_header(aws_http_req_t *r, const char *line);

/* One attempt that reached an answer or a transport error, for an observer
 * (metrics): valid during the call. */
typedef struct aws_http_attempt {
    const char *label;          /* the request's label, or NULL */
    int error;                  /* AWS_HTTP_* of this attempt */
    long status;                /* HTTP status, 0 when none */
    int throttled;              /* HTTP 429 or a throttling error type */
    double seconds;             /* the attempt's transfer time (libcurl's) */
} aws_http_attempt_t;

typedef void (*aws_http_observe_fn)(void *ud, const aws_http_attempt_t *a);

/* Calls fn after every attempt, on the loop (NULL: none). */
void aws_http_set_observer(aws_http_t *h, aws_http_observe_fn fn, void *ud);

/* The request's body (as sent by every attempt) and its length. */
const char *aws_http_body(const aws_http_req_t *r, size_t *len);

/* Ends an AWS_HTTP_HOLD: error 0 runs the attempt (the prepare hook is asked
 * again), else the request ends with `error` and `why`. Never from inside the
 * prepare hook itself. During aws_http_free the request ends cancelled. */
void aws_http_resume(aws_http_req_t *r, int error, const char *why);

/* The backoff before retry number `retry` (1-based), jitter included:
 * uniformly in [d/2, d] with d = min(retry_max_ms, retry_base_ms * 2^(retry-1)). */
long aws_http_backoff_ms(aws_http_t *h, int retry);

/* A constant description of an AWS_HTTP_* value. */
const char *aws_http_strerror(int error);

/* 1 when `error_type` is one of AWS's throttling error types. */
int aws_http_is_throttle(const char *error_type);

#endif
