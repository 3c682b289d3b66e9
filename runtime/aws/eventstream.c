/* eventstream: incremental decoder of application/vnd.amazon.eventstream
 * (see eventstream.h for the format).
 *
 * The prelude is checked as soon as its 12 bytes are in, before anything
 * else of the message is buffered: a corrupt or hostile length is refused
 * without allocating for it. CRC32 is zlib's. */
#include "eventstream.h"

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <zlib.h>

/* After a message larger than this was buffered, its allocation is given
 * back rather than kept for the next one. */
#define PARTIAL_KEEP_CAP (1024 * 1024)

static uint32_t be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static uint16_t be16(const uint8_t *p)
{
    return (uint16_t)(((unsigned)p[0] << 8) | (unsigned)p[1]);
}

static uint64_t be64(const uint8_t *p)
{
    return ((uint64_t)be32(p) << 32) | be32(p + 4);
}

/* Two's complement of an n-bit big-endian value, without implementation-
 * defined conversions. */
static int64_t signed_of(uint64_t v, unsigned bits)
{
    if (bits == 64) return v > (uint64_t)INT64_MAX ? -(int64_t)(~v) - 1 : (int64_t)v;
    uint64_t half = (uint64_t)1 << (bits - 1);
    return v >= half ? (int64_t)v - (int64_t)(half << 1) : (int64_t)v;
}

static uint32_t crc_of(const uint8_t *p, size_t n)
{
    /* Messages are at most 4 GiB (a u32 length), so one uInt-sized call. */
    return (uint32_t)crc32(0L, p, (uInt)n);
}

/* Sets the sticky error; returns -1. */
static int fail(eventstream_decoder_t *d, eventstream_err_t e, uint64_t at, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(eventstream_decoder_t *d, eventstream_err_t e, uint64_t at, const char *fmt, ...)
{
    char what[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    d->err = e;
    snprintf(d->errmsg, sizeof d->errmsg,
             "event stream %s: %s, in the message at stream offset %" PRIu64 " (after %" PRIu64
             " good messages); the stream cannot be read further",
             eventstream_err_name(e), what, at, d->messages);
    return -1;
}

void eventstream_init(eventstream_decoder_t *d, size_t max_message)
{
    memset(d, 0, sizeof *d);
    d->max_message = max_message ? max_message : EVENTSTREAM_MAX_MESSAGE;
    if (d->max_message < EVENTSTREAM_MIN_MESSAGE) d->max_message = EVENTSTREAM_MIN_MESSAGE;
    buf_init(&d->partial, d->max_message);
}

void eventstream_free(eventstream_decoder_t *d)
{
    buf_free(&d->partial);
}

void eventstream_reset(eventstream_decoder_t *d)
{
    buf_reset(&d->partial);
    d->partial_need = 0;
    d->partial_done = 0;
    d->in = NULL;
    d->in_len = d->in_pos = 0;
    d->offset = 0;
    d->messages = 0;
    d->err = EVENTSTREAM_OK;
    d->errmsg[0] = '\0';
}

void eventstream_feed(eventstream_decoder_t *d, const void *data, size_t len)
{
    assert((d->err != EVENTSTREAM_OK || d->in_pos == d->in_len) &&
           "eventstream_feed: drain the previous chunk with eventstream_next first");
    d->in = data;
    d->in_len = len;
    d->in_pos = 0;
}

/* Checks a prelude (12 bytes at p, the message starting at stream offset
 * `at`) and returns the message's total length in *total: 0 or -1. */
static int check_prelude(eventstream_decoder_t *d, const uint8_t *p, uint64_t at, size_t *total)
{
    uint32_t tot = be32(p), hlen = be32(p + 4), crc = be32(p + 8);
    uint32_t want = crc_of(p, 8);
    if (crc != want)
        return fail(d, EVENTSTREAM_EPRELUDE_CRC, at, "prelude CRC32 0x%08" PRIx32 " where its bytes give 0x%08" PRIx32,
                    crc, want);
    if (tot < EVENTSTREAM_MIN_MESSAGE)
        return fail(d, EVENTSTREAM_ELENGTH, at, "total length %" PRIu32 " is below the minimum of 16", tot);
    if (hlen > tot - EVENTSTREAM_MIN_MESSAGE)
        return fail(d, EVENTSTREAM_ELENGTH, at, "headers length %" PRIu32 " does not fit in total length %" PRIu32,
                    hlen, tot);
    if ((uint64_t)tot > (uint64_t)d->max_message)
        return fail(d, EVENTSTREAM_ETOO_LARGE, at, "total length %" PRIu32 " is above this reader's bound of %zu bytes",
                    tot, d->max_message);
    *total = tot;
    return 0;
}

static const char *type_name(unsigned t)
{
    static const char *const names[] = {"bool", "bool",       "byte",   "short",     "integer",
                                        "long", "byte_array", "string", "timestamp", "uuid"};
    return t < sizeof names / sizeof names[0] ? names[t] : "unknown";
}

/* Reads the header at blk[*pos] (block of n bytes). 0 and *pos past it, or
 * -1 with a reason in *why (and *bad_type set for an unknown type). */
static int parse_header(const uint8_t *blk, size_t n, size_t *pos, eventstream_header_t *h, const char **why,
                        int *bad_type)
{
    size_t p = *pos;
    *bad_type = -1;
    size_t name_len = blk[p++];
    if (name_len == 0) {
        *why = "a header with an empty name";
        return -1;
    }
    if (name_len > n - p) {
        *why = "a header name cut off by the end of the header block";
        return -1;
    }
    h->name.p = (const char *)blk + p;
    h->name.len = name_len;
    p += name_len;
    if (p >= n) {
        *why = "a header without its value type";
        return -1;
    }
    unsigned type = blk[p++];
    static const uint8_t fixed[] = {0, 0, 1, 2, 4, 8, 0, 0, 8, 16}; /* value bytes per type */
    if (type > EVENTSTREAM_UUID) {
        *bad_type = (int)type;
        *why = "an unknown header value type";
        return -1;
    }
    h->type = (eventstream_type_t)type;
    h->i = 0;
    h->bytes = NULL;
    h->bytes_len = 0;
    size_t vlen = fixed[type];
    if (type == EVENTSTREAM_BYTE_ARRAY || type == EVENTSTREAM_STRING) {
        if (n - p < 2) {
            *why = "a header value length cut off by the end of the header block";
            return -1;
        }
        vlen = be16(blk + p);
        p += 2;
    }
    if (vlen > n - p) {
        *why = "a header value cut off by the end of the header block";
        return -1;
    }
    const uint8_t *v = blk + p;
    switch (h->type) {
    case EVENTSTREAM_BOOL_TRUE: h->i = 1; break;
    case EVENTSTREAM_BOOL_FALSE: h->i = 0; break;
    case EVENTSTREAM_BYTE: h->i = signed_of(v[0], 8); break;
    case EVENTSTREAM_SHORT: h->i = signed_of(be16(v), 16); break;
    case EVENTSTREAM_INTEGER: h->i = signed_of(be32(v), 32); break;
    case EVENTSTREAM_LONG:
    case EVENTSTREAM_TIMESTAMP: h->i = signed_of(be64(v), 64); break;
    case EVENTSTREAM_BYTE_ARRAY:
    case EVENTSTREAM_STRING:
    case EVENTSTREAM_UUID:
        h->bytes = v;
        h->bytes_len = vlen;
        break;
    }
    *pos = p + vlen;
    return 0;
}

/* The protocol headers a message is classified by: name -> field. */
static eventstream_span_t *protocol_field(eventstream_message_t *m, eventstream_span_t name)
{
    static const struct {
        const char *name;
        size_t off;
    } fields[] = {
        {":message-type", offsetof(eventstream_message_t, message_type)},
        {":event-type", offsetof(eventstream_message_t, event_type)},
        {":exception-type", offsetof(eventstream_message_t, exception_type)},
        {":content-type", offsetof(eventstream_message_t, content_type)},
        {":error-code", offsetof(eventstream_message_t, error_code)},
        {":error-message", offsetof(eventstream_message_t, error_message)},
    };
    if (name.len < 2 || name.p[0] != ':') return NULL;
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (eventstream_span_eq(name, fields[i].name)) return (eventstream_span_t *)(void *)((char *)m + fields[i].off);
    return NULL;
}

/* Decodes one whole message (f, total bytes, prelude already checked). */
static int decode_message(eventstream_decoder_t *d, const uint8_t *f, size_t total, uint64_t at,
                          eventstream_message_t *m)
{
    uint32_t crc = be32(f + total - 4), want = crc_of(f, total - 4);
    if (crc != want)
        return fail(d, EVENTSTREAM_EMESSAGE_CRC, at, "message CRC32 0x%08" PRIx32 " where its bytes give 0x%08" PRIx32,
                    crc, want);
    size_t hlen = be32(f + 4);
    memset(m, 0, sizeof *m);
    m->headers = f + EVENTSTREAM_PRELUDE_LEN;
    m->headers_len = hlen;
    m->payload_len = total - hlen - EVENTSTREAM_MIN_MESSAGE;
    m->payload = m->payload_len ? f + EVENTSTREAM_PRELUDE_LEN + hlen : NULL;
    m->offset = at;

    size_t pos = 0;
    eventstream_header_t h;
    while (pos < hlen) {
        const char *why;
        int bad_type;
        size_t start = pos;
        if (parse_header(m->headers, hlen, &pos, &h, &why, &bad_type) != 0) {
            if (bad_type >= 0)
                return fail(d, EVENTSTREAM_EHEADER_TYPE, at, "header value type %d at header offset %zu (0..9 exist)",
                            bad_type, start);
            return fail(d, EVENTSTREAM_EHEADER, at, "%s at header offset %zu", why, start);
        }
        eventstream_span_t *field = protocol_field(m, h.name);
        if (field == NULL) continue;
        if (h.type != EVENTSTREAM_STRING)
            return fail(d, EVENTSTREAM_EHEADER, at, "header %.*s has type %s where a string is required",
                        (int)h.name.len, h.name.p, type_name(h.type));
        if (field->p != NULL)
            return fail(d, EVENTSTREAM_EHEADER, at, "header %.*s appears twice", (int)h.name.len, h.name.p);
        /* An empty string still counts as present. */
        field->p = h.bytes_len ? (const char *)h.bytes : (const char *)m->headers + pos;
        field->len = h.bytes_len;
    }

    if (m->message_type.p == NULL)
        m->kind = EVENTSTREAM_KIND_NONE;
    else if (eventstream_span_eq(m->message_type, "event"))
        m->kind = EVENTSTREAM_KIND_EVENT;
    else if (eventstream_span_eq(m->message_type, "exception"))
        m->kind = EVENTSTREAM_KIND_EXCEPTION;
    else if (eventstream_span_eq(m->message_type, "error"))
        m->kind = EVENTSTREAM_KIND_ERROR;
    else
        m->kind = EVENTSTREAM_KIND_OTHER;
    d->messages++;
    return 1;
}

/* Moves up to `want` bytes of the current chunk into d->partial: 0, or -1
 * if that would pass the bound (which check_prelude() rules out first). */
static int take(eventstream_decoder_t *d, size_t want)
{
    size_t n = d->in_len - d->in_pos;
    if (n > want) n = want;
    if (n == 0) return 0;
    if (buf_append(&d->partial, d->in + d->in_pos, n) != 0)
        return fail(d, EVENTSTREAM_ETOO_LARGE, d->offset - d->partial.len,
                    "the message outgrew this reader's bound of %zu bytes", d->max_message);
    d->in_pos += n;
    d->offset += n;
    return 0;
}

/* Room for the whole message in d->partial at once (total bytes). */
static int reserve(eventstream_decoder_t *d, size_t total)
{
    if (buf_reserve(&d->partial, total - d->partial.len) != 0)
        return fail(d, EVENTSTREAM_ETOO_LARGE, d->offset - d->partial.len,
                    "the message outgrew this reader's bound of %zu bytes", d->max_message);
    return 0;
}

static void drop_partial(eventstream_decoder_t *d)
{
    if (d->partial.cap > PARTIAL_KEEP_CAP)
        buf_free(&d->partial);
    else
        buf_reset(&d->partial);
    d->partial_need = 0;
    d->partial_done = 0;
}

int eventstream_next(eventstream_decoder_t *d, eventstream_message_t *m)
{
    if (d->err != EVENTSTREAM_OK) return -1;
    if (d->partial_done) drop_partial(d);

    if (d->partial.len == 0) {
        /* Nothing carried over: decode in place when the chunk holds the
         * whole message. */
        size_t avail = d->in_len - d->in_pos;
        if (avail == 0) return 0;
        if (avail >= EVENTSTREAM_PRELUDE_LEN) {
            const uint8_t *f = d->in + d->in_pos;
            size_t total;
            if (check_prelude(d, f, d->offset, &total) != 0) return -1;
            if (avail >= total) {
                uint64_t at = d->offset;
                d->in_pos += total;
                d->offset += total;
                return decode_message(d, f, total, at, m);
            }
            d->partial_need = total;
            if (reserve(d, total) != 0) return -1;
        }
        return take(d, avail);
    }

    /* A message started in an earlier chunk: complete its prelude, then its body. */
    uint64_t at = d->offset - d->partial.len;
    if (d->partial.len < EVENTSTREAM_PRELUDE_LEN) {
        if (take(d, EVENTSTREAM_PRELUDE_LEN - d->partial.len) != 0) return -1;
        if (d->partial.len < EVENTSTREAM_PRELUDE_LEN) return 0;
        size_t total;
        if (check_prelude(d, (const uint8_t *)d->partial.data, at, &total) != 0) return -1;
        d->partial_need = total;
        if (reserve(d, total) != 0) return -1;
    }
    if (take(d, d->partial_need - d->partial.len) != 0) return -1;
    if (d->partial.len < d->partial_need) return 0;
    d->partial_done = 1; /* *m points into it until the next call */
    return decode_message(d, (const uint8_t *)d->partial.data, d->partial_need, at, m);
}

int eventstream_finish(eventstream_decoder_t *d)
{
    if (d->err != EVENTSTREAM_OK) return -1;
    if (d->partial_done) drop_partial(d);
    size_t pending = d->partial.len + (d->in_len - d->in_pos);
    if (pending == 0) return 0;
    return fail(d, EVENTSTREAM_ETRUNCATED, d->offset - d->partial.len, "the stream ended %zu bytes into a message%s",
                pending, d->partial_need ? "" : " (inside its prelude)");
}

eventstream_err_t eventstream_error(const eventstream_decoder_t *d)
{
    return d->err;
}

const char *eventstream_errmsg(const eventstream_decoder_t *d)
{
    return d->errmsg;
}

const char *eventstream_err_name(eventstream_err_t e)
{
    switch (e) {
    case EVENTSTREAM_OK: return "ok";
    case EVENTSTREAM_EPRELUDE_CRC: return "prelude_crc";
    case EVENTSTREAM_EMESSAGE_CRC: return "message_crc";
    case EVENTSTREAM_ELENGTH: return "length";
    case EVENTSTREAM_ETOO_LARGE: return "too_large";
    case EVENTSTREAM_EHEADER: return "header";
    case EVENTSTREAM_EHEADER_TYPE: return "header_type";
    case EVENTSTREAM_ETRUNCATED: return "truncated";
    }
    return "unknown";
}

int eventstream_header_next(const eventstream_message_t *m, size_t *pos, eventstream_header_t *h)
{
    if (*pos >= m->headers_len) return 0;
    const char *why;
    int bad_type;
    /* Checked at decode time; a failure here means m was not from eventstream_next. */
    if (parse_header(m->headers, m->headers_len, pos, h, &why, &bad_type) != 0) {
        *pos = m->headers_len;
        return 0;
    }
    return 1;
}

int eventstream_span_eq(eventstream_span_t span, const char *s)
{
    size_t n = strlen(s);
    return span.p != NULL && span.len == n && memcmp(span.p, s, n) == 0;
}
