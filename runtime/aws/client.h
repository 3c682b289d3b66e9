/* aws_client: calls to AWS JSON APIs (Kinesis, DynamoDB), signed.
 *
 * The layer above aws_http and aws_cred: one aws_client_t per loop holds the
 * HTTP client and the credentials chain, shared by every service the process
 * talks to (a worker's Kinesis source and DynamoDB lease store use one chain,
 * so web identity costs one STS call, not one per service). Each service has
 * its own aws_endpoint_t (region, signing name, URL).
 *
 * Every attempt of a call (the first and each retry of aws_http) is signed
 * with SigV4 over the current time and the chain's current credentials; a
 * call made before the first credentials exist waits for them. Also here:
 * the error rules shared by the Kinesis source, the DynamoDB lease store and
 * the CLI's stream commands. Loop thread only. */
#ifndef SHARDRUN_AWS_CLIENT_H
#define SHARDRUN_AWS_CLIENT_H

#include <stddef.h>

#include "base/errbuf.h"
#include "base/metrics.h"
#include "credentials.h"
#include "http.h"

struct ev_loop;

typedef struct aws_client aws_client_t;
typedef struct aws_client_req aws_client_req_t;

/* Where an AWS JSON API call goes. Strings owned (aws_client_endpoint_clear). */
typedef struct aws_endpoint {
    char *region;         /* "us-east-1" */
    const char *service;  /* signing name: "kinesis", "dynamodb" (a constant) */
    char *url;            /* config's endpoint, else https://<service>.<region>.amazonaws.com/ */
    int http_version;     /* AWS_HTTP_VERSION_* of every call to it (0: curl's default) */
} aws_endpoint_t;

/* The HTTP client (http_opt may be NULL: defaults) and the credentials chain
 * (cred_opt: the config's explicit credentials and profile, the first step of
 * the chain, and the region for STS; may be NULL). NULL with err set when
 * libcurl cannot start or opt.ca_file holds no certificate. The caller frees
 * it with aws_client_free, after every call made through it ended or was
 * cancelled. */
aws_client_t *aws_client_new(struct ev_loop *loop, const aws_http_options_t *http_opt,
                             const aws_cred_options_t *cred_opt, errbuf_t *err);

/* Cancels what is still in flight (callbacks run with AWS_HTTP_ECANCELLED),
 * then frees the HTTP client and the chain. Not from inside a callback. */
void aws_client_free(aws_client_t *c);

/* Counts every HTTP attempt of the client in registry (aws_metrics.h);
 * NULL: nothing. Once, before the first call. */
void aws_client_set_metrics(aws_client_t *c, metrics_t *registry);

/* The chain (for its resolution state and errors). */
aws_cred_t *aws_client_cred(aws_client_t *c);

/* Fills `ep` for `service` ("kinesis", "dynamodb"): region from config (may
 * be NULL: then AWS_REGION, AWS_DEFAULT_REGION or the client's profile),
 * endpoint from config (may be NULL: the service's public URL). Returns 0, or
 * -1 with err naming `what` (the config table: "source", "leases"). The
 * caller frees with aws_client_endpoint_clear (also after a failure). */
int aws_client_endpoint(aws_client_t *c, aws_endpoint_t *ep, const char *service, const char *what,
                        const char *region, const char *endpoint, errbuf_t *err);
void aws_client_endpoint_clear(aws_endpoint_t *ep);

/* POSTs an AWS JSON API call (target "Kinesis_20131202.GetRecords", body a
 * JSON text) to `ep`, retrying transient failures (see http.h) and signing
 * each attempt. `cb` runs exactly once, on the loop, never inside this call;
 * everything is copied. Returns a handle for aws_client_cancel until then, or
 * NULL when the arguments are invalid (the callback is not called). */
aws_client_req_t *aws_client_call(aws_client_t *c, const aws_endpoint_t *ep, const char *target,
                                  const char *json_version, const char *body, long timeout_ms, aws_http_done_cb cb,
                                  void *ud);

/* Opens an event stream (SubscribeToShard): the same signed POST, never
 * retried (its owner knows where to go on from). A 2xx body goes to on_data
 * piece by piece (see http.h, streams), on the loop; `cb` runs exactly once,
 * at its end: AWS_HTTP_OK when the server ended the body, else the error
 * (an error status's body parsed as for any call). idle_timeout_ms: nothing
 * received for that long (while not paused) ends it with AWS_HTTP_ETIMEOUT.
 * Handle and NULL as for aws_client_call. */
aws_client_req_t *aws_client_stream(aws_client_t *c, const aws_endpoint_t *ep, const char *target,
                                    const char *json_version, const char *body, long idle_timeout_ms,
                                    void (*on_data)(void *ud, const char *p, size_t n), aws_http_done_cb cb, void *ud);

/* Pauses (1) or resumes (0) a stream's receiving (aws_http_pause). */
void aws_client_pause(aws_client_req_t *r, int paused);
/* The HTTP version a call or stream uses (aws_http_version_used). */
const char *aws_client_http_version(aws_client_req_t *r);

/* Abandons a call (in flight or waiting for credentials): its callback will
 * not run. */
void aws_client_cancel(aws_client_t *c, aws_client_req_t *r);

/* 1 when the failure is worth retrying later: network, timeout, 5xx, 429,
 * throttling error types. */
int aws_client_transient(const aws_http_response_t *r);

/* "ProvisionedThroughputExceededException: Rate exceeded (HTTP 400, request
 * 1234)" or "connection failed: ..." into out; returns out. No secrets. */
const char *aws_client_describe(const aws_http_response_t *r, char *out, size_t n);

/* 1 when the endpoint answered as something else than the service asked
 * (HTTP 404, UnknownOperationException): a wrong endpoint, not a failure of
 * the call. */
int aws_client_foreign(const aws_http_response_t *r);

/* 1 when the response's AWS error type is `type`. */
int aws_client_is(const aws_http_response_t *r, const char *type);

#endif
