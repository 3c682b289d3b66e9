#include "jscan.h"

#include <stdlib.h>
#include <string.h>

#include "base/xalloc.h"

#define JSCAN_MAX_DEPTH 64

void jscan_init(jscan_t *s, const char *text, size_t len)
{
    s->p = s->start = text;
    s->end = text + len;
    s->scratch = NULL;
    s->scratch_len = 0;
    s->depth = 0;
}

static void jscan_ws(jscan_t *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t')) s->p++;
}

jscan_type_t jscan_peek(jscan_t *s)
{
    jscan_ws(s);
    if (s->p >= s->end) return JS_BAD;
    switch (*s->p) {
    case '{': return JS_OBJECT;
    case '[': return JS_ARRAY;
    case '"': return JS_STRING;
    case 't': return JS_TRUE;
    case 'f': return JS_FALSE;
    case 'n': return JS_NULL;
    default: return (*s->p == '-' || (*s->p >= '0' && *s->p <= '9')) ? JS_NUMBER : JS_BAD;
    }
}

int jscan_expect(jscan_t *s, char c)
{
    return jscan_accept(s, c) ? 0 : -1;
}

int jscan_accept(jscan_t *s, char c)
{
    jscan_ws(s);
    if (s->p < s->end && *s->p == c) {
        s->p++;
        return 1;
    }
    return 0;
}

static int jscan_hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

static size_t jscan_utf8(unsigned cp, char *o)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* The slow path: a string with escapes, unescaped into the scratch area.
 * Output never outgrows input (\uXXXX is 6 bytes for at most 3, a surrogate
 * pair 12 for 4), so scratch sized like the input always has room. */
static int jscan_unescape(jscan_t *s, const char *start, const char **out, size_t *len)
{
    if (!s->scratch) s->scratch = xmalloc((size_t)(s->end - s->start) + 1); /* freed by the caller */
    char *o = s->scratch + s->scratch_len, *first = o;
    const char *p = start;
    while (p < s->end && *p != '"') {
        if ((unsigned char)*p < 0x20) return -1;
        if (*p != '\\') {
            *o++ = *p++;
            continue;
        }
        if (++p >= s->end) return -1;
        char c = *p++;
        switch (c) {
        case '"': case '\\': case '/': *o++ = c; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            unsigned cp, lo;
            if (s->end - p < 4 || jscan_hex4(p, &cp)) return -1;
            p += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (s->end - p < 6 || p[0] != '\\' || p[1] != 'u' || jscan_hex4(p + 2, &lo) || lo < 0xDC00 ||
                    lo > 0xDFFF)
                    return -1;
                p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                return -1;
            }
            o += jscan_utf8(cp, o);
            break;
        }
        default: return -1;
        }
    }
    if (p >= s->end) return -1;
    s->p = p + 1;
    *out = first;
    *len = (size_t)(o - first);
    s->scratch_len += *len;
    return 0;
}

int jscan_string(jscan_t *s, const char **out, size_t *len)
{
    if (jscan_peek(s) != JS_STRING) return -1;
    const char *start = ++s->p;
    /* the fast path: no escapes, a span of the input (memchr is vectorised;
     * raw control characters, which strict JSON forbids, are let through) */
    const char *quote = memchr(start, '"', (size_t)(s->end - start));
    if (!quote) return -1;
    if (!memchr(start, '\\', (size_t)(quote - start))) {
        *out = start;
        *len = (size_t)(quote - start);
        s->p = quote + 1;
        return 0;
    }
    return jscan_unescape(s, start, out, len);
}

int jscan_number_span(jscan_t *s, const char **out, size_t *len)
{
    if (jscan_peek(s) != JS_NUMBER) return -1;
    const char *p = s->p;
    while (p < s->end && ((*p >= '0' && *p <= '9') || *p == '-' || *p == '+' || *p == '.' || *p == 'e' || *p == 'E'))
        p++;
    *out = s->p;
    *len = (size_t)(p - s->p);
    s->p = p;
    return 0;
}

int jscan_number(jscan_t *s, double *out)
{
    if (jscan_peek(s) != JS_NUMBER) return -1;
    const char *p = s->p;
    char tmp[64];
    size_t n = 0;
    while (p < s->end && n < sizeof tmp - 1 &&
           ((*p >= '0' && *p <= '9') || *p == '-' || *p == '+' || *p == '.' || *p == 'e' || *p == 'E'))
        tmp[n++] = *p++;
    if (n == 0 || n == sizeof tmp - 1) return -1;
    tmp[n] = '\0';
    char *end = NULL;
    *out = strtod(tmp, &end);
    if (!end || *end) return -1;
    s->p = p;
    return 0;
}

static int jscan_literal(jscan_t *s, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n)) return -1;
    s->p += n;
    return 0;
}

int jscan_skip(jscan_t *s)
{
    const char *ignored;
    size_t len;
    double d;
    switch (jscan_peek(s)) {
    case JS_STRING: return jscan_string(s, &ignored, &len);
    case JS_NUMBER: return jscan_number(s, &d);
    case JS_TRUE: return jscan_literal(s, "true");
    case JS_FALSE: return jscan_literal(s, "false");
    case JS_NULL: return jscan_literal(s, "null");
    case JS_OBJECT:
    case JS_ARRAY: {
        int obj = *s->p == '{';
        if (++s->depth > JSCAN_MAX_DEPTH) return -1;
        s->p++;
        if (jscan_accept(s, obj ? '}' : ']')) {
            s->depth--;
            return 0;
        }
        do {
            if (obj && (jscan_string(s, &ignored, &len) || jscan_expect(s, ':'))) return -1;
            if (jscan_skip(s)) return -1;
        } while (jscan_accept(s, ','));
        s->depth--;
        return jscan_expect(s, obj ? '}' : ']');
    }
    case JS_BAD: return -1;
    }
    return -1;
}

int jscan_at_end(jscan_t *s)
{
    jscan_ws(s);
    return s->p == s->end;
}
