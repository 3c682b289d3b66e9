#include "client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/xalloc.h"

int aws_client_init(aws_client_t *c, struct ev_loop *loop, const char *service, const char *what,
                    const char *region, const char *endpoint, const char *ca_file, const aws_cred_options_t *cred,
                    errbuf_t *err)
{
    memset(c, 0, sizeof *c);
    c->region = aws_cred_region_resolve(region, cred ? cred->profile : NULL);
    if (!c->region)
        return errbuf_set(err, "%s.region is not set, and neither AWS_REGION, AWS_DEFAULT_REGION nor the profile "
                          "names one: add region = \"us-east-1\" (or yours) to %s", what, what);
    if (endpoint && *endpoint) {
        c->url = xstrdup(endpoint);
    } else {
        size_t n = strlen(service) + strlen(c->region) + 32;
        c->url = xmalloc(n); /* owned by c */
        snprintf(c->url, n, "https://%s.%s.amazonaws.com/", service, c->region);
    }
    aws_http_options_t hopt = {.ca_file = ca_file};
    c->http = aws_http_new(loop, &hopt);
    if (!c->http) return errbuf_set(err, "%s: cannot initialise the HTTP client (libcurl)", what);
    aws_cred_options_t copt = cred ? *cred : (aws_cred_options_t){0};
    copt.region = c->region;
    c->cred = aws_cred_new(loop, c->http, &copt);
    if (!c->cred) return errbuf_set(err, "%s: cannot set up the AWS credentials chain", what);
    c->ep = (aws_endpoint_t){.region = c->region, .service = service, .url = c->url};
    return 0;
}

void aws_client_free(aws_client_t *c)
{
    /* http first: it cancels the credential providers' requests too */
    if (c->http) aws_http_free(c->http);
    if (c->cred) aws_cred_free(c->cred);
    free(c->region);
    free(c->url);
    memset(c, 0, sizeof *c);
}

aws_http_req_t *aws_client_call(aws_client_t *c, const char *target, const char *json_version, const char *body,
                                long timeout_ms, aws_http_done_cb cb, void *ud)
{
    return aws_http_send_json(c->http, &c->ep, c->cred, target, json_version, body, strlen(body), timeout_ms, 1, cb,
                              ud);
}

int aws_client_is(const aws_http_response_t *r, const char *type)
{
    return r->aws_error_type && !strcmp(r->aws_error_type, type);
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
    if (r->error == AWS_HTTP_EHTTP)
        snprintf(out, n, "%s: %s (HTTP %ld%s%s)", r->aws_error_type ? r->aws_error_type : "error",
                 r->message ? r->message : "no message", r->status, r->request_id ? ", request " : "",
                 r->request_id ? r->request_id : "");
    else
        snprintf(out, n, "%s%s%s (after %d attempt%s)", aws_http_strerror(r->error), r->message ? ": " : "",
                 r->message ? r->message : "", r->attempts, r->attempts == 1 ? "" : "s");
    return out;
}
