/* test_kpl: de-aggregation of KPL records, as the KCL does it.
 *
 * Aggregates are built here with a tiny protobuf writer of the test's own
 * (independent of kpl_encode.h, the tests' aggregate writer, which is
 * checked here against the reader), so malformed and unusual-but-valid encodings
 * can be made on purpose. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "base/buf.h"
#include "record/kpl.h"
#include "kpl_encode.h"

/* ---- the test's protobuf writer ---------------------------------------- */

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_SGROUP = 3, WT_EGROUP = 4, WT_I32 = 5 };

static void w_raw(buf_t *b, const void *p, size_t n) { assert_int_equal(buf_append(b, p, n), 0); }

static void w_varint(buf_t *b, uint64_t v)
{
    do {
        uint8_t c = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v) c |= 0x80;
        w_raw(b, &c, 1);
    } while (v);
}

static void w_tag(buf_t *b, uint32_t field, int wt) { w_varint(b, ((uint64_t)field << 3) | (uint64_t)wt); }

static void w_bytes(buf_t *b, uint32_t field, const void *p, size_t n)
{
    w_tag(b, field, WT_LEN);
    w_varint(b, n);
    if (n) w_raw(b, p, n);
}

static void w_str(buf_t *b, uint32_t field, const char *s) { w_bytes(b, field, s, strlen(s)); }

static void w_uint(buf_t *b, uint32_t field, uint64_t v)
{
    w_tag(b, field, WT_VARINT);
    w_varint(b, v);
}

/* A Record message: pkey index, optional ehk index (< 0: none), data. */
static void w_record(buf_t *agg, uint64_t pkey_index, int64_t ehk_index, const char *data)
{
    buf_t rec = BUF_INIT;
    w_uint(&rec, 1, pkey_index);
    if (ehk_index >= 0) w_uint(&rec, 2, (uint64_t)ehk_index);
    w_str(&rec, 3, data);
    w_bytes(agg, 3, rec.data, rec.len);
    buf_free(&rec);
}

/* Wraps protobuf bytes into a full aggregate: magic | body | MD5(body). */
static void wrap(buf_t *out, const void *body, size_t len)
{
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    assert_int_equal(EVP_Digest(body, len, md, &mdlen, EVP_md5(), NULL), 1);
    assert_int_equal(mdlen, 16);
    buf_reset(out);
    w_raw(out, KPL_MAGIC, KPL_MAGIC_LEN);
    if (len) w_raw(out, body, len);
    w_raw(out, md, mdlen);
}

static const uint8_t *u8(const buf_t *b) { return (const uint8_t *)b->data; }

/* Asserts that a user record has these keys and data. ehk NULL: none. */
static void assert_user_record(const kpl_user_record_t *r, size_t index, const char *pkey,
                               const char *ehk, const char *data)
{
    assert_int_equal(r->index, index);
    assert_int_equal(r->pkey_len, strlen(pkey));
    assert_memory_equal(r->pkey, pkey, r->pkey_len);
    if (ehk == NULL) {
        assert_null(r->ehk);
        assert_int_equal(r->ehk_len, 0);
    } else {
        assert_int_equal(r->ehk_len, strlen(ehk));
        assert_memory_equal(r->ehk, ehk, r->ehk_len);
    }
    assert_int_equal(r->data_len, strlen(data));
    if (r->data_len) assert_memory_equal(r->data, data, r->data_len);
}

static void assert_passthrough(const buf_t *agg)
{
    kpl_iter_t it;
    kpl_user_record_t r;
    assert_int_equal(kpl_is_aggregate(u8(agg), agg->len), 0);
    assert_int_equal(kpl_count(u8(agg), agg->len), 1);
    assert_int_equal(kpl_iter_init(&it, u8(agg), agg->len), 0);
    assert_int_equal(kpl_iter_count(&it), 0);
    assert_int_equal(kpl_iter_next(&it, &r), 0);
}

/* ---- tests ------------------------------------------------------------- */

static void test_plain_records_pass_through(void **state)
{
    (void)state;
    const char *samples[] = {"", "hello world", "\xF3\x89\x9A", "\xF3\x89\x9A\xC2",
                             "{\"json\": true}"};
    for (size_t i = 0; i < sizeof samples / sizeof *samples; i++) {
        buf_t b = BUF_INIT;
        w_raw(&b, samples[i], strlen(samples[i]));
        assert_passthrough(&b);
        buf_free(&b);
    }
    assert_int_equal(kpl_is_aggregate(NULL, 0), 0);
    assert_int_equal(kpl_count(NULL, 0), 1);
}

static void test_aggregate_expands_in_order_with_keys_and_subsequence_numbers(void **state)
{
    (void)state;
    buf_t body = BUF_INIT, agg = BUF_INIT;
    w_str(&body, 1, "user-a");
    w_str(&body, 1, "user-b");
    w_str(&body, 2, "170141183460469231731687303715884105728");
    w_record(&body, 0, -1, "first");
    w_record(&body, 1, 0, "second");
    w_record(&body, 0, -1, "");
    wrap(&agg, body.data, body.len);

    assert_int_equal(kpl_is_aggregate(u8(&agg), agg.len), 1);
    assert_int_equal(kpl_count(u8(&agg), agg.len), 3);
    kpl_iter_t it;
    kpl_user_record_t r;
    assert_int_equal(kpl_iter_init(&it, u8(&agg), agg.len), 1);
    assert_int_equal(kpl_iter_count(&it), 3);
    assert_int_equal(kpl_iter_next(&it, &r), 1);
    assert_user_record(&r, 0, "user-a", NULL, "first");
    /* Records point into the caller's buffer: nothing was copied. */
    assert_true(r.data > u8(&agg) && r.data + r.data_len <= u8(&agg) + agg.len);
    assert_true(r.pkey > u8(&agg) && r.pkey + r.pkey_len <= u8(&agg) + agg.len);
    assert_int_equal(kpl_iter_next(&it, &r), 1);
    assert_user_record(&r, 1, "user-b", "170141183460469231731687303715884105728", "second");
    assert_int_equal(kpl_iter_next(&it, &r), 1);
    assert_user_record(&r, 2, "user-a", NULL, "");
    assert_int_equal(kpl_iter_next(&it, &r), 0);
    assert_int_equal(kpl_iter_next(&it, &r), 0); /* stays at the end */
    buf_free(&body);
    buf_free(&agg);
}

static void test_bad_magic_passes_through(void **state)
{
    (void)state;
    buf_t body = BUF_INIT, agg = BUF_INIT;
    w_str(&body, 1, "k");
    w_record(&body, 0, -1, "x");
    wrap(&agg, body.data, body.len);
    assert_int_equal(kpl_is_aggregate(u8(&agg), agg.len), 1);
    for (size_t i = 0; i < KPL_MAGIC_LEN; i++) {
        agg.data[i] ^= 0x01;
        assert_passthrough(&agg);
        agg.data[i] ^= 0x01;
    }
    buf_free(&body);
    buf_free(&agg);
}

static void test_bad_md5_passes_through(void **state)
{
    (void)state;
    buf_t body = BUF_INIT, agg = BUF_INIT;
    w_str(&body, 1, "k");
    w_record(&body, 0, -1, "payload");
    wrap(&agg, body.data, body.len);
    /* Any flipped bit, in the digest or in the protobuf it covers. */
    for (size_t i = KPL_MAGIC_LEN; i < agg.len; i++) {
        agg.data[i] ^= 0x20;
        assert_passthrough(&agg);
        agg.data[i] ^= 0x20;
    }
    assert_int_equal(kpl_is_aggregate(u8(&agg), agg.len), 1);
    buf_free(&body);
    buf_free(&agg);
}

static void test_truncated_aggregates_pass_through_or_parse_a_prefix(void **state)
{
    (void)state;
    buf_t body = BUF_INIT, agg = BUF_INIT, cut = BUF_INIT;
    w_str(&body, 1, "key");
    for (int i = 0; i < 5; i++) w_record(&body, 0, -1, "some record data");
    wrap(&agg, body.data, body.len);
    /* Cutting the whole record anywhere breaks the digest. */
    for (size_t n = 0; n < agg.len; n++) {
        assert_int_equal(kpl_is_aggregate(u8(&agg), n), 0);
        assert_int_equal(kpl_count(u8(&agg), n), 1);
    }
    /* A truncated protobuf with a digest that matches it: only a cut at a
     * field boundary is still a (smaller) aggregate. */
    size_t valid = 0;
    for (size_t n = 0; n < body.len; n++) {
        wrap(&cut, body.data, n);
        kpl_iter_t it;
        kpl_user_record_t r;
        if (kpl_iter_init(&it, u8(&cut), cut.len)) {
            valid++;
            size_t got = 0;
            int rc;
            while ((rc = kpl_iter_next(&it, &r)) == 1) got++;
            assert_int_equal(rc, 0);
            assert_int_equal(got, kpl_iter_count(&it));
            assert_true(got < 5);
        }
    }
    assert_int_equal(valid, 6); /* empty, after the key, after records 1..4 */
    buf_free(&body);
    buf_free(&agg);
    buf_free(&cut);
}

static void test_garbage_protobuf_passes_through(void **state)
{
    (void)state;
    buf_t agg = BUF_INIT;
    const struct { const char *what; const char *bytes; size_t len; } cases[] = {
        {"wire type 7", "\x0f", 1},
        {"wire type 6", "\x0e\x00", 2},
        {"field number 0", "\x02\x00", 2},
        {"truncated varint", "\x08\xff", 2},
        {"11-byte varint", "\x78\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12},
        {"varint over 64 bits", "\x78\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02", 11},
        {"length past the end", "\x0a\x05" "ab", 4},
        {"huge length", "\x0a\xff\xff\xff\xff\xff\xff\xff\xff\x7f", 10},
        {"truncated fixed64", "\x79\x01\x02\x03", 4},
        {"truncated fixed32", "\x7d\x01\x02", 3},
        {"stray end group", "\x7c", 1},
        {"unterminated group", "\x7b\x08\x01", 3},
        {"mismatched end group", "\x7b\x84\x01", 3},
        {"record that is not a message", "\x0a\x01k\x1a\x02\xff\xff", 7},
        {"record without data", "\x0a\x01k\x1a\x02\x08\x00", 7},
        {"record without partition key index", "\x0a\x01k\x1a\x03\x1a\x01x", 8},
        {"records but no partition key table", "\x1a\x05\x08\x00\x1a\x01x", 7},
        {"tag without its required key", "\x0a\x01k\x1a\x09\x08\x00\x1a\x01x\x22\x02\x12\x00", 14},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        wrap(&agg, cases[i].bytes, cases[i].len);
        if (kpl_is_aggregate(u8(&agg), agg.len) != 0) fail_msg("accepted: %s", cases[i].what);
        assert_passthrough(&agg);
    }
    /* Pseudo-random bodies with a correct digest never crash. */
    uint32_t seed = 12345;
    uint8_t junk[256];
    for (int round = 0; round < 2000; round++) {
        size_t n = (size_t)(round % (int)sizeof junk);
        for (size_t j = 0; j < n; j++) {
            seed = seed * 1103515245u + 12345u;
            junk[j] = (uint8_t)(seed >> 16);
        }
        wrap(&agg, junk, n);
        kpl_iter_t it;
        kpl_user_record_t r;
        if (kpl_iter_init(&it, u8(&agg), agg.len)) {
            size_t got = 0;
            while (kpl_iter_next(&it, &r) == 1) got++;
            assert_int_equal(got, kpl_iter_count(&it));
        }
    }
    buf_free(&agg);
}

static void test_out_of_range_key_index_passes_through(void **state)
{
    (void)state;
    buf_t body = BUF_INIT, agg = BUF_INIT;
    w_str(&body, 1, "a");
    w_str(&body, 1, "b");
    w_record(&body, 2, -1, "x"); /* pkey index 2, table has 2 */
    wrap(&agg, body.data, body.len);
    assert_passthrough(&agg);

    buf_reset(&body);
    w_str(&body, 1, "a");
    w_str(&body, 2, "1234");
    w_record(&body, 0, 1, "x"); /* ehk index 1, table has 1 */
    wrap(&agg, body.data, body.len);
    assert_passthrough(&agg);

    buf_reset(&body);
    w_str(&body, 1, "a");
    w_record(&body, UINT64_MAX, -1, "x");
    wrap(&agg, body.data, body.len);
    assert_passthrough(&agg);
    buf_free(&body);
    buf_free(&agg);
}

static void test_empty_aggregate_has_no_user_records(void **state)
{
    (void)state;
    buf_t agg = BUF_INIT;
    wrap(&agg, "", 0);
    assert_int_equal(agg.len, KPL_MAGIC_LEN + KPL_DIGEST_LEN);
    assert_int_equal(kpl_is_aggregate(u8(&agg), agg.len), 1);
    assert_int_equal(kpl_count(u8(&agg), agg.len), 0);
    kpl_iter_t it;
    kpl_user_record_t r;
    assert_int_equal(kpl_iter_init(&it, u8(&agg), agg.len), 1);
    assert_int_equal(kpl_iter_next(&it, &r), 0);

    /* Key tables but no records: still an aggregate, still empty. */
    buf_t body = BUF_INIT;
    w_str(&body, 1, "unused");
    wrap(&agg, body.data, body.len);
    assert_int_equal(kpl_count(u8(&agg), agg.len), 0);
    buf_free(&body);
    buf_free(&agg);
}

/* 1000 records over `nkeys` partition keys used in a scrambled order, so the
 * key lookups jump back and forth across the table. */
static void check_thousand_records(size_t nkeys)
{
    enum { N = 1000 };
    buf_t body = BUF_INIT, agg = BUF_INIT;
    char s[64];
    for (size_t k = 0; k < nkeys; k++) {
        snprintf(s, sizeof s, "pk-%zu", k);
        w_str(&body, 1, s);
    }
    for (size_t i = 0; i < N; i++) {
        snprintf(s, sizeof s, "record %zu", i);
        w_record(&body, (i * 7919) % nkeys, -1, s);
    }
    wrap(&agg, body.data, body.len);
    kpl_iter_t it;
    kpl_user_record_t r;
    assert_int_equal(kpl_iter_init(&it, u8(&agg), agg.len), 1);
    assert_int_equal(kpl_iter_count(&it), N);
    for (size_t i = 0; i < N; i++) {
        char pk[64];
        assert_int_equal(kpl_iter_next(&it, &r), 1);
        snprintf(pk, sizeof pk, "pk-%zu", (i * 7919) % nkeys);
        snprintf(s, sizeof s, "record %zu", i);
        assert_user_record(&r, i, pk, NULL, s);
    }
    assert_int_equal(kpl_iter_next(&it, &r), 0);
    buf_free(&body);
    buf_free(&agg);
}

static void test_thousand_sub_records_expand_in_order(void **state)
{
    (void)state;
    check_thousand_records(1);
    check_thousand_records(7);
    check_thousand_records(33);   /* just past the first mark compaction */
    check_thousand_records(1000); /* one key per record */
}

static void test_unknown_fields_of_every_wire_type_are_skipped(void **state)
{
    (void)state;
    buf_t body = BUF_INIT, rec = BUF_INIT, tag = BUF_INIT, agg = BUF_INIT;
    /* Top level: unknown fields of each wire type, a nested group, and a
     * known field number with the wrong wire type. */
    w_uint(&body, 15, 300);
    w_tag(&body, 16, WT_I64);
    w_raw(&body, "12345678", 8);
    w_str(&body, 17, "unknown bytes");
    w_tag(&body, 18, WT_I32);
    w_raw(&body, "1234", 4);
    w_tag(&body, 19, WT_SGROUP);
    w_uint(&body, 1, 5);
    w_tag(&body, 20, WT_SGROUP);
    w_str(&body, 3, "inside a nested group");
    w_tag(&body, 20, WT_EGROUP);
    w_tag(&body, 19, WT_EGROUP);
    w_uint(&body, 3, 42); /* `records` as a varint: not a record */
    w_str(&body, 1, "key0");
    w_uint(&body, 536870911, 1); /* the largest field number */

    /* A record with unknown fields, a tag, and a repeated index (last wins). */
    w_uint(&rec, 1, 7);
    w_tag(&rec, 9, WT_I32);
    w_raw(&rec, "abcd", 4);
    w_str(&tag, 1, "tag-key");
    w_str(&tag, 2, "tag-value");
    w_uint(&tag, 3, 1);
    w_bytes(&rec, 4, tag.data, tag.len);
    w_str(&rec, 3, "the data");
    w_tag(&rec, 10, WT_SGROUP);
    w_tag(&rec, 10, WT_EGROUP);
    w_str(&rec, 1, "index as bytes is unknown, not an index");
    w_uint(&rec, 1, 0);
    w_bytes(&body, 3, rec.data, rec.len);
    /* Table entries after the records that use them are fine too. */
    w_record(&body, 1, 0, "second");
    w_str(&body, 1, "key1");
    w_str(&body, 2, "99");
    wrap(&agg, body.data, body.len);

    kpl_iter_t it;
    kpl_user_record_t r;
    assert_int_equal(kpl_iter_init(&it, u8(&agg), agg.len), 1);
    assert_int_equal(kpl_iter_count(&it), 2);
    assert_int_equal(kpl_iter_next(&it, &r), 1);
    assert_user_record(&r, 0, "key0", NULL, "the data");
    assert_int_equal(kpl_iter_next(&it, &r), 1);
    assert_user_record(&r, 1, "key1", "99", "second");
    assert_int_equal(kpl_iter_next(&it, &r), 0);
    buf_free(&body);
    buf_free(&rec);
    buf_free(&tag);
    buf_free(&agg);
}

static void test_deeply_nested_unknown_groups_are_bounded(void **state)
{
    (void)state;
    buf_t body = BUF_INIT, agg = BUF_INIT;
    for (int depth = 1; depth <= 40; depth++) {
        buf_reset(&body);
        for (int i = 0; i < depth; i++) w_tag(&body, 20, WT_SGROUP);
        for (int i = 0; i < depth; i++) w_tag(&body, 20, WT_EGROUP);
        wrap(&agg, body.data, body.len);
        /* Up to 32 levels are skipped; deeper is treated as malformed. */
        assert_int_equal(kpl_is_aggregate(u8(&agg), agg.len), depth <= 32);
    }
    buf_free(&body);
    buf_free(&agg);
}

static void test_kpl_encode_round_trips_and_dedups_keys(void **state)
{
    (void)state;
    const kpl_user_record_t in[] = {
        {(const uint8_t *)"a", 1, NULL, 0, (const uint8_t *)"one", 3, 0},
        {(const uint8_t *)"b", 1, (const uint8_t *)"12", 2, (const uint8_t *)"two", 3, 0},
        {(const uint8_t *)"a", 1, (const uint8_t *)"12", 2, (const uint8_t *)"", 0, 0},
        {(const uint8_t *)"", 0, NULL, 0, (const uint8_t *)"four", 4, 0},
    };
    buf_t out = BUF_INIT;
    assert_int_equal(buf_append(&out, "prefix", 6), 0);
    assert_int_equal(kpl_encode(&out, in, 4), 0);
    const uint8_t *agg = u8(&out) + 6; /* appended after what was there */
    size_t len = out.len - 6;
    kpl_iter_t it;
    kpl_user_record_t r;
    assert_int_equal(kpl_iter_init(&it, agg, len), 1);
    assert_int_equal(it.pkeys.count, 3); /* "a", "b", "" */
    assert_int_equal(it.ehks.count, 1);
    assert_int_equal(kpl_iter_next(&it, &r), 1);
    assert_user_record(&r, 0, "a", NULL, "one");
    assert_int_equal(kpl_iter_next(&it, &r), 1);
    assert_user_record(&r, 1, "b", "12", "two");
    assert_int_equal(kpl_iter_next(&it, &r), 1);
    assert_user_record(&r, 2, "a", "12", "");
    assert_int_equal(kpl_iter_next(&it, &r), 1);
    assert_user_record(&r, 3, "", NULL, "four");
    assert_int_equal(kpl_iter_next(&it, &r), 0);

    /* Zero records encode to the empty aggregate. */
    buf_reset(&out);
    assert_int_equal(kpl_encode(&out, NULL, 0), 0);
    assert_int_equal(out.len, KPL_MAGIC_LEN + KPL_DIGEST_LEN);
    assert_int_equal(kpl_count(u8(&out), out.len), 0);
    buf_free(&out);
}

static void test_kpl_encode_leaves_a_bounded_buffer_unchanged_when_full(void **state)
{
    (void)state;
    const kpl_user_record_t in[] = {
        {(const uint8_t *)"key", 3, NULL, 0, (const uint8_t *)"data that will not fit", 22, 0},
    };
    buf_t out;
    buf_init(&out, 32);
    assert_int_equal(buf_append(&out, "keep", 4), 0);
    assert_int_equal(kpl_encode(&out, in, 1), -1);
    assert_int_equal(out.len, 4);
    assert_memory_equal(out.data, "keep", 4);
    /* A record with a NULL pointer but a length is refused. */
    const kpl_user_record_t bad[] = {{NULL, 3, NULL, 0, (const uint8_t *)"x", 1, 0}};
    assert_int_equal(kpl_encode(&out, bad, 1), -1);
    assert_int_equal(out.len, 4);
    buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_records_pass_through),
        cmocka_unit_test(test_aggregate_expands_in_order_with_keys_and_subsequence_numbers),
        cmocka_unit_test(test_bad_magic_passes_through),
        cmocka_unit_test(test_bad_md5_passes_through),
        cmocka_unit_test(test_truncated_aggregates_pass_through_or_parse_a_prefix),
        cmocka_unit_test(test_garbage_protobuf_passes_through),
        cmocka_unit_test(test_out_of_range_key_index_passes_through),
        cmocka_unit_test(test_empty_aggregate_has_no_user_records),
        cmocka_unit_test(test_thousand_sub_records_expand_in_order),
        cmocka_unit_test(test_unknown_fields_of_every_wire_type_are_skipped),
        cmocka_unit_test(test_deeply_nested_unknown_groups_are_bounded),
        cmocka_unit_test(test_kpl_encode_round_trips_and_dedups_keys),
        cmocka_unit_test(test_kpl_encode_leaves_a_bounded_buffer_unchanged_when_full),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
