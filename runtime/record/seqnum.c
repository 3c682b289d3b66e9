#include "seqnum.h"

#include <string.h>

#include "base/digest.h"

int seqnum_valid(const char *s)
{
    if (!s || !*s) return 0;
    size_t n = 0;
    for (; s[n]; n++)
        if (s[n] < '0' || s[n] > '9') return 0;
    return n <= SEQNUM_MAX_DIGITS;
}

static const char *seqnum_skip_zeros(const char *s)
{
    while (s[0] == '0' && s[1]) s++;
    return s;
}

int seqnum_cmp(const char *a, const char *b)
{
    a = seqnum_skip_zeros(a);
    b = seqnum_skip_zeros(b);
    size_t la = strlen(a), lb = strlen(b);
    if (la != lb) return la < lb ? -1 : 1;
    int c = strcmp(a, b);
    return (c > 0) - (c < 0);
}

int seqnum_cmp_sub(const char *a, int64_t asub, const char *b, int64_t bsub)
{
    int c = seqnum_cmp(a, b);
    if (c) return c;
    return (asub > bsub) - (asub < bsub);
}

int seqnum_is_sentinel(const char *s)
{
    return s && (!strcmp(s, SEQNUM_TRIM_HORIZON) || !strcmp(s, SEQNUM_LATEST) ||
                 !strcmp(s, SEQNUM_AT_TIMESTAMP) || !strcmp(s, SEQNUM_SHARD_END));
}

hashkey_t hashkey_of(const void *key, size_t len)
{
    unsigned char md[DIGEST_MD5_LEN];
    if (digest_md5(key, len, md)) return 0;
    hashkey_t h = 0;
    for (int i = 0; i < 16; i++) h = (h << 8) | md[i];
    return h;
}

int hashkey_parse(const char *s, hashkey_t *out)
{
    if (!seqnum_valid(s)) return -1;
    hashkey_t h = 0;
    for (; *s; s++) {
        hashkey_t d = (hashkey_t)(*s - '0');
        if (h > (HASHKEY_MAX - d) / 10) return -1;
        h = h * 10 + d;
    }
    *out = h;
    return 0;
}

char *hashkey_format(hashkey_t h, char *out)
{
    char tmp[48];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + (int)(h % 10));
        h /= 10;
    } while (h);
    for (int i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
    out[n] = '\0';
    return out;
}
