#include "logjson.h"

#include <stdio.h>
#include <string.h>

/* A bounded writer: once a write does not fit, it stops (ok = 0). */
typedef struct jw {
    char *out;
    size_t cap, len;
    int ok;
} jw_t;

static void jw_raw(jw_t *w, const char *s, size_t n)
{
    if (!w->ok) return;
    if (w->len + n + 1 > w->cap) {
        w->ok = 0;
        return;
    }
    memcpy(w->out + w->len, s, n);
    w->len += n;
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid. */
static size_t logjson_utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    unsigned min;
    unsigned cp;
    if (c < 0x80) return 1;
    if ((c & 0xe0) == 0xc0)
        len = 2, cp = c & 0x1f, min = 0x80;
    else if ((c & 0xf0) == 0xe0)
        len = 3, cp = c & 0x0f, min = 0x800;
    else if ((c & 0xf8) == 0xf0)
        len = 4, cp = c & 0x07, min = 0x10000;
    else
        return 0;
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return len;
}

/* s[0..n) as the inside of a JSON string. */
static void jw_escaped(jw_t *w, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned char c = p[i];
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\', esc[1] = (char)c;
            jw_raw(w, esc, 2);
            i++;
        } else if (c < 0x20) {
            const char *named = c == '\n' ? "\\n" : c == '\t' ? "\\t" : c == '\r' ? "\\r" : NULL;
            if (named)
                jw_raw(w, named, 2);
            else {
                snprintf(esc, sizeof esc, "\\u%04x", c);
                jw_raw(w, esc, 6);
            }
            i++;
        } else {
            size_t len = logjson_utf8_len(p + i, n - i);
            if (len)
                jw_raw(w, s + i, len);
            else
                jw_raw(w, "\\ufffd", 6); /* not UTF-8: the replacement character */
            i += len ? len : 1;
        }
    }
}

static void jw_field(jw_t *w, const char *key, size_t klen, const char *val, size_t vlen)
{
    jw_raw(w, ",\"", 2);
    jw_escaped(w, key, klen);
    jw_raw(w, "\":\"", 3);
    jw_escaped(w, val, vlen);
    jw_raw(w, "\"", 1);
}

/* Unquotes a "..." value at s (log_quote's escapes) into buf; returns the
 * position after the closing quote (or the end). */
static const char *logjson_unquote(const char *s, char *buf, size_t bufsz, size_t *len)
{
    size_t o = 0;
    s++; /* the opening quote */
    while (*s && *s != '"') {
        char c = *s++;
        if (c == '\\' && *s) {
            c = *s++;
            c = c == 'n' ? '\n' : c == 't' ? '\t' : c;
        }
        if (o + 1 < bufsz) buf[o++] = c;
    }
    if (*s == '"') s++;
    *len = o;
    return s;
}

size_t logjson_format(char *out, size_t outsz, const char *ts, const char *level, const char *event, const char *fields)
{
    jw_t w = {out, outsz, 0, 1};
    jw_raw(&w, "{\"ts\":\"", 7);
    jw_escaped(&w, ts, strlen(ts));
    jw_raw(&w, "\",\"level\":\"", 11);
    jw_escaped(&w, level, strlen(level));
    jw_raw(&w, "\",\"event\":\"", 11);
    jw_escaped(&w, event, strlen(event));
    jw_raw(&w, "\"", 1);
    if (!w.ok) { /* cannot happen with outsz >= 64 and our own names; stay valid anyway */
        snprintf(out, outsz, "{}");
        return strlen(out);
    }
    w.cap = outsz - 1; /* the closing brace always fits */
    char msg[1024];
    size_t msglen = 0;
    const char *p = fields ? fields : "";
    while (*p) {
        while (*p == ' ')
            p++;
        if (!*p) break;
        size_t saved = w.len;
        const char *key = p;
        size_t klen = strcspn(p, " =");
        if (p[klen] != '=' || klen == 0) {
            /* not key=value: kept as text */
            size_t n = strcspn(p, " ");
            if (msglen + n + 1 < sizeof msg) {
                if (msglen) msg[msglen++] = ' ';
                memcpy(msg + msglen, p, n);
                msglen += n;
            }
            p += n;
            continue;
        }
        p += klen + 1;
        if (*p == '"') {
            char val[8192];
            size_t vlen;
            p = logjson_unquote(p, val, sizeof val, &vlen);
            jw_field(&w, key, klen, val, vlen);
        } else {
            size_t vlen = strcspn(p, " ");
            jw_field(&w, key, klen, p, vlen);
            p += vlen;
        }
        if (!w.ok) { /* too long: end at the last whole field */
            w.len = saved;
            w.ok = 1;
            jw_field(&w, "truncated", 9, "true", 4);
            if (!w.ok) w.len = saved, w.ok = 1;
            break;
        }
    }
    if (msglen) {
        size_t saved = w.len;
        jw_field(&w, "msg", 3, msg, msglen);
        if (!w.ok) w.len = saved, w.ok = 1;
    }
    w.cap = outsz;
    jw_raw(&w, "}", 1);
    out[w.len] = '\0';
    return w.len;
}
