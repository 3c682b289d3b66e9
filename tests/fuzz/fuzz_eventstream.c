/* fuzz_eventstream: libFuzzer harness for the event-stream decoder.
 *
 * Each input is decoded twice: as raw stream bytes, and as a list of
 * (headers, payload) pieces wrapped into frames with correct lengths and
 * CRCs (random bytes almost never carry two matching CRC32s, and the header
 * parser would otherwise go unexercised). Each of those is fed in one chunk
 * and again in chunks of sizes drawn from the input, and both runs must
 * agree: same messages (offset, kind, headers, payload), same error.
 * Checks beyond ASan/UBSan: every span lies inside its message's header
 * block, the header walk covers the block exactly, payload and headers add
 * up to the frame, offsets increase, and an error is final.
 *
 * Build and run: `make fuzz` (sources listed in the Makefile). The
 * dictionary holds the protocol header names and type bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "aws/eventstream.h"
#include "base/buf.h"

/* A digest of what a run decoded, to compare two runs. */
typedef struct summary {
    uint32_t digest;
    uint64_t messages;
    eventstream_err_t err;
} summary_t;

static uint32_t mix(uint32_t h, const void *p, size_t n)
{
    return (uint32_t)crc32(h, p, (uInt)n);
}

static int span_in(eventstream_span_t s, const eventstream_message_t *m)
{
    if (s.p == NULL) return s.len == 0;
    const char *lo = (const char *)m->headers, *hi = lo + m->headers_len;
    return s.p >= lo && s.p <= hi && s.len <= (size_t)(hi - s.p);
}

static void check_message(const eventstream_message_t *m, uint64_t *last_offset, summary_t *sum)
{
    if (sum->messages && m->offset <= *last_offset) abort();
    *last_offset = m->offset;
    if ((m->payload == NULL) != (m->payload_len == 0)) abort();
    const eventstream_span_t *spans[] = {&m->message_type, &m->event_type, &m->exception_type,
                                         &m->content_type, &m->error_code, &m->error_message};
    for (size_t i = 0; i < sizeof spans / sizeof spans[0]; i++) {
        if (!span_in(*spans[i], m)) abort();
        sum->digest = mix(sum->digest, spans[i]->p ? spans[i]->p : "", spans[i]->len);
        sum->digest = mix(sum->digest, spans[i]->p ? "+" : "-", 1);
    }
    if (m->message_type.p == NULL && m->kind != EVENTSTREAM_KIND_NONE) abort();
    size_t pos = 0, n = 0;
    eventstream_header_t h;
    while (eventstream_header_next(m, &pos, &h) == 1) {
        eventstream_span_t name = h.name;
        if (!span_in(name, m) || name.len == 0 || h.type > EVENTSTREAM_UUID) abort();
        if (h.bytes != NULL && (h.bytes < m->headers || h.bytes + h.bytes_len > m->headers + m->headers_len)) abort();
        if (h.type == EVENTSTREAM_UUID && h.bytes_len != 16) abort();
        sum->digest = mix(sum->digest, &h.i, sizeof h.i);
        n++;
    }
    if (pos != m->headers_len) abort();
    if (m->headers_len && n == 0) abort();
    sum->digest = mix(sum->digest, &m->offset, sizeof m->offset);
    sum->digest = mix(sum->digest, &m->kind, sizeof m->kind);
    if (m->payload_len) sum->digest = mix(sum->digest, m->payload, m->payload_len);
    sum->messages++;
}

/* Decodes s[0..len) in chunks: whole when sizes is NULL, else chunk k has
 * 1 + sizes[k % nsizes] % 64 bytes. Each chunk is an exact-size copy. */
static void run(const uint8_t *s, size_t len, const uint8_t *sizes, size_t nsizes, size_t max, summary_t *sum)
{
    eventstream_decoder_t d;
    eventstream_init(&d, max);
    memset(sum, 0, sizeof *sum);
    uint64_t last_offset = 0;
    eventstream_message_t m;
    size_t at = 0, k = 0;
    int rc = 0;
    while (at < len && rc >= 0) {
        size_t n = sizes ? 1 + sizes[k++ % nsizes] % 64 : len;
        if (n > len - at) n = len - at;
        uint8_t *chunk = malloc(n);
        if (chunk == NULL) abort();
        memcpy(chunk, s + at, n);
        eventstream_feed(&d, chunk, n);
        while ((rc = eventstream_next(&d, &m)) == 1)
            check_message(&m, &last_offset, sum);
        free(chunk);
        at += n;
    }
    if (rc >= 0) rc = eventstream_finish(&d);
    if (rc < 0) {
        sum->err = eventstream_error(&d);
        if (sum->err == EVENTSTREAM_OK || eventstream_errmsg(&d)[0] == '\0') abort();
        /* Final: more input changes nothing. */
        eventstream_feed(&d, s, len);
        if (eventstream_next(&d, &m) != -1 || eventstream_error(&d) != sum->err) abort();
    }
    eventstream_free(&d);
}

static void both_ways(const uint8_t *s, size_t len, const uint8_t *sizes, size_t nsizes)
{
    summary_t whole, cut;
    /* A small bound at times, so ETOO_LARGE is reached; 1 MiB otherwise (the
     * default 24 MiB would only slow the runs down). */
    size_t max = nsizes && sizes[0] < 16 ? 64 + sizes[0] * 64 : (size_t)1 << 20;
    run(s, len, NULL, 0, max, &whole);
    run(s, len, sizes, nsizes, max, &cut);
    if (whole.digest != cut.digest || whole.messages != cut.messages || whole.err != cut.err) abort();
}

static void put_be32(buf_t *b, uint32_t v)
{
    uint8_t p[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    if (buf_append(b, p, 4) != 0) abort();
}

/* Input as pieces: hlen (1 byte), plen (1 byte), then hlen header bytes and
 * plen payload bytes, each made into a well-framed message. */
static void frame_pieces(buf_t *out, const uint8_t *data, size_t size)
{
    size_t at = 0;
    while (at + 2 <= size) {
        size_t hlen = data[at], plen = data[at + 1];
        at += 2;
        if (hlen > size - at) hlen = size - at;
        if (plen > size - at - hlen) plen = size - at - hlen;
        size_t start = out->len;
        put_be32(out, (uint32_t)(16 + hlen + plen));
        put_be32(out, (uint32_t)hlen);
        put_be32(out, (uint32_t)crc32(0L, (const uint8_t *)out->data + start, 8));
        if (buf_append(out, data + at, hlen + plen) != 0) abort();
        put_be32(out, (uint32_t)crc32(0L, (const uint8_t *)out->data + start, (uInt)(out->len - start)));
        at += hlen + plen;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Chunk sizes come from the input's tail, so the fuzzer steers them too. */
    size_t nsizes = size < 8 ? size : 8;
    const uint8_t *sizes = nsizes ? data + size - nsizes : NULL;
    if (nsizes == 0) {
        static const uint8_t one = 0;
        sizes = &one;
        nsizes = 1;
    }
    both_ways(data, size, sizes, nsizes);

    buf_t framed;
    buf_init(&framed, 0);
    frame_pieces(&framed, data, size);
    if (framed.len) both_ways((const uint8_t *)framed.data, framed.len, sizes, nsizes);
    buf_free(&framed);
    return 0;
}
