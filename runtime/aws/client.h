/* aws_client: what every AWS JSON API caller needs, bundled: an HTTP client
 * on the loop, the credentials chain, the region and the endpoint, plus the
 * error rules shared by the Kinesis source, the DynamoDB lease store and the
 * CLI's stream commands. Embedded in its owner; loop thread only. */
#ifndef SHARDRUN_AWS_CLIENT_H
#define SHARDRUN_AWS_CLIENT_H

#include <stddef.h>

#include "credentials.h"
#include "base/errbuf.h"
#include "http.h"

struct ev_loop;

typedef struct aws_client {
    aws_http_t *http;
    aws_cred_t *cred;
    char *region;
    char *url;            /* endpoint: config's, else https://<service>.<region>.amazonaws.com/ */
    aws_endpoint_t ep;    /* points into the fields above */
} aws_client_t;

/* Sets up `c` for `service` ("kinesis", "dynamodb"). region/endpoint/ca_file
 * come from config and may be NULL (region then comes from the environment or
 * profile); `cred` carries the config's explicit credentials and profile (the
 * first step of the chain), or NULL. Returns 0, or -1 with `err` naming `what`
 * (e.g. "source"). The caller frees with aws_client_free (also after a failure). */
int aws_client_init(aws_client_t *c, struct ev_loop *loop, const char *service, const char *what,
                    const char *region, const char *endpoint, const char *ca_file, const aws_cred_options_t *cred,
                    errbuf_t *err);

/* Cancels every request in flight (their callbacks run with
 * AWS_HTTP_ECANCELLED) and frees everything. Not from inside a callback. */
void aws_client_free(aws_client_t *c);

/* POSTs an AWS JSON API call (target "Kinesis_20131202.GetRecords"); see aws_http_send_json. */
aws_http_req_t *aws_client_call(aws_client_t *c, const char *target, const char *json_version, const char *body,
                                long timeout_ms, aws_http_done_cb cb, void *ud);

/* 1 when the failure is worth retrying later: network, timeout, 5xx, 429,
 * throttling error types. */
int aws_client_transient(const aws_http_response_t *r);

/* "ProvisionedThroughputExceededException: Rate exceeded (HTTP 400, request
 * 1234)" or "connection failed: ..." into out; returns out. No secrets. */
const char *aws_client_describe(const aws_http_response_t *r, char *out, size_t n);

/* 1 when the response's AWS error type is `type`. */
int aws_client_is(const aws_http_response_t *r, const char *type);

#endif
