/* aws_sigv4: AWS Signature Version 4 header signing (see sigv4.h).
 *
 * The steps follow AWS's description: canonical request -> string to sign ->
 * signing key (HMAC chain over date, region, service) -> signature. */
#include "sigv4.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/buf.h"
#include "base/digest.h"
#include "base/xalloc.h"

#define SIGV4_ALGORITHM "AWS4-HMAC-SHA256"

/* one canonical header: lower-cased name, trimmed value, original position */
typedef struct sigv4_hdr {
    char *name;
    char *value;
    size_t pos;
} sigv4_hdr_t;

/* one query parameter, both halves already in canonical encoding */
typedef struct sigv4_param {
    char *key;
    char *value;
} sigv4_param_t;

void aws_sigv4_sha256_hex(const void *data, size_t len, char out[AWS_SIGV4_HEX_LEN + 1])
{
    unsigned char md[DIGEST_SHA256_LEN];
    digest_sha256(data, len, md);
    digest_hex(md, sizeof md, out);
}

void aws_sigv4_amz_date(time_t t, char out[AWS_SIGV4_AMZ_DATE_LEN + 1])
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, AWS_SIGV4_AMZ_DATE_LEN + 1, "%Y%m%dT%H%M%SZ", &tm);
}

static int sigv4_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_' || c == '.' || c == '~';
}

static void sigv4_encode_into(buf_t *b, const char *s, size_t n, int keep_slash)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        /* buf has no bound here, so appends cannot fail */
        if (sigv4_unreserved(c) || (keep_slash && c == '/'))
            (void)buf_append_char(b, (char)c);
        else
            (void)buf_printf(b, "%%%02X", c);
    }
}

char *aws_sigv4_uri_encode(const char *s, size_t n, int keep_slash)
{
    buf_t b = BUF_INIT;
    sigv4_encode_into(&b, s, n, keep_slash);
    return buf_detach(&b); /* caller frees */
}

static int sigv4_hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes %XX escapes (a malformed escape stays literal) and re-encodes the
 * result canonically, so "%e1%88%b4", "%E1%88%B4" and the raw UTF-8 bytes all
 * sign the same. Returns a malloc'd string. */
static char *sigv4_query_part(const char *s, size_t n)
{
    buf_t raw = BUF_INIT;
    for (size_t i = 0; i < n; i++) {
        int hi, lo;
        if (s[i] == '%' && i + 2 < n && (hi = sigv4_hexval(s[i + 1])) >= 0 &&
            (lo = sigv4_hexval(s[i + 2])) >= 0) {
            (void)buf_append_char(&raw, (char)(hi * 16 + lo));
            i += 2;
        } else {
            (void)buf_append_char(&raw, s[i]);
        }
    }
    char *enc = aws_sigv4_uri_encode(buf_str(&raw), raw.len, 0);
    buf_free(&raw);
    return enc;
}

static int sigv4_param_cmp(const void *a, const void *b)
{
    const sigv4_param_t *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : strcmp(x->value, y->value);
}

/* Appends the canonical query string: parameters sorted by encoded key, then value. */
static void sigv4_canonical_query(buf_t *out, const char *query)
{
    if (!query || !*query) return;
    size_t cap = 1;
    for (const char *p = query; *p; p++) cap += *p == '&';
    sigv4_param_t *params = xcalloc(cap, sizeof *params); /* freed below */
    size_t n = 0;
    for (const char *p = query; *p;) {
        const char *end = strchr(p, '&');
        if (!end) end = p + strlen(p);
        if (end > p) { /* "a&&b" has an empty component: not a parameter */
            const char *eq = memchr(p, '=', (size_t)(end - p));
            const char *kend = eq ? eq : end;
            params[n].key = sigv4_query_part(p, (size_t)(kend - p));
            params[n].value = eq ? sigv4_query_part(eq + 1, (size_t)(end - eq - 1)) : xstrdup("");
            n++;
        }
        p = *end ? end + 1 : end;
    }
    qsort(params, n, sizeof *params, sigv4_param_cmp);
    for (size_t i = 0; i < n; i++) {
        (void)buf_printf(out, "%s%s=%s", i ? "&" : "", params[i].key, params[i].value);
        free(params[i].key);
        free(params[i].value);
    }
    free(params);
}

/* Appends the canonical URI. With `normalize`, "." and empty segments are
 * dropped and ".." removes the previous segment (RFC 3986 style, never above
 * the root); a trailing '/' survives. The result is URI-encoded once: the path
 * given is what goes on the wire, so an already-escaped "%20" becomes "%2520",
 * which is the double encoding AWS expects for every service except S3. */
static void sigv4_canonical_uri(buf_t *out, const char *path, int normalize)
{
    if (!path || !*path) path = "/";
    if (!normalize) {
        sigv4_encode_into(out, path, strlen(path), 1);
        return;
    }
    size_t len = strlen(path);
    const char **seg = xcalloc(len + 1, sizeof *seg); /* segment starts; freed below */
    size_t *seglen = xcalloc(len + 1, sizeof *seglen);
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        size_t j = i;
        while (j < len && path[j] != '/') j++;
        size_t sl = j - i;
        if (sl == 0 || (sl == 1 && path[i] == '.')) {
            /* empty or "." segment: nothing */
        } else if (sl == 2 && path[i] == '.' && path[i + 1] == '.') {
            if (n > 0) n--;
        } else {
            seg[n] = path + i;
            seglen[n++] = sl;
        }
        i = j + 1;
    }
    (void)buf_append_char(out, '/');
    for (size_t k = 0; k < n; k++) {
        if (k) (void)buf_append_char(out, '/');
        sigv4_encode_into(out, seg[k], seglen[k], 0);
    }
    if (n > 0 && path[len - 1] == '/') (void)buf_append_char(out, '/');
    free(seg);
    free(seglen);
}

static int sigv4_is_blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* Trims a header value and collapses every run of blanks (including the line
 * breaks of a folded header) into one space. Returns a malloc'd string. */
static char *sigv4_trim_value(const char *v)
{
    buf_t b = BUF_INIT;
    int pending_space = 0;
    for (const char *p = v ? v : ""; *p; p++) {
        if (sigv4_is_blank(*p)) {
            pending_space = b.len > 0;
            continue;
        }
        if (pending_space) (void)buf_append_char(&b, ' ');
        pending_space = 0;
        (void)buf_append_char(&b, *p);
    }
    return buf_detach(&b);
}

static char *sigv4_lower(const char *s)
{
    char *r = xstrdup(s);
    /* names are trimmed too: "My-Header1 " is the same header */
    size_t n = strlen(r);
    while (n > 0 && sigv4_is_blank(r[n - 1])) r[--n] = '\0';
    for (char *p = r; *p; p++)
        if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
    return r;
}

static int sigv4_hdr_cmp(const void *a, const void *b)
{
    const sigv4_hdr_t *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c) return c;
    /* same name: keep the order of appearance, values are joined in that order */
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static void sigv4_hdr_add(sigv4_hdr_t *h, size_t *n, const char *name, const char *value)
{
    h[*n].name = sigv4_lower(name);
    h[*n].value = sigv4_trim_value(value);
    h[*n].pos = *n;
    (*n)++;
}

/* Appends the canonical headers block and fills `signed_names`. Authorization
 * is never signed (it carries the signature). */
static void sigv4_canonical_headers(buf_t *out, buf_t *signed_names, const aws_sigv4_request_t *req,
                                    const char *payload_hash)
{
    size_t cap = req->nheaders + 3;
    sigv4_hdr_t *h = xcalloc(cap, sizeof *h); /* freed below */
    size_t n = 0;
    for (size_t i = 0; i < req->nheaders; i++) {
        if (!req->headers[i].name || !strcasecmp(req->headers[i].name, "authorization")) continue;
        sigv4_hdr_add(h, &n, req->headers[i].name, req->headers[i].value);
    }
    sigv4_hdr_add(h, &n, "x-amz-date", req->amz_date);
    const char *token = req->creds->session_token;
    if (token && *token && !req->omit_session_token)
        sigv4_hdr_add(h, &n, "x-amz-security-token", token);
    if (req->sign_body) sigv4_hdr_add(h, &n, "x-amz-content-sha256", payload_hash);
    qsort(h, n, sizeof *h, sigv4_hdr_cmp);
    for (size_t i = 0; i < n; i++) {
        int same = i > 0 && !strcmp(h[i].name, h[i - 1].name);
        if (same) {
            (void)buf_printf(out, ",%s", h[i].value);
        } else {
            (void)buf_printf(out, "%s%s:%s", i ? "\n" : "", h[i].name, h[i].value);
            (void)buf_printf(signed_names, "%s%s", signed_names->len ? ";" : "", h[i].name);
        }
    }
    if (n) (void)buf_append_char(out, '\n');
    for (size_t i = 0; i < n; i++) {
        free(h[i].name);
        free(h[i].value);
    }
    free(h);
}

void aws_sigv4_signing_key(const char *secret, const char *amz_date, const char *region, const char *service,
                           unsigned char *key)
{
    buf_t k = BUF_INIT;
    (void)buf_printf(&k, "AWS4%s", secret);
    unsigned char a[AWS_SIGV4_KEY_LEN], b[AWS_SIGV4_KEY_LEN];
    digest_hmac_sha256((const unsigned char *)k.data, k.len, amz_date, 8, a);
    digest_hmac_sha256(a, sizeof a, region, strlen(region), b);
    digest_hmac_sha256(b, sizeof b, service, strlen(service), a);
    digest_hmac_sha256(a, sizeof a, "aws4_request", 12, key);
    /* the secret-derived buffers are wiped, not just freed */
    OPENSSL_cleanse(k.data, k.len);
    OPENSSL_cleanse(a, sizeof a);
    OPENSSL_cleanse(b, sizeof b);
    buf_free(&k);
}

static int sigv4_valid(const aws_sigv4_request_t *req)
{
    if (!req || !req->method || !*req->method || !req->region || !*req->region ||
        !req->service || !*req->service || !req->amz_date || !req->creds ||
        !req->creds->access_key_id || !req->creds->secret_access_key)
        return 0;
    if (strlen(req->amz_date) != AWS_SIGV4_AMZ_DATE_LEN || req->amz_date[8] != 'T') return 0;
    return req->nheaders == 0 || req->headers != NULL;
}

int aws_sigv4_sign(const aws_sigv4_request_t *req, aws_sigv4_result_t *out)
{
    memset(out, 0, sizeof *out);
    if (!sigv4_valid(req)) return -1;

    char payload_hash[AWS_SIGV4_HEX_LEN + 1];
    aws_sigv4_sha256_hex(req->body, req->body ? req->body_len : 0, payload_hash);

    buf_t cr = BUF_INIT, names = BUF_INIT;
    (void)buf_printf(&cr, "%s\n", req->method);
    sigv4_canonical_uri(&cr, req->path, req->normalize_path);
    (void)buf_append_char(&cr, '\n');
    sigv4_canonical_query(&cr, req->query);
    (void)buf_append_char(&cr, '\n');
    sigv4_canonical_headers(&cr, &names, req, payload_hash);
    (void)buf_printf(&cr, "\n%s\n%s", buf_str(&names), payload_hash);
    out->canonical_request = buf_detach(&cr);
    out->signed_headers = buf_detach(&names);

    char cr_hash[AWS_SIGV4_HEX_LEN + 1];
    aws_sigv4_sha256_hex(out->canonical_request, strlen(out->canonical_request), cr_hash);
    buf_t sts = BUF_INIT;
    (void)buf_printf(&sts, SIGV4_ALGORITHM "\n%s\n%.8s/%s/%s/aws4_request\n%s", req->amz_date,
                     req->amz_date, req->region, req->service, cr_hash);
    out->string_to_sign = buf_detach(&sts);

    unsigned char key[AWS_SIGV4_KEY_LEN], sig[DIGEST_SHA256_LEN];
    if (req->signing_key) memcpy(key, req->signing_key, sizeof key);
    else aws_sigv4_signing_key(req->creds->secret_access_key, req->amz_date, req->region, req->service, key);
    digest_hmac_sha256(key, sizeof key, out->string_to_sign, strlen(out->string_to_sign), sig);
    OPENSSL_cleanse(key, sizeof key);
    digest_hex(sig, sizeof sig, out->signature);

    buf_t auth = BUF_INIT;
    (void)buf_printf(&auth,
                     SIGV4_ALGORITHM " Credential=%s/%.8s/%s/%s/aws4_request, SignedHeaders=%s, "
                                     "Signature=%s",
                     req->creds->access_key_id, req->amz_date, req->region, req->service,
                     out->signed_headers, out->signature);
    out->authorization = buf_detach(&auth);

    /* headers the caller must send along with its own */
    buf_t h = BUF_INIT;
    (void)buf_printf(&h, "X-Amz-Date: %s", req->amz_date);
    out->add_headers[out->nadd_headers++] = buf_detach(&h);
    if (req->creds->session_token && *req->creds->session_token) {
        (void)buf_printf(&h, "X-Amz-Security-Token: %s", req->creds->session_token);
        out->add_headers[out->nadd_headers++] = buf_detach(&h);
    }
    if (req->sign_body) {
        (void)buf_printf(&h, "X-Amz-Content-Sha256: %s", payload_hash);
        out->add_headers[out->nadd_headers++] = buf_detach(&h);
    }
    (void)buf_printf(&h, "Authorization: %s", out->authorization);
    out->add_headers[out->nadd_headers++] = buf_detach(&h);
    return 0;
}

void aws_sigv4_result_free(aws_sigv4_result_t *res)
{
    if (!res) return;
    free(res->canonical_request);
    free(res->string_to_sign);
    free(res->signed_headers);
    free(res->authorization);
    for (size_t i = 0; i < res->nadd_headers; i++) {
        /* holds the session token: wipe before free */
        OPENSSL_cleanse(res->add_headers[i], strlen(res->add_headers[i]));
        free(res->add_headers[i]);
    }
    memset(res, 0, sizeof *res);
}
