#include "base64.h"

#include <pthread.h>
#include <string.h>

static const char base64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Decoding table: 0..63 for a letter, 0x80 for anything else, so one OR
 * over a group's four entries tells whether all are letters. */
static uint8_t base64_dec[256];
static pthread_once_t base64_dec_once = PTHREAD_ONCE_INIT;

static void base64_dec_init(void)
{
    memset(base64_dec, 0x80, sizeof base64_dec);
    for (int i = 0; i < 64; i++) base64_dec[(unsigned char)base64_alphabet[i]] = (uint8_t)i;
}

long base64_decode(const char *in, size_t len, uint8_t *out)
{
    if (len % 4) return -1;
    if (len == 0) return 0;
    pthread_once(&base64_dec_once, base64_dec_init);
    const unsigned char *g = (const unsigned char *)in;
    size_t o = 0;
    /* every group but the last: four letters, three bytes (the hot loop) */
    for (size_t i = 0; i + 4 < len; i += 4, g += 4) {
        uint32_t a = base64_dec[g[0]], b = base64_dec[g[1]], c = base64_dec[g[2]], d = base64_dec[g[3]];
        if ((a | b | c | d) & 0x80) return -1;
        uint32_t v = a << 18 | b << 12 | c << 6 | d;
        out[o] = (uint8_t)(v >> 16);
        out[o + 1] = (uint8_t)(v >> 8);
        out[o + 2] = (uint8_t)v;
        o += 3;
    }
    /* the last group may end with padding */
    int pad = g[3] == '=' ? (g[2] == '=' ? 2 : 1) : 0;
    uint32_t v = 0, bad = 0;
    for (int k = 0; k < 4 - pad; k++) {
        bad |= base64_dec[g[k]];
        v |= (uint32_t)(base64_dec[g[k]] & 0x3f) << (18 - 6 * k);
    }
    if (bad & 0x80) return -1;
    /* canonical: the bits a padded group drops must be zero */
    if ((pad == 1 && (v & 0xff)) || (pad == 2 && (v & 0xffff))) return -1;
    out[o++] = (uint8_t)(v >> 16);
    if (pad < 2) out[o++] = (uint8_t)(v >> 8);
    if (pad < 1) out[o++] = (uint8_t)v;
    return (long)o;
}

int base64_encode(buf_t *out, const void *data, size_t len)
{
    const uint8_t *p = data;
    size_t need = (len + 2) / 3 * 4;
    if (buf_reserve(out, need)) return -1;
    char *dst = out->data + out->len;
    size_t o = 0, i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        dst[o++] = base64_alphabet[v >> 18];
        dst[o++] = base64_alphabet[(v >> 12) & 63];
        dst[o++] = base64_alphabet[(v >> 6) & 63];
        dst[o++] = base64_alphabet[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < len ? (uint32_t)p[i + 1] << 8 : 0);
        dst[o++] = base64_alphabet[v >> 18];
        dst[o++] = base64_alphabet[(v >> 12) & 63];
        dst[o++] = i + 1 < len ? base64_alphabet[(v >> 6) & 63] : '=';
        dst[o++] = '=';
    }
    out->len += o;
    out->data[out->len] = '\0';
    return 0;
}
