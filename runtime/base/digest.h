/* digest: the hashes shardrun computes, through OpenSSL's EVP: MD5 (partition
 * keys to hash keys, KPL aggregate checks, `put`'s default partition key),
 * SHA-256 (SigV4, script versions) and HMAC-SHA256 (SigV4).
 *
 * Each algorithm is fetched once per process: OpenSSL 3 otherwise looks it up
 * in its provider store on every call, which costs several times the hash of a
 * short input (a partition key, a SigV4 string to sign). Thread-safe. */
#ifndef SHARDRUN_DIGEST_H
#define SHARDRUN_DIGEST_H

#include <stddef.h>

#define DIGEST_MD5_LEN 16
#define DIGEST_SHA256_LEN 32

/* MD5 of data into out. 0, or -1 when this OpenSSL cannot compute MD5 (FIPS
 * mode without the default provider): the caller says what that means. */
int digest_md5(const void *data, size_t len, unsigned char out[DIGEST_MD5_LEN]);

/* SHA-256 and HMAC-SHA256 never fail but for lack of memory, which is fatal
 * (xalloc_oom). */
void digest_sha256(const void *data, size_t len, unsigned char out[DIGEST_SHA256_LEN]);
void digest_hmac_sha256(const void *key, size_t keylen, const void *msg, size_t msglen,
                        unsigned char out[DIGEST_SHA256_LEN]);

/* n bytes as lowercase hex into out[2 * n + 1] (NUL-terminated). */
void digest_hex(const unsigned char *in, size_t n, char *out);

#endif
