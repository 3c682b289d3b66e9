/* output: emitted records are put in emit order, acknowledged in order, and
 * failures go where the policy says; a source whose answers the test gives,
 * on virtual time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "shard/output.h"
#include "vsched.h"

/* ---- a source that records puts and answers when the test says ---- */

typedef struct put_call {
    char stream[32];
    char data[64][16];        /* the records' data, as strings */
    char keys[64][16];
    size_t n;
    source_put_cb cb;
    void *ud;
    int done;
} put_call_t;

typedef struct fake_source {
    source_t base;
    put_call_t calls[32];
    size_t ncalls, answered;
} fake_source_t;

static void fake_put(source_t *s, const char *stream, const source_put_record_t *recs, size_t n, source_put_cb cb,
                     void *ud)
{
    fake_source_t *fs = (fake_source_t *)s;
    assert_true(fs->ncalls < 32 && n <= 64);
    put_call_t *c = &fs->calls[fs->ncalls++];
    snprintf(c->stream, sizeof c->stream, "%s", stream);
    for (size_t i = 0; i < n; i++) {
        snprintf(c->data[i], sizeof c->data[i], "%.*s", (int)recs[i].data_len, (const char *)recs[i].data);
        snprintf(c->keys[i], sizeof c->keys[i], "%s", recs[i].pkey);
    }
    c->n = n;
    c->cb = cb;
    c->ud = ud;
}

static const source_ops_t fake_ops = {.name = "fake", .put = fake_put};

/* Answers the oldest put to `stream` (NULL: to any) not yet answered. */
static void answer_to(fake_source_t *fs, const char *stream, source_err_t err, const unsigned char *failed,
                      int throttled)
{
    put_call_t *c = NULL;
    for (size_t i = 0; i < fs->ncalls && !c; i++)
        if (!fs->calls[i].done && (!stream || !strcmp(fs->calls[i].stream, stream))) c = &fs->calls[i];
    assert_non_null(c);
    c->done = 1;
    fs->answered++;
    source_put_result_t r = {err, err ? "put failed" : NULL, failed, throttled};
    c->cb(c->ud, &r);
}

static void answer(fake_source_t *fs, source_err_t err, const unsigned char *failed, int throttled)
{
    answer_to(fs, NULL, err, failed, throttled);
}

/* ---- fixture ---- */

typedef struct fixture {
    vsched_t vs;
    fake_source_t src;
    output_dest_t dests[2];
    config_stream_t cfg;
    outputs_t o;
    int progress;
} fixture_t;

static void on_progress(void *ud)
{
    ((fixture_t *)ud)->progress++;
}

static void start(fixture_t *f, int64_t retries, policy_final_t final)
{
    memset(f, 0, sizeof *f);
    vsched_init(&f->vs, 0);
    f->src.base.ops = &fake_ops;
    f->dests[0] = (output_dest_t){"enriched", "out", &f->src.base, 3, 1 << 20};
    f->dests[1] = (output_dest_t){"audit", "audit", &f->src.base, 100, 1 << 20};
    f->cfg.policy.retries = retries;
    f->cfg.policy.backoff_ms = 100;
    f->cfg.policy.max_backoff_ms = 100;
    f->cfg.policy.final = final;
    outputs_init(&f->o, &f->vs.base, NULL, f->dests, 2, &f->cfg, "in", "shardId-0", "w", on_progress, f);
}

static void finish(fixture_t *f)
{
    assert_false(outputs_busy(&f->o));
    outputs_clear(&f->o);
    vsched_free(&f->vs);
}

/* One call's emits: "d<i>" with key "k<i % 2>", to output `out`. */
static void emit(fixture_t *f, uint32_t out, int from, int n)
{
    emitbuf_t e = EMITBUF_INIT;
    for (int i = from; i < from + n; i++) {
        char d[16], k[16];
        snprintf(d, sizeof d, "d%d", i);
        snprintf(k, sizeof k, "k%d", i % 2);
        emitbuf_add(&e, out, d, strlen(d), k, strlen(k), NULL, 0);
    }
    outputs_add(&f->o, &e, "42");
    assert_int_equal(e.count, 0);
}

static void test_records_are_put_in_emit_order_and_acknowledged_in_order(void **state)
{
    fixture_t f;
    start(&f, 3, FINAL_HALT);
    emit(&f, 0, 0, 5);
    assert_int_equal(outputs_emitted(&f.o), 5);
    assert_int_equal(outputs_acked(&f.o), 0);
    assert_int_equal(outputs_bytes(&f.o), 5 * 4);
    outputs_poke(&f.o);
    assert_int_equal(f.src.ncalls, 1); /* one put in flight per output, at most 3 records each */
    assert_int_equal(f.src.calls[0].n, 3);
    assert_string_equal(f.src.calls[0].stream, "out");
    assert_string_equal(f.src.calls[0].data[0], "d0");
    assert_string_equal(f.src.calls[0].data[2], "d2");
    outputs_poke(&f.o);
    assert_int_equal(f.src.ncalls, 1);
    answer(&f.src, SOURCE_OK, NULL, 0);
    assert_int_equal(outputs_acked(&f.o), 3);
    assert_int_equal(outputs_bytes(&f.o), 2 * 4);
    outputs_poke(&f.o);
    assert_int_equal(f.src.calls[1].n, 2);
    assert_string_equal(f.src.calls[1].data[0], "d3");
    answer(&f.src, SOURCE_OK, NULL, 0);
    assert_int_equal(outputs_acked(&f.o), 5);
    assert_int_equal(outputs_bytes(&f.o), 0);
    assert_int_equal(f.o.stats.written, 5);
    finish(&f);
}

static void test_acknowledged_counts_the_oldest_record_any_output_still_holds(void **state)
{
    fixture_t f;
    start(&f, 3, FINAL_HALT);
    emit(&f, 1, 0, 2); /* records 0, 1 to audit */
    emit(&f, 0, 2, 2); /* records 2, 3 to enriched */
    outputs_poke(&f.o);
    assert_int_equal(f.src.ncalls, 2); /* both outputs put at once */
    answer_to(&f.src, "out", SOURCE_OK, NULL, 0);
    assert_int_equal(outputs_acked(&f.o), 0); /* 0 and 1 are not in audit yet */
    answer_to(&f.src, "audit", SOURCE_OK, NULL, 0);
    assert_int_equal(outputs_acked(&f.o), 4);
    finish(&f);
}

static void test_only_refused_records_are_put_again_alone_before_any_later_record(void **state)
{
    fixture_t f;
    start(&f, 0, FINAL_HALT);
    emit(&f, 0, 0, 6);
    outputs_poke(&f.o);
    const unsigned char refused[] = {0, 1, 0};
    answer(&f.src, SOURCE_ERETRY, refused, 1);
    assert_int_equal(f.o.stats.written, 2);
    assert_int_equal(f.o.stats.refused, 1);
    assert_int_equal(outputs_acked(&f.o), 1); /* d1 is not in the stream yet */
    outputs_poke(&f.o);
    assert_int_equal(f.src.ncalls, 1); /* a pause first */
    vsched_advance(&f.vs, 100);
    outputs_poke(&f.o);
    assert_int_equal(f.src.ncalls, 2);
    assert_int_equal(f.src.calls[1].n, 1); /* d1 alone: not after d3 with its key */
    assert_string_equal(f.src.calls[1].data[0], "d1");
    /* refusals are not failures: retries = 0 does not give them up */
    answer(&f.src, SOURCE_ERETRY, (const unsigned char[]){1}, 1);
    vsched_advance(&f.vs, 100);
    outputs_poke(&f.o);
    assert_string_equal(f.src.calls[2].data[0], "d1");
    answer(&f.src, SOURCE_OK, NULL, 0);
    assert_int_equal(outputs_acked(&f.o), 3);
    outputs_poke(&f.o);
    assert_string_equal(f.src.calls[3].data[0], "d3");
    answer(&f.src, SOURCE_OK, NULL, 0);
    assert_int_equal(outputs_acked(&f.o), 6);
    assert_null(outputs_failed(&f.o, NULL));
    finish(&f);
}

static void test_a_put_that_fails_for_now_is_retried_then_skipped_when_the_policy_says_skip(void **state)
{
    fixture_t f;
    start(&f, 1, FINAL_SKIP);
    emit(&f, 0, 0, 2);
    outputs_poke(&f.o);
    answer(&f.src, SOURCE_ERETRY, NULL, 0);
    assert_non_null(outputs_last_error(&f.o));
    vsched_advance(&f.vs, 100);
    outputs_poke(&f.o);
    assert_int_equal(f.src.ncalls, 2); /* the one retry */
    assert_int_equal(f.src.calls[1].n, 2);
    answer(&f.src, SOURCE_ERETRY, NULL, 0);
    /* retries spent: skipped (not a silent drop: counted and logged) */
    assert_int_equal(f.o.stats.skipped, 2);
    assert_int_equal(outputs_acked(&f.o), 2);
    assert_int_equal(outputs_bytes(&f.o), 0);
    finish(&f);
}

static void test_a_refusal_for_good_halts_and_nothing_after_the_lost_record_is_acknowledged(void **state)
{
    fixture_t f;
    start(&f, 3, FINAL_HALT);
    emit(&f, 1, 0, 1); /* record 0: audit */
    emit(&f, 0, 1, 2); /* records 1, 2: enriched, whose stream is gone */
    emit(&f, 1, 3, 1); /* record 3: audit */
    outputs_poke(&f.o);
    answer_to(&f.src, "out", SOURCE_ENOTFOUND, NULL, 0); /* enriched: for good, no retries */
    uint64_t lost = 0;
    assert_non_null(outputs_failed(&f.o, &lost));
    assert_int_equal(lost, 1);
    answer_to(&f.src, "audit", SOURCE_OK, NULL, 0); /* audit: 0 and 3 */
    assert_int_equal(outputs_acked(&f.o), 1); /* never past the lost record */
    outputs_poke(&f.o);
    assert_int_equal(f.src.ncalls, 2); /* enriched is not put again */
    outputs_abandon(&f.o);
    assert_null(outputs_failed(&f.o, NULL));
    assert_int_equal(outputs_acked(&f.o), 4);
    emit(&f, 0, 4, 1); /* it starts afresh */
    outputs_poke(&f.o);
    assert_int_equal(f.src.ncalls, 3);
    assert_string_equal(f.src.calls[2].data[0], "d4");
    answer(&f.src, SOURCE_OK, NULL, 0);
    finish(&f);
}

static void test_retries_forever_try_even_a_refusal_for_good_again(void **state)
{
    fixture_t f;
    start(&f, -1, FINAL_HALT);
    emit(&f, 0, 0, 1);
    for (int i = 0; i < 5; i++) {
        outputs_poke(&f.o);
        answer(&f.src, SOURCE_ENOTFOUND, NULL, 0);
        assert_null(outputs_failed(&f.o, NULL));
        vsched_advance(&f.vs, 100);
    }
    outputs_poke(&f.o);
    answer(&f.src, SOURCE_OK, NULL, 0);
    assert_int_equal(outputs_acked(&f.o), 1);
    finish(&f);
}

static void test_dropped_records_are_forgotten_and_a_put_in_flight_only_releases_its_own(void **state)
{
    fixture_t f;
    start(&f, 3, FINAL_HALT);
    emit(&f, 0, 0, 5);
    outputs_poke(&f.o);
    outputs_drop(&f.o);
    assert_true(outputs_busy(&f.o)); /* its answer will call back: the shard waits for it */
    assert_int_equal(outputs_bytes(&f.o), 3 * 4);
    answer(&f.src, SOURCE_ERETRY, NULL, 0);
    assert_false(outputs_busy(&f.o));
    assert_int_equal(outputs_bytes(&f.o), 0);
    vsched_advance(&f.vs, 1000);
    outputs_poke(&f.o);
    assert_int_equal(f.src.ncalls, 1); /* nothing is put again */
    finish(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_records_are_put_in_emit_order_and_acknowledged_in_order),
        cmocka_unit_test(test_acknowledged_counts_the_oldest_record_any_output_still_holds),
        cmocka_unit_test(test_only_refused_records_are_put_again_alone_before_any_later_record),
        cmocka_unit_test(test_a_put_that_fails_for_now_is_retried_then_skipped_when_the_policy_says_skip),
        cmocka_unit_test(test_a_refusal_for_good_halts_and_nothing_after_the_lost_record_is_acknowledged),
        cmocka_unit_test(test_retries_forever_try_even_a_refusal_for_good_again),
        cmocka_unit_test(test_dropped_records_are_forgotten_and_a_put_in_flight_only_releases_its_own),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
