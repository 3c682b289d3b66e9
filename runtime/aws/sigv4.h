/* aws_sigv4: AWS Signature Version 4, header signing.
 *
 * Pure functions, no I/O, no global state: the caller supplies the time and
 * the credentials, so every intermediate product can be checked against AWS's
 * published test vectors (tests/unit/test_sigv4.c).
 *
 * The signer adds X-Amz-Date (always), X-Amz-Security-Token (when the
 * credentials carry a token) and X-Amz-Content-Sha256 (when sign_body is set)
 * to the signed headers; the caller must not pass those itself, and must send
 * them (result.add_headers) plus Authorization with the request, unchanged. */
#ifndef SHARDRUN_AWS_SIGV4_H
#define SHARDRUN_AWS_SIGV4_H

#include <stddef.h>
#include <time.h>

#define AWS_SIGV4_HEX_LEN 64        /* a SHA-256 as lowercase hex */
#define AWS_SIGV4_AMZ_DATE_LEN 16   /* "20150830T123600Z" */
#define AWS_SIGV4_MAX_ADD_HEADERS 4 /* date, token, content-sha256, authorization */
#define AWS_SIGV4_KEY_LEN 32        /* a signing key: HMAC-SHA256 output */

typedef struct aws_sigv4_credentials {
    const char *access_key_id;
    const char *secret_access_key;
    const char *session_token; /* NULL or "" = none */
} aws_sigv4_credentials_t;

typedef struct aws_sigv4_header {
    const char *name;  /* any case; compared and signed lower-cased */
    const char *value; /* raw: folded lines ("a\n  b") and runs of blanks are collapsed */
} aws_sigv4_header_t;

typedef struct aws_sigv4_request {
    const char *method;                /* "GET", "POST" */
    const char *path;                  /* as sent on the wire, without the query ("/" if empty) */
    const char *query;                 /* without '?'; NULL or "" = none; %XX escapes decoded then re-encoded */
    const aws_sigv4_header_t *headers; /* must include Host */
    size_t nheaders;
    const void *body; /* NULL = empty */
    size_t body_len;
    const char *region;   /* "us-east-1" */
    const char *service;  /* "kinesis", "dynamodb", "sts" */
    const char *amz_date; /* "YYYYMMDDTHHMMSSZ", see aws_sigv4_amz_date() */
    const aws_sigv4_credentials_t *creds;
    int normalize_path;     /* 1 for every service except S3: drop "." ".." and "//" */
    int sign_body;          /* 1 = add and sign X-Amz-Content-Sha256 */
    int omit_session_token; /* 1 = send the token header but leave it out of the signature */
    /* NULL: derived here from creds. Else aws_sigv4_signing_key() of the same
     * secret, date, region and service: a caller signing many requests derives
     * it once a day rather than four HMACs per request. */
    const unsigned char *signing_key;
} aws_sigv4_request_t;

/* The products of one signing. All strings are owned by the result and freed
 * by aws_sigv4_result_free(). */
typedef struct aws_sigv4_result {
    char *canonical_request;
    char *string_to_sign;
    char *signed_headers;                         /* "host;x-amz-date" */
    char signature[AWS_SIGV4_HEX_LEN + 1];        /* lowercase hex */
    char *authorization;                          /* value of the Authorization header */
    char *add_headers[AWS_SIGV4_MAX_ADD_HEADERS]; /* "Name: value" lines to send, Authorization last */
    size_t nadd_headers;
} aws_sigv4_result_t;

/* Signs `req` into `out` (which need not be initialised). Returns 0, or -1 when
 * a required field is missing or malformed (out is then empty, nothing to free,
 * though freeing it is harmless). */
int aws_sigv4_sign(const aws_sigv4_request_t *req, aws_sigv4_result_t *out);
void aws_sigv4_result_free(aws_sigv4_result_t *res);

/* AWS's kSigning: HMAC-SHA256 chained over "AWS4" + secret, the date of
 * amz_date (its first 8 characters, YYYYMMDD), region, service and
 * "aws4_request". key[AWS_SIGV4_KEY_LEN]; the caller wipes it when done. */
void aws_sigv4_signing_key(const char *secret, const char *amz_date, const char *region, const char *service,
                           unsigned char *key);

/* Formats `t` (UTC seconds) as an X-Amz-Date value into out[AWS_SIGV4_AMZ_DATE_LEN + 1]. */
void aws_sigv4_amz_date(time_t t, char out[AWS_SIGV4_AMZ_DATE_LEN + 1]);

/* SHA-256 of data as lowercase hex into out[AWS_SIGV4_HEX_LEN + 1]. */
void aws_sigv4_sha256_hex(const void *data, size_t len, char out[AWS_SIGV4_HEX_LEN + 1]);

/* Percent-encodes `s` (n bytes) as SigV4 wants: unreserved A-Z a-z 0-9 - _ . ~
 * stay, everything else becomes %XX (uppercase hex); '/' stays when keep_slash
 * is set. Returns a malloc'd string the caller frees. */
char *aws_sigv4_uri_encode(const char *s, size_t n, int keep_slash);

#endif
