/* aws_cred: the AWS credentials chain and region resolution.
 *
 * Above aws_http (the providers that ask a service fetch over it), below
 * aws_client (which signs calls with what the chain holds): one chain per
 * process loop, shared by every AWS service the process calls.
 *
 * Providers, in the AWS SDKs' order; the first one that is *configured* is
 * used (its failure is reported, not skipped over); when none is, the error
 * names each step and why it gave nothing:
 *   1. explicit   access key + secret (+ token) from shardrun's config; or the
 *                 config's profile: then that profile or a failure naming it,
 *                 never another step
 *   2. env        AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY [, AWS_SESSION_TOKEN]
 *   3. web-identity AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN [+ AWS_ROLE_SESSION_NAME]:
 *                 STS AssumeRoleWithWebIdentity (endpoint: AWS_ENDPOINT_URL_STS,
 *                 else https://sts.<region>.amazonaws.com/)
 *   4. profile    ~/.aws/credentials then ~/.aws/config (AWS_SHARED_CREDENTIALS_FILE,
 *                 AWS_CONFIG_FILE), profile AWS_PROFILE or "default"; static keys only
 *   5. ecs        AWS_CONTAINER_CREDENTIALS_RELATIVE_URI (http://169.254.170.2) or
 *                 AWS_CONTAINER_CREDENTIALS_FULL_URI, with AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE
 *                 or AWS_CONTAINER_AUTHORIZATION_TOKEN
 *   6. imds       EC2 instance metadata, IMDSv2 (AWS_EC2_METADATA_SERVICE_ENDPOINT, default
 *                 http://169.254.169.254); skipped when AWS_EC2_METADATA_DISABLED=true
 *
 * Temporary credentials (3, 5, 6) are refreshed on the loop some minutes
 * before they expire; the old ones stay in use until the new ones arrive, and
 * stay in use (with a warning) if refreshing keeps failing. Secrets never
 * appear in logs, messages or aws_cred_describe(). Loop thread only. */
#ifndef SHARDRUN_AWS_CREDENTIALS_H
#define SHARDRUN_AWS_CREDENTIALS_H

#include <stddef.h>

#include "base/errbuf.h"
#include "http.h"
#include "sigv4.h"

struct ev_loop;

typedef struct aws_cred aws_cred_t;

typedef struct aws_cred_options {
    const char *access_key_id;     /* explicit credentials from config, or NULL */
    const char *secret_access_key;
    const char *session_token;
    const char *profile;           /* overrides AWS_PROFILE, or NULL */
    const char *region;            /* config region (used for the STS endpoint), or NULL */
    long refresh_before_s;         /* refresh this long before expiry; 0 = 300 */
    long http_timeout_ms;          /* per request to STS/ECS; 0 = 5000 (IMDS: 1000) */
} aws_cred_options_t;

/* A waiter, embedded in its owner (no allocation): `cb` runs once, on the
 * loop, when the resolution in progress ends; status 0 = credentials now
 * available, -1 = the chain failed (aws_cred_error() says why). */
typedef struct aws_cred_waiter {
    struct aws_cred_waiter *next, *prev; /* owned by aws_cred while waiting */
    void (*cb)(struct aws_cred_waiter *w, int status);
    void *data; /* the owner's */
} aws_cred_waiter_t;

/* Creates the chain; nothing is resolved until aws_cred_wait() or
 * aws_cred_resolve(). Options are copied. `http` must outlive it unless
 * aws_http_free() runs first (it cancels the provider's requests). The caller
 * frees the result with aws_cred_free(). */
aws_cred_t *aws_cred_new(struct ev_loop *loop, aws_http_t *http, const aws_cred_options_t *opt);

/* Stops refreshes, fails pending waiters (status -1), wipes and frees secrets. */
void aws_cred_free(aws_cred_t *c);

/* Starts resolving the chain unless credentials are present or a resolution
 * runs. Returns 1 when credentials are available now, 0 when resolving
 * (asynchronously), -1 when the chain failed synchronously. */
int aws_cred_resolve(aws_cred_t *c);

/* Starts resolving now (aws_cred_resolve), for a process that wants to
 * fail at start rather than at its first call: -1 with err set (the reason,
 * each step of the chain when none is configured) when the chain failed at
 * once; that failure is not logged (the caller reports it). 0 otherwise:
 * credentials are there, or coming. */
int aws_cred_check(aws_cred_t *c, errbuf_t *err);

/* Fills `out` with the current credentials. The strings stay valid until
 * control returns to the loop. Returns 0, or -1 when there are none yet. */
int aws_cred_current(aws_cred_t *c, aws_sigv4_credentials_t *out);

/* Returns 1 (credentials available, w not registered), 0 (w registered; its
 * callback will run, never from inside this call) or -1 (chain failed at once,
 * w not registered). Starts a resolution when needed. */
int aws_cred_wait(aws_cred_t *c, aws_cred_waiter_t *w);
void aws_cred_unwait(aws_cred_t *c, aws_cred_waiter_t *w); /* no-op if not registered */

/* Which provider supplied the credentials, as key=value fields for the
 * aws_credentials_resolved log line: "source=imds role=web-role key=****WXYZ
 * expires=2024-01-01T00:00:00Z" (source: explicit, env, web-identity,
 * profile, ecs, imds; "source=none state=..." before). Never the secret or
 * token. Returns `out`. */
const char *aws_cred_describe(aws_cred_t *c, char *out, size_t n);

/* Why the last resolution failed (no secrets), or NULL. Valid until the next one. */
const char *aws_cred_error(const aws_cred_t *c);

/* Region: config_region, AWS_REGION, AWS_DEFAULT_REGION, then `region` of the
 * profile (AWS_PROFILE or `profile`) in the config file. Returns a malloc'd
 * string the caller frees, or NULL when none is set anywhere. */
char *aws_cred_region_resolve(const char *config_region, const char *profile);

/* 1 when `url` may serve container credentials: https, or http to a loopback
 * address or to the ECS/EKS link-local hosts (the SDKs' rule, so a stray
 * variable cannot send the authorization token elsewhere). */
int aws_cred_container_url_allowed(const char *url);

#endif
