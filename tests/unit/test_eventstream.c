/* test_eventstream: the application/vnd.amazon.eventstream decoder.
 *
 * Frames are built here with a writer of the test's own (CRC32 from zlib, as
 * the format specifies), so malformed ones can be made on purpose; frames
 * captured from kinesis-mock 0.6.2 (tests/unit/data/eventstream-*.bin, see
 * tests/unit/data/README) check the decoder against a real server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zlib.h>

#include "aws/eventstream.h"
#include "base/buf.h"

/* ---- the test's frame writer ------------------------------------------- */

static void w_raw(buf_t *b, const void *p, size_t n)
{
    assert_int_equal(buf_append(b, p, n), 0);
}

static void w_u8(buf_t *b, unsigned v)
{
    uint8_t c = (uint8_t)v;
    w_raw(b, &c, 1);
}

static void w_be(buf_t *b, uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--)
        w_u8(b, (unsigned)(v >> (8 * i)) & 0xff);
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void h_name(buf_t *h, const char *name, unsigned type)
{
    w_u8(h, (unsigned)strlen(name));
    w_raw(h, name, strlen(name));
    w_u8(h, type);
}

static void h_str(buf_t *h, const char *name, const char *value)
{
    h_name(h, name, EVENTSTREAM_STRING);
    w_be(h, strlen(value), 2);
    w_raw(h, value, strlen(value));
}

/* A whole message: the prelude and both CRCs computed over what is written. */
static void w_message(buf_t *out, const buf_t *headers, const void *payload, size_t payload_len)
{
    size_t start = out->len;
    uint32_t total = (uint32_t)(16 + headers->len + payload_len);
    w_be(out, total, 4);
    w_be(out, headers->len, 4);
    w_be(out, crc32(0L, (const uint8_t *)out->data + start, 8), 4);
    if (headers->len) w_raw(out, headers->data, headers->len);
    if (payload_len) w_raw(out, payload, payload_len);
    w_be(out, crc32(0L, (const uint8_t *)out->data + start, (uInt)(out->len - start)), 4);
}

/* An event as SubscribeToShard sends one. */
static void w_event(buf_t *out, const char *event_type, const char *json)
{
    buf_t h = BUF_INIT;
    h_str(&h, ":message-type", "event");
    h_str(&h, ":event-type", event_type);
    h_str(&h, ":content-type", "application/json");
    w_message(out, &h, json, strlen(json));
    buf_free(&h);
}

/* Recomputes both CRCs of the message at `at` after the test edited it. */
static void fix_crcs(buf_t *b, size_t at)
{
    uint8_t *f = (uint8_t *)b->data + at;
    uint32_t total = ((uint32_t)f[0] << 24) | ((uint32_t)f[1] << 16) | ((uint32_t)f[2] << 8) | f[3];
    put_be32(f + 8, (uint32_t)crc32(0L, f, 8));
    put_be32(f + total - 4, (uint32_t)crc32(0L, f, total - 4));
}

/* ---- decoding helpers ---------------------------------------------------- */

/* What a run of the decoder produced: the messages' event types and payloads
 * joined as "type=payload;" and the error (OK when none). */
typedef struct outcome {
    buf_t text;
    int messages;
    eventstream_err_t err;
} outcome_t;

static void collect(eventstream_decoder_t *d, outcome_t *o)
{
    eventstream_message_t m;
    int rc;
    while ((rc = eventstream_next(d, &m)) == 1) {
        o->messages++;
        const eventstream_span_t *name = m.kind == EVENTSTREAM_KIND_EXCEPTION ? &m.exception_type : &m.event_type;
        w_raw(&o->text, name->p ? name->p : "-", name->p ? name->len : 1);
        w_raw(&o->text, "=", 1);
        if (m.payload_len) w_raw(&o->text, m.payload, m.payload_len);
        w_raw(&o->text, ";", 1);
    }
    if (rc < 0) o->err = eventstream_error(d);
}

/* Feeds `data` in chunks ending at each of cuts[0..ncuts) then at len, each
 * chunk in its own exact-size heap copy (so ASan sees any read past it, and
 * a pointer kept into an old chunk reads freed memory). */
static void decode_cut(const uint8_t *data, size_t len, const size_t *cuts, size_t ncuts, size_t max, outcome_t *o)
{
    eventstream_decoder_t d;
    eventstream_init(&d, max);
    memset(o, 0, sizeof *o);
    buf_init(&o->text, 0);
    size_t from = 0;
    for (size_t i = 0; i <= ncuts && o->err == EVENTSTREAM_OK; i++) {
        size_t to = i < ncuts ? cuts[i] : len;
        size_t n = to - from;
        uint8_t *chunk = malloc(n ? n : 1);
        assert_non_null(chunk);
        if (n) memcpy(chunk, data + from, n);
        eventstream_feed(&d, chunk, n);
        collect(&d, o);
        free(chunk);
        from = to;
    }
    if (o->err == EVENTSTREAM_OK && eventstream_finish(&d) != 0) o->err = eventstream_error(&d);
    eventstream_free(&d);
}

static void decode_whole(const buf_t *b, size_t max, outcome_t *o)
{
    decode_cut((const uint8_t *)b->data, b->len, NULL, 0, max, o);
}

static void outcome_free(outcome_t *o)
{
    buf_free(&o->text);
}

/* Decodes b whole and expects exactly error e (after `good` messages). */
static void expect_error(const buf_t *b, eventstream_err_t e, int good)
{
    outcome_t o;
    decode_whole(b, 0, &o);
    if (o.err != e) fail_msg("expected %s, got %s", eventstream_err_name(e), eventstream_err_name(o.err));
    assert_int_equal(o.messages, good);
    outcome_free(&o);
}

/* Three messages of different shapes: records, an empty event, headers only. */
static void three_messages(buf_t *b)
{
    w_event(b, "SubscribeToShardEvent", "{\"Records\":[{\"Data\":\"aGk=\"}],\"MillisBehindLatest\":0}");
    w_event(b, "SubscribeToShardEvent", "{}");
    buf_t h = BUF_INIT;
    h_str(&h, ":message-type", "event");
    h_str(&h, ":event-type", "initial-response");
    w_message(b, &h, NULL, 0);
    buf_free(&h);
}

static const char THREE_TEXT[] = "SubscribeToShardEvent={\"Records\":[{\"Data\":\"aGk=\"}],\"MillisBehindLatest\":0};"
                                 "SubscribeToShardEvent={};initial-response=;";

/* ---- tests: well-formed streams ----------------------------------------- */

static void test_an_event_yields_its_protocol_headers_and_payload(void **state)
{
    (void)state;
    buf_t b = BUF_INIT;
    w_event(&b, "SubscribeToShardEvent", "{\"Records\":[]}");
    eventstream_decoder_t d;
    eventstream_init(&d, 0);
    eventstream_feed(&d, b.data, b.len);
    eventstream_message_t m;
    assert_int_equal(eventstream_next(&d, &m), 1);
    assert_int_equal(m.kind, EVENTSTREAM_KIND_EVENT);
    assert_true(eventstream_span_eq(m.message_type, "event"));
    assert_true(eventstream_span_eq(m.event_type, "SubscribeToShardEvent"));
    assert_true(eventstream_span_eq(m.content_type, "application/json"));
    assert_null(m.exception_type.p);
    assert_null(m.error_code.p);
    assert_int_equal(m.payload_len, 14);
    assert_memory_equal(m.payload, "{\"Records\":[]}", 14);
    assert_int_equal(m.offset, 0);
    /* Whole in the chunk: decoded in place, no copy. */
    assert_true((const char *)m.payload > b.data && (const char *)m.payload < b.data + b.len);
    assert_int_equal(eventstream_next(&d, &m), 0);
    assert_int_equal(eventstream_finish(&d), 0);
    eventstream_free(&d);
    buf_free(&b);
}

static void test_exception_and_error_messages_are_classified(void **state)
{
    (void)state;
    buf_t b = BUF_INIT, h = BUF_INIT;
    h_str(&h, ":message-type", "exception");
    h_str(&h, ":exception-type", "ResourceInUseException");
    h_str(&h, ":content-type", "application/json");
    w_message(&b, &h, "{\"message\":\"in use\"}", 20);
    buf_reset(&h);
    h_str(&h, ":message-type", "error");
    h_str(&h, ":error-code", "InternalFailure");
    h_str(&h, ":error-message", "try again");
    w_message(&b, &h, NULL, 0);
    buf_reset(&h);
    h_str(&h, ":message-type", "surprise");
    w_message(&b, &h, NULL, 0);
    buf_reset(&h);
    h_str(&h, "custom", "x");
    w_message(&b, &h, "p", 1);
    buf_free(&h);

    eventstream_decoder_t d;
    eventstream_init(&d, 0);
    eventstream_feed(&d, b.data, b.len);
    eventstream_message_t m;
    assert_int_equal(eventstream_next(&d, &m), 1);
    assert_int_equal(m.kind, EVENTSTREAM_KIND_EXCEPTION);
    assert_true(eventstream_span_eq(m.exception_type, "ResourceInUseException"));
    assert_null(m.event_type.p);
    assert_memory_equal(m.payload, "{\"message\":\"in use\"}", 20);
    assert_int_equal(eventstream_next(&d, &m), 1);
    assert_int_equal(m.kind, EVENTSTREAM_KIND_ERROR);
    assert_true(eventstream_span_eq(m.error_code, "InternalFailure"));
    assert_true(eventstream_span_eq(m.error_message, "try again"));
    assert_null(m.payload);
    assert_int_equal(m.payload_len, 0);
    assert_int_equal(eventstream_next(&d, &m), 1);
    assert_int_equal(m.kind, EVENTSTREAM_KIND_OTHER);
    assert_int_equal(eventstream_next(&d, &m), 1);
    assert_int_equal(m.kind, EVENTSTREAM_KIND_NONE);
    assert_null(m.message_type.p);
    assert_int_equal(eventstream_next(&d, &m), 0);
    eventstream_free(&d);
    buf_free(&b);
}

static void test_every_header_value_type_decodes(void **state)
{
    (void)state;
    static const uint8_t uuid[16] = {0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0,
                                     0x0f, 0xed, 0xcb, 0xa9, 0x87, 0x65, 0x43, 0x21};
    buf_t b = BUF_INIT, h = BUF_INIT;
    h_name(&h, "t", EVENTSTREAM_BOOL_TRUE);
    h_name(&h, "f", EVENTSTREAM_BOOL_FALSE);
    h_name(&h, "byte", EVENTSTREAM_BYTE);
    w_u8(&h, 0xfb); /* -5 */
    h_name(&h, "short", EVENTSTREAM_SHORT);
    w_be(&h, 0xfed4, 2); /* -300 */
    h_name(&h, "int", EVENTSTREAM_INTEGER);
    w_be(&h, 0x80000000u, 4); /* INT32_MIN */
    h_name(&h, "long", EVENTSTREAM_LONG);
    w_be(&h, 0xffffffffffffffffull, 8); /* -1 */
    h_name(&h, "maxlong", EVENTSTREAM_LONG);
    w_be(&h, 0x7fffffffffffffffull, 8);
    h_name(&h, "bytes", EVENTSTREAM_BYTE_ARRAY);
    w_be(&h, 3, 2);
    w_raw(&h, "\x00\xff\x01", 3);
    h_name(&h, "nobytes", EVENTSTREAM_BYTE_ARRAY);
    w_be(&h, 0, 2);
    h_str(&h, "str", "h\xc3\xa9");
    h_name(&h, "ts", EVENTSTREAM_TIMESTAMP);
    w_be(&h, 1700000000123ull, 8);
    h_name(&h, "uuid", EVENTSTREAM_UUID);
    w_raw(&h, uuid, 16);
    w_message(&b, &h, "x", 1);
    buf_free(&h);

    eventstream_decoder_t d;
    eventstream_init(&d, 0);
    eventstream_feed(&d, b.data, b.len);
    eventstream_message_t m;
    assert_int_equal(eventstream_next(&d, &m), 1);
    struct {
        const char *name;
        eventstream_type_t type;
        int64_t i;
        const char *bytes;
        size_t bytes_len;
    } want[] = {
        {"t", EVENTSTREAM_BOOL_TRUE, 1, NULL, 0},
        {"f", EVENTSTREAM_BOOL_FALSE, 0, NULL, 0},
        {"byte", EVENTSTREAM_BYTE, -5, NULL, 0},
        {"short", EVENTSTREAM_SHORT, -300, NULL, 0},
        {"int", EVENTSTREAM_INTEGER, INT32_MIN, NULL, 0},
        {"long", EVENTSTREAM_LONG, -1, NULL, 0},
        {"maxlong", EVENTSTREAM_LONG, INT64_MAX, NULL, 0},
        {"bytes", EVENTSTREAM_BYTE_ARRAY, 0, "\x00\xff\x01", 3},
        {"nobytes", EVENTSTREAM_BYTE_ARRAY, 0, "", 0},
        {"str", EVENTSTREAM_STRING, 0, "h\xc3\xa9", 3},
        {"ts", EVENTSTREAM_TIMESTAMP, 1700000000123ll, NULL, 0},
        {"uuid", EVENTSTREAM_UUID, 0, (const char *)uuid, 16},
    };
    size_t pos = 0, n = 0;
    eventstream_header_t hd;
    while (eventstream_header_next(&m, &pos, &hd) == 1) {
        assert_true(n < sizeof want / sizeof want[0]);
        assert_true(eventstream_span_eq(hd.name, want[n].name));
        assert_int_equal(hd.type, want[n].type);
        if (want[n].bytes == NULL) {
            assert_true(hd.i == want[n].i);
            assert_null(hd.bytes);
        } else {
            assert_int_equal(hd.bytes_len, want[n].bytes_len);
            if (hd.bytes_len) assert_memory_equal(hd.bytes, want[n].bytes, hd.bytes_len);
        }
        n++;
    }
    assert_int_equal(n, sizeof want / sizeof want[0]);
    assert_int_equal(m.kind, EVENTSTREAM_KIND_NONE);
    eventstream_free(&d);
    buf_free(&b);
}

static void test_a_message_with_no_headers_and_no_payload_is_sixteen_bytes(void **state)
{
    (void)state;
    buf_t b = BUF_INIT, h = BUF_INIT;
    w_message(&b, &h, NULL, 0);
    assert_int_equal(b.len, EVENTSTREAM_MIN_MESSAGE);
    outcome_t o;
    decode_whole(&b, 0, &o);
    assert_int_equal(o.err, EVENTSTREAM_OK);
    assert_int_equal(o.messages, 1);
    outcome_free(&o);
    buf_free(&b);
}

static void test_a_stream_cut_at_every_byte_yields_the_same_messages(void **state)
{
    (void)state;
    buf_t b = BUF_INIT;
    three_messages(&b);
    outcome_t o;
    /* Two chunks, cut at every position (0 and len: one chunk is empty). */
    for (size_t cut = 0; cut <= b.len; cut++) {
        decode_cut((const uint8_t *)b.data, b.len, &cut, 1, 0, &o);
        assert_int_equal(o.err, EVENTSTREAM_OK);
        assert_int_equal(o.messages, 3);
        assert_string_equal(buf_str(&o.text), THREE_TEXT);
        outcome_free(&o);
    }
    /* Three chunks, every pair of cuts. */
    for (size_t i = 0; i <= b.len; i++)
        for (size_t j = i; j <= b.len; j++) {
            size_t cuts[2] = {i, j};
            decode_cut((const uint8_t *)b.data, b.len, cuts, 2, 0, &o);
            assert_int_equal(o.messages, 3);
            assert_string_equal(buf_str(&o.text), THREE_TEXT);
            outcome_free(&o);
        }
    /* One byte at a time. */
    size_t *cuts = malloc(b.len * sizeof *cuts);
    assert_non_null(cuts);
    for (size_t i = 0; i < b.len; i++)
        cuts[i] = i + 1;
    decode_cut((const uint8_t *)b.data, b.len, cuts, b.len, 0, &o);
    assert_int_equal(o.err, EVENTSTREAM_OK);
    assert_string_equal(buf_str(&o.text), THREE_TEXT);
    outcome_free(&o);
    free(cuts);
    buf_free(&b);
}

static void test_offsets_count_from_the_start_of_the_stream(void **state)
{
    (void)state;
    buf_t b = BUF_INIT;
    three_messages(&b);
    eventstream_decoder_t d;
    eventstream_init(&d, 0);
    eventstream_message_t m;
    uint64_t offsets[3];
    int n = 0;
    /* Chunks of 7 bytes: every message starts in one chunk and ends in another. */
    for (size_t at = 0; at < b.len; at += 7) {
        eventstream_feed(&d, b.data + at, b.len - at < 7 ? b.len - at : 7);
        while (eventstream_next(&d, &m) == 1)
            offsets[n++] = m.offset;
    }
    assert_int_equal(n, 3);
    assert_int_equal(offsets[0], 0);
    uint32_t first = ((uint32_t)(uint8_t)b.data[0] << 24) | ((uint32_t)(uint8_t)b.data[1] << 16) |
                     ((uint32_t)(uint8_t)b.data[2] << 8) | (uint8_t)b.data[3];
    assert_int_equal(offsets[1], first);
    assert_true(offsets[2] > offsets[1] && offsets[2] < b.len);
    eventstream_free(&d);
    buf_free(&b);
}

static void test_a_megabyte_payload_arriving_in_16k_chunks_decodes(void **state)
{
    (void)state;
    size_t n = 1024 * 1024 + 3;
    char *payload = malloc(n);
    assert_non_null(payload);
    for (size_t i = 0; i < n; i++)
        payload[i] = (char)('a' + i % 26);
    buf_t b = BUF_INIT, h = BUF_INIT;
    h_str(&h, ":message-type", "event");
    h_str(&h, ":event-type", "big");
    w_message(&b, &h, payload, n);
    w_event(&b, "after", "1");
    buf_free(&h);

    eventstream_decoder_t d;
    eventstream_init(&d, 0);
    eventstream_message_t m;
    int got = 0;
    for (size_t at = 0; at < b.len; at += 16384) {
        eventstream_feed(&d, b.data + at, b.len - at < 16384 ? b.len - at : 16384);
        while (eventstream_next(&d, &m) == 1) {
            if (got++ == 0) {
                assert_true(eventstream_span_eq(m.event_type, "big"));
                assert_int_equal(m.payload_len, n);
                assert_memory_equal(m.payload, payload, n);
            } else {
                assert_true(eventstream_span_eq(m.event_type, "after"));
            }
        }
    }
    assert_int_equal(got, 2);
    assert_int_equal(eventstream_finish(&d), 0);
    eventstream_free(&d);
    buf_free(&b);
    free(payload);
}

static void test_reset_starts_a_new_stream_after_an_error(void **state)
{
    (void)state;
    buf_t bad = BUF_INIT, good = BUF_INIT;
    w_event(&bad, "e", "{}");
    bad.data[8] ^= 1;
    w_event(&good, "e", "{}");
    eventstream_decoder_t d;
    eventstream_init(&d, 0);
    eventstream_message_t m;
    eventstream_feed(&d, bad.data, bad.len);
    assert_int_equal(eventstream_next(&d, &m), -1);
    eventstream_reset(&d);
    assert_int_equal(eventstream_error(&d), EVENTSTREAM_OK);
    assert_string_equal(eventstream_errmsg(&d), "");
    eventstream_feed(&d, good.data, good.len);
    assert_int_equal(eventstream_next(&d, &m), 1);
    assert_int_equal(m.offset, 0);
    eventstream_free(&d);
    buf_free(&bad);
    buf_free(&good);
}

/* ---- tests: errors ------------------------------------------------------- */

static void test_a_bad_prelude_crc_is_refused_before_the_body_arrives(void **state)
{
    (void)state;
    buf_t b = BUF_INIT;
    w_event(&b, "e", "{}");
    w_event(&b, "e", "{}");
    size_t second = b.len / 2;
    b.data[second + 9] ^= 0x40;
    expect_error(&b, EVENTSTREAM_EPRELUDE_CRC, 1);
    /* A flipped length bit is caught by the prelude CRC too. */
    buf_t c = BUF_INIT;
    w_event(&c, "e", "{}");
    c.data[2] ^= 0x01;
    eventstream_decoder_t d;
    eventstream_init(&d, 0);
    eventstream_message_t m;
    eventstream_feed(&d, c.data, EVENTSTREAM_PRELUDE_LEN); /* only the prelude so far */
    assert_int_equal(eventstream_next(&d, &m), -1);
    assert_int_equal(eventstream_error(&d), EVENTSTREAM_EPRELUDE_CRC);
    assert_non_null(strstr(eventstream_errmsg(&d), "prelude CRC32"));
    assert_non_null(strstr(eventstream_errmsg(&d), "stream offset 0"));
    eventstream_free(&d);
    buf_free(&b);
    buf_free(&c);
}

static void test_a_bad_message_crc_is_refused_wherever_the_chunks_cut(void **state)
{
    (void)state;
    buf_t b = BUF_INIT;
    three_messages(&b);
    /* Flip one payload byte of the first message (12 prelude + 91 header
     * bytes before it); its message CRC no longer holds. */
    b.data[110] ^= 0x20;
    for (size_t cut = 0; cut <= b.len; cut++) {
        outcome_t o;
        decode_cut((const uint8_t *)b.data, b.len, &cut, 1, 0, &o);
        assert_int_equal(o.err, EVENTSTREAM_EMESSAGE_CRC);
        assert_int_equal(o.messages, 0);
        outcome_free(&o);
    }
    /* The CRC field itself damaged. */
    buf_t c = BUF_INIT;
    w_event(&c, "e", "{}");
    c.data[c.len - 1] ^= 0x80;
    expect_error(&c, EVENTSTREAM_EMESSAGE_CRC, 0);
    buf_free(&b);
    buf_free(&c);
}

static void test_impossible_lengths_are_refused(void **state)
{
    (void)state;
    /* total_length below 16 (with a correct prelude CRC). */
    for (uint32_t total = 0; total < EVENTSTREAM_MIN_MESSAGE; total++) {
        buf_t b = BUF_INIT;
        w_be(&b, total, 4);
        w_be(&b, 0, 4);
        w_be(&b, crc32(0L, (const uint8_t *)b.data, 8), 4);
        w_be(&b, 0, 4);
        expect_error(&b, EVENTSTREAM_ELENGTH, 0);
        buf_free(&b);
    }
    /* headers_length larger than the room total_length leaves. */
    buf_t b = BUF_INIT, h = BUF_INIT;
    h_str(&h, ":event-type", "e");
    w_message(&b, &h, "{}", 2);
    put_be32((uint8_t *)b.data + 4, (uint32_t)(h.len + 3));
    fix_crcs(&b, 0);
    expect_error(&b, EVENTSTREAM_ELENGTH, 0);
    buf_reset(&b);
    w_message(&b, &h, NULL, 0);
    put_be32((uint8_t *)b.data + 4, 0xffffffffu);
    fix_crcs(&b, 0);
    expect_error(&b, EVENTSTREAM_ELENGTH, 0);
    buf_free(&h);
    buf_free(&b);
}

static void test_a_message_over_the_bound_is_refused_from_its_prelude(void **state)
{
    (void)state;
    /* A 4 GiB claim with a valid prelude CRC: refused on its 12 bytes, nothing buffered. */
    uint8_t pre[EVENTSTREAM_PRELUDE_LEN];
    put_be32(pre, 0xffffffffu);
    put_be32(pre + 4, 0);
    put_be32(pre + 8, (uint32_t)crc32(0L, pre, 8));
    eventstream_decoder_t d;
    eventstream_init(&d, 0);
    eventstream_message_t m;
    eventstream_feed(&d, pre, sizeof pre);
    assert_int_equal(eventstream_next(&d, &m), -1);
    assert_int_equal(eventstream_error(&d), EVENTSTREAM_ETOO_LARGE);
    assert_int_equal(d.partial.cap, 0);
    eventstream_free(&d);

    /* A caller's own bound: a message of exactly the bound passes, one byte more does not. */
    buf_t b = BUF_INIT, h = BUF_INIT;
    w_message(&b, &h, "0123456789", 10);
    outcome_t o;
    decode_whole(&b, 26, &o);
    assert_int_equal(o.err, EVENTSTREAM_OK);
    outcome_free(&o);
    decode_whole(&b, 25, &o);
    assert_int_equal(o.err, EVENTSTREAM_ETOO_LARGE);
    outcome_free(&o);
    buf_free(&h);
    buf_free(&b);
}

/* Builds one message with the raw header block `hdr` (n bytes). */
static void message_with_headers(buf_t *b, const void *hdr, size_t n)
{
    buf_t h = BUF_INIT;
    w_raw(&h, hdr, n);
    w_message(b, &h, "{}", 2);
    buf_free(&h);
}

static void test_malformed_headers_are_refused(void **state)
{
    (void)state;
    static const struct {
        const char *what;
        const char *bytes;
        size_t len;
        eventstream_err_t err;
    } cases[] = {
        {"empty name", "\x00\x00", 2, EVENTSTREAM_EHEADER},
        {"name past the block",
         "\x05"
         "ab",
         3, EVENTSTREAM_EHEADER},
        {"no type byte",
         "\x02"
         "ab",
         3, EVENTSTREAM_EHEADER},
        {"string length cut",
         "\x01"
         "a\x07\x00",
         4, EVENTSTREAM_EHEADER},
        {"string past the block",
         "\x01"
         "a\x07\x00\x05"
         "abc",
         8, EVENTSTREAM_EHEADER},
        {"int cut",
         "\x01"
         "a\x04\x00\x00",
         5, EVENTSTREAM_EHEADER},
        {"uuid cut",
         "\x01"
         "a\x09"
         "0123456789abcde",
         18, EVENTSTREAM_EHEADER},
        {"type 10",
         "\x01"
         "a\x0a",
         3, EVENTSTREAM_EHEADER_TYPE},
        {"type 255",
         "\x01"
         "a\xff",
         3, EVENTSTREAM_EHEADER_TYPE},
        {"protocol header not a string", "\x0b:event-type\x04\x00\x00\x00\x01", 17, EVENTSTREAM_EHEADER},
        {"protocol header twice",
         "\x0d:message-type\x07\x00\x05"
         "event"
         "\x0d:message-type\x07\x00\x05"
         "error",
         44, EVENTSTREAM_EHEADER},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        buf_t b = BUF_INIT;
        message_with_headers(&b, cases[i].bytes, cases[i].len);
        outcome_t o;
        decode_whole(&b, 0, &o);
        if (o.err != cases[i].err)
            fail_msg("%s: expected %s, got %s", cases[i].what, eventstream_err_name(cases[i].err),
                     eventstream_err_name(o.err));
        outcome_free(&o);
        buf_free(&b);
    }
    /* The message names the header and the type. */
    buf_t b = BUF_INIT;
    message_with_headers(&b, "\x0b:event-type\x04\x00\x00\x00\x01", 17);
    eventstream_decoder_t d;
    eventstream_init(&d, 0);
    eventstream_message_t m;
    eventstream_feed(&d, b.data, b.len);
    assert_int_equal(eventstream_next(&d, &m), -1);
    assert_non_null(strstr(eventstream_errmsg(&d), ":event-type has type integer where a string is required"));
    eventstream_free(&d);
    buf_free(&b);
    /* The same header name twice is fine for headers the decoder does not interpret. */
    buf_t c = BUF_INIT;
    message_with_headers(&c, "\x01x\x00\x01x\x01", 6);
    outcome_t o;
    decode_whole(&c, 0, &o);
    assert_int_equal(o.err, EVENTSTREAM_OK);
    outcome_free(&o);
    buf_free(&c);
}

static void test_a_stream_that_stops_inside_a_message_is_truncated(void **state)
{
    (void)state;
    buf_t b = BUF_INIT;
    three_messages(&b);
    /* Where the messages end: 0 < ends[0] < ends[1] < ends[2] = b.len. */
    size_t ends[3], at = 0;
    for (int i = 0; i < 3; i++) {
        const uint8_t *p = (const uint8_t *)b.data + at;
        at += ((size_t)p[0] << 24) | ((size_t)p[1] << 16) | ((size_t)p[2] << 8) | p[3];
        ends[i] = at;
    }
    assert_int_equal(ends[2], b.len);
    /* Every length of the stream: complete messages come out, and the
     * stream is truncated unless it stops on a boundary. */
    for (size_t len = 1; len <= b.len; len++) {
        outcome_t o;
        decode_cut((const uint8_t *)b.data, len, NULL, 0, 0, &o);
        int whole = (len >= ends[0]) + (len >= ends[1]) + (len >= ends[2]);
        int boundary = len == ends[0] || len == ends[1] || len == ends[2];
        assert_int_equal(o.messages, whole);
        assert_int_equal(o.err, boundary ? EVENTSTREAM_OK : EVENTSTREAM_ETRUNCATED);
        outcome_free(&o);
    }
    eventstream_decoder_t d;
    eventstream_init(&d, 0);
    eventstream_message_t m;
    eventstream_feed(&d, b.data, 5);
    assert_int_equal(eventstream_next(&d, &m), 0);
    assert_int_equal(eventstream_finish(&d), -1);
    assert_int_equal(eventstream_error(&d), EVENTSTREAM_ETRUNCATED);
    assert_non_null(strstr(eventstream_errmsg(&d), "inside its prelude"));
    eventstream_free(&d);
    buf_free(&b);
}

static void test_an_error_is_final_for_the_stream(void **state)
{
    (void)state;
    buf_t bad = BUF_INIT, good = BUF_INIT;
    w_event(&bad, "e", "{}");
    bad.data[bad.len - 2] ^= 1;
    w_event(&good, "e", "{}");
    eventstream_decoder_t d;
    eventstream_init(&d, 0);
    eventstream_message_t m;
    eventstream_feed(&d, bad.data, bad.len);
    assert_int_equal(eventstream_next(&d, &m), -1);
    char first[sizeof d.errmsg];
    snprintf(first, sizeof first, "%s", eventstream_errmsg(&d));
    eventstream_feed(&d, good.data, good.len);
    assert_int_equal(eventstream_next(&d, &m), -1);
    assert_int_equal(eventstream_error(&d), EVENTSTREAM_EMESSAGE_CRC);
    assert_int_equal(eventstream_finish(&d), -1);
    assert_string_equal(eventstream_errmsg(&d), first);
    eventstream_free(&d);
    buf_free(&bad);
    buf_free(&good);
}

/* ---- tests: frames captured from kinesis-mock ------------------------------ */

static int read_vector(const char *name, buf_t *out)
{
    /* __FILE__ is tests/unit/test_eventstream.c (the build runs at the root). */
    char path[512];
    const char *slash = strrchr(__FILE__, '/');
    snprintf(path, sizeof path, "%.*s/data/%s", slash ? (int)(slash - __FILE__) : 1, slash ? __FILE__ : ".", name);
    FILE *f = fopen(path, "rb");
    if (f == NULL) return -1;
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        assert_int_equal(buf_append(out, chunk, n), 0);
    fclose(f);
    return 0;
}

static void test_kinesis_mock_records_event_decodes(void **state)
{
    (void)state;
    buf_t b = BUF_INIT;
    if (read_vector("eventstream-kinesis-mock-events.bin", &b) != 0) fail_msg("test vector missing");
    eventstream_decoder_t d;
    eventstream_init(&d, 0);
    eventstream_message_t m;
    eventstream_feed(&d, b.data, b.len);
    int n = 0, with_records = 0;
    while (eventstream_next(&d, &m) == 1) {
        assert_int_equal(m.kind, EVENTSTREAM_KIND_EVENT);
        assert_true(eventstream_span_eq(m.event_type, "SubscribeToShardEvent"));
        assert_true(eventstream_span_eq(m.content_type, "application/json"));
        assert_true(m.payload_len > 0 && m.payload[0] == '{' && m.payload[m.payload_len - 1] == '}');
        if (memmem(m.payload, m.payload_len, "\"SequenceNumber\"", 16)) with_records++;
        n++;
    }
    assert_int_equal(eventstream_error(&d), EVENTSTREAM_OK);
    assert_int_equal(eventstream_finish(&d), 0);
    assert_true(n >= 2);
    assert_true(with_records >= 1);
    /* And byte by byte. */
    eventstream_reset(&d);
    int again = 0;
    for (size_t i = 0; i < b.len; i++) {
        eventstream_feed(&d, b.data + i, 1);
        while (eventstream_next(&d, &m) == 1)
            again++;
    }
    assert_int_equal(again, n);
    assert_int_equal(eventstream_finish(&d), 0);
    eventstream_free(&d);
    buf_free(&b);
}

static void test_kinesis_mock_resource_in_use_exception_decodes(void **state)
{
    (void)state;
    buf_t b = BUF_INIT;
    if (read_vector("eventstream-kinesis-mock-in-use.bin", &b) != 0) fail_msg("test vector missing");
    eventstream_decoder_t d;
    eventstream_init(&d, 0);
    eventstream_message_t m;
    eventstream_feed(&d, b.data, b.len);
    assert_int_equal(eventstream_next(&d, &m), 1);
    assert_int_equal(m.kind, EVENTSTREAM_KIND_EXCEPTION);
    assert_true(eventstream_span_eq(m.exception_type, "ResourceInUseException"));
    assert_non_null(memmem(m.payload, m.payload_len, "\"message\"", 9));
    assert_int_equal(eventstream_next(&d, &m), 0);
    assert_int_equal(eventstream_finish(&d), 0);
    eventstream_free(&d);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_an_event_yields_its_protocol_headers_and_payload),
        cmocka_unit_test(test_exception_and_error_messages_are_classified),
        cmocka_unit_test(test_every_header_value_type_decodes),
        cmocka_unit_test(test_a_message_with_no_headers_and_no_payload_is_sixteen_bytes),
        cmocka_unit_test(test_a_stream_cut_at_every_byte_yields_the_same_messages),
        cmocka_unit_test(test_offsets_count_from_the_start_of_the_stream),
        cmocka_unit_test(test_a_megabyte_payload_arriving_in_16k_chunks_decodes),
        cmocka_unit_test(test_reset_starts_a_new_stream_after_an_error),
        cmocka_unit_test(test_a_bad_prelude_crc_is_refused_before_the_body_arrives),
        cmocka_unit_test(test_a_bad_message_crc_is_refused_wherever_the_chunks_cut),
        cmocka_unit_test(test_impossible_lengths_are_refused),
        cmocka_unit_test(test_a_message_over_the_bound_is_refused_from_its_prelude),
        cmocka_unit_test(test_malformed_headers_are_refused),
        cmocka_unit_test(test_a_stream_that_stops_inside_a_message_is_truncated),
        cmocka_unit_test(test_an_error_is_final_for_the_stream),
        cmocka_unit_test(test_kinesis_mock_records_event_decodes),
        cmocka_unit_test(test_kinesis_mock_resource_in_use_exception_decodes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
