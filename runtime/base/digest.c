#include "digest.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <pthread.h>

#include "xalloc.h"

/* Fetched once, never freed: they live as long as the process. */
static pthread_once_t digest_once = PTHREAD_ONCE_INIT;
static EVP_MD *digest_md5_md;      /* NULL when MD5 is unavailable */
static EVP_MD *digest_sha256_md;
static EVP_MAC_CTX *digest_hmac_template; /* HMAC with SHA-256 set, no key: duplicated per call */

static void digest_init(void)
{
    digest_md5_md = EVP_MD_fetch(NULL, "MD5", NULL);
    digest_sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    EVP_MAC *hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (hmac) {
        digest_hmac_template = EVP_MAC_CTX_new(hmac);
        EVP_MAC_free(hmac); /* the context keeps its own reference */
        char name[] = "SHA256";
        OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, name, 0),
                               OSSL_PARAM_construct_end()};
        if (digest_hmac_template && !EVP_MAC_CTX_set_params(digest_hmac_template, params)) {
            EVP_MAC_CTX_free(digest_hmac_template);
            digest_hmac_template = NULL;
        }
    }
}

int digest_md5(const void *data, size_t len, unsigned char out[DIGEST_MD5_LEN])
{
    unsigned int n = 0;
    pthread_once(&digest_once, digest_init);
    if (!digest_md5_md || !EVP_Digest(data, len, out, &n, digest_md5_md, NULL) || n != DIGEST_MD5_LEN) return -1;
    return 0;
}

void digest_sha256(const void *data, size_t len, unsigned char out[DIGEST_SHA256_LEN])
{
    unsigned int n = 0;
    pthread_once(&digest_once, digest_init);
    /* SHA-256 is in every provider: failing here means OpenSSL could not allocate */
    if (!digest_sha256_md || !EVP_Digest(data ? data : "", len, out, &n, digest_sha256_md, NULL) ||
        n != DIGEST_SHA256_LEN)
        xalloc_oom(len);
}

void digest_hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

void digest_hmac_sha256(const void *key, size_t keylen, const void *msg, size_t msglen,
                        unsigned char out[DIGEST_SHA256_LEN])
{
    pthread_once(&digest_once, digest_init);
    EVP_MAC_CTX *ctx = digest_hmac_template ? EVP_MAC_CTX_dup(digest_hmac_template) : NULL;
    size_t n = 0;
    int ok = ctx && EVP_MAC_init(ctx, key, keylen, NULL) && EVP_MAC_update(ctx, msg, msglen) &&
             EVP_MAC_final(ctx, out, &n, DIGEST_SHA256_LEN) && n == DIGEST_SHA256_LEN;
    EVP_MAC_CTX_free(ctx); /* wipes the key schedule */
    if (!ok) xalloc_oom(msglen);
}
