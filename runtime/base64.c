#include "base64.h"

static const char base64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* 0..63 for a letter, 64 for '=', 255 for anything else. */
static const uint8_t base64_values[256] = {
    ['A'] = 0,  ['B'] = 1,  ['C'] = 2,  ['D'] = 3,  ['E'] = 4,  ['F'] = 5,  ['G'] = 6,  ['H'] = 7,
    ['I'] = 8,  ['J'] = 9,  ['K'] = 10, ['L'] = 11, ['M'] = 12, ['N'] = 13, ['O'] = 14, ['P'] = 15,
    ['Q'] = 16, ['R'] = 17, ['S'] = 18, ['T'] = 19, ['U'] = 20, ['V'] = 21, ['W'] = 22, ['X'] = 23,
    ['Y'] = 24, ['Z'] = 25, ['a'] = 26, ['b'] = 27, ['c'] = 28, ['d'] = 29, ['e'] = 30, ['f'] = 31,
    ['g'] = 32, ['h'] = 33, ['i'] = 34, ['j'] = 35, ['k'] = 36, ['l'] = 37, ['m'] = 38, ['n'] = 39,
    ['o'] = 40, ['p'] = 41, ['q'] = 42, ['r'] = 43, ['s'] = 44, ['t'] = 45, ['u'] = 46, ['v'] = 47,
    ['w'] = 48, ['x'] = 49, ['y'] = 50, ['z'] = 51, ['0'] = 52, ['1'] = 53, ['2'] = 54, ['3'] = 55,
    ['4'] = 56, ['5'] = 57, ['6'] = 58, ['7'] = 59, ['8'] = 60, ['9'] = 61, ['+'] = 62, ['/'] = 63,
    ['='] = 64,
};

/* The table above marks invalid bytes with 0 like 'A'; this tells them apart. */
static int base64_is_letter(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

long base64_decode(const char *in, size_t len, uint8_t *out)
{
    if (len % 4) return -1;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        const unsigned char *g = (const unsigned char *)in + i;
        int last = i + 4 == len;
        int pad = 0;
        if (last && g[3] == '=') pad = g[2] == '=' ? 2 : 1;
        for (int k = 0; k < 4 - pad; k++)
            if (!base64_is_letter(g[k])) return -1;
        uint32_t v = (uint32_t)base64_values[g[0]] << 18 | (uint32_t)base64_values[g[1]] << 12;
        if (pad < 2) v |= (uint32_t)base64_values[g[2]] << 6;
        if (pad < 1) v |= base64_values[g[3]];
        /* canonical: the bits a padded group drops must be zero */
        if ((pad == 1 && (v & 0xff)) || (pad == 2 && (v & 0xffff))) return -1;
        out[o++] = (uint8_t)(v >> 16);
        if (pad < 2) out[o++] = (uint8_t)(v >> 8);
        if (pad < 1) out[o++] = (uint8_t)v;
    }
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
