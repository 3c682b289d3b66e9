/* checkpoint: positions only move forward, and a checkpoint waits for the
 * records the shard emitted before it was asked for (virtual time). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "record/seqnum.h"
#include "shard/checkpoint.h"
#include "vsched.h"

typedef struct fixture {
    vsched_t vs;
    checkpoint_t cp;
    char written[16][32];     /* every write started, in order */
    int nwritten;
} fixture_t;

static void on_write(void *ud, const char *seq, int64_t sub)
{
    fixture_t *f = ud;
    assert_true(f->nwritten < 16);
    snprintf(f->written[f->nwritten++], sizeof f->written[0], "%s/%lld", seq, (long long)sub);
}

static void start(fixture_t *f, int64_t interval_ms)
{
    memset(f, 0, sizeof *f);
    vsched_init(&f->vs, 1000);
    checkpoint_init(&f->cp, &f->vs.base, interval_ms, SEQNUM_TRIM_HORIZON, 0, on_write, f);
}

static void finish(fixture_t *f)
{
    checkpoint_clear(&f->cp);
    vsched_free(&f->vs);
}

static void test_a_checkpoint_waits_for_every_record_emitted_before_it(void **state)
{
    fixture_t f;
    start(&f, 0);
    checkpoint_emitted(&f.cp, 3);
    checkpoint_request(&f.cp, "10", 0);
    assert_int_equal(f.nwritten, 0);
    assert_true(checkpoint_waiting_outputs(&f.cp));
    checkpoint_acked(&f.cp, 2);
    assert_int_equal(f.nwritten, 0);
    checkpoint_acked(&f.cp, 3);
    assert_int_equal(f.nwritten, 1);
    assert_string_equal(f.written[0], "10/0");
    finish(&f);
}

static void test_a_checkpoint_with_nothing_emitted_before_it_does_not_wait(void **state)
{
    fixture_t f;
    start(&f, 0);
    checkpoint_request(&f.cp, "10", 0);
    assert_int_equal(f.nwritten, 1);
    checkpoint_answered(&f.cp, 1);
    /* emitted after the request: the next request waits, the written one did not */
    checkpoint_emitted(&f.cp, 1);
    checkpoint_request(&f.cp, "11", 0);
    assert_int_equal(f.nwritten, 1);
    assert_string_equal(checkpoint_written(&f.cp, NULL), "10");
    finish(&f);
}

static void test_acknowledgements_write_the_newest_request_they_cover(void **state)
{
    fixture_t f;
    start(&f, 0);
    checkpoint_emitted(&f.cp, 1);
    checkpoint_request(&f.cp, "10", 0);
    checkpoint_emitted(&f.cp, 2);
    checkpoint_request(&f.cp, "20", 0);
    checkpoint_emitted(&f.cp, 3);
    checkpoint_request(&f.cp, "30", 0);
    checkpoint_acked(&f.cp, 2); /* covers 10 and 20, not 30 */
    assert_int_equal(f.nwritten, 1);
    assert_string_equal(f.written[0], "20/0");
    checkpoint_acked(&f.cp, 3); /* 20 is in flight: 30 waits for its answer */
    assert_int_equal(f.nwritten, 1);
    checkpoint_answered(&f.cp, 1);
    assert_int_equal(f.nwritten, 2);
    assert_string_equal(f.written[1], "30/0");
    checkpoint_answered(&f.cp, 1);
    assert_true(checkpoint_idle(&f.cp));
    finish(&f);
}

static void test_a_coalesced_checkpoint_due_while_outputs_wait_is_written_when_they_are_acknowledged(void **state)
{
    fixture_t f;
    start(&f, 1000);
    checkpoint_emitted(&f.cp, 1);
    checkpoint_request(&f.cp, "10", 0);
    vsched_advance(&f.vs, 1000); /* the interval passed; the outputs are not acknowledged */
    assert_int_equal(f.nwritten, 0);
    checkpoint_acked(&f.cp, 1);
    assert_int_equal(f.nwritten, 1);
    checkpoint_answered(&f.cp, 1);
    /* the next request waits for its own interval */
    checkpoint_request(&f.cp, "11", 0);
    assert_int_equal(f.nwritten, 1);
    vsched_advance(&f.vs, 999);
    assert_int_equal(f.nwritten, 1);
    vsched_advance(&f.vs, 1);
    assert_int_equal(f.nwritten, 2);
    finish(&f);
}

static void test_a_cut_drops_every_request_that_waits_for_a_lost_record(void **state)
{
    fixture_t f;
    start(&f, 0);
    checkpoint_emitted(&f.cp, 1);
    checkpoint_request(&f.cp, "10", 0);
    checkpoint_emitted(&f.cp, 5);
    checkpoint_request(&f.cp, "20", 0);
    checkpoint_cut(&f.cp, 2); /* record 2 is lost: "20" needs it, "10" does not */
    int64_t sub;
    assert_string_equal(checkpoint_latest(&f.cp, &sub), "10");
    checkpoint_acked(&f.cp, 5);
    assert_int_equal(f.nwritten, 1);
    assert_string_equal(f.written[0], "10/0");
    checkpoint_answered(&f.cp, 1);
    assert_true(checkpoint_idle(&f.cp));
    /* a request made later that needs the lost record is cut too */
    checkpoint_cut(&f.cp, 2);
    assert_true(checkpoint_idle(&f.cp));
    finish(&f);
}

static void test_positions_never_go_backwards_even_when_outputs_are_acknowledged_late(void **state)
{
    fixture_t f;
    start(&f, 0);
    checkpoint_emitted(&f.cp, 1);
    checkpoint_request(&f.cp, "20", 0);
    checkpoint_request(&f.cp, "15", 0); /* behind the one waiting: dropped */
    checkpoint_request(&f.cp, "20", 0); /* the same: dropped */
    checkpoint_acked(&f.cp, 1);
    assert_int_equal(f.nwritten, 1);
    assert_string_equal(f.written[0], "20/0");
    checkpoint_answered(&f.cp, 1);
    checkpoint_request(&f.cp, "19", 5);
    assert_int_equal(f.nwritten, 1);
    finish(&f);
}

static void test_shard_end_waits_for_outputs_then_is_written_at_once(void **state)
{
    fixture_t f;
    start(&f, 60000);
    checkpoint_emitted(&f.cp, 2);
    checkpoint_request(&f.cp, SEQNUM_SHARD_END, 0);
    assert_int_equal(f.nwritten, 0);
    checkpoint_acked(&f.cp, 2); /* no interval to wait for */
    assert_int_equal(f.nwritten, 1);
    assert_string_equal(f.written[0], "SHARD_END/0");
    finish(&f);
}

static void test_a_refused_write_stops_all_writes(void **state)
{
    fixture_t f;
    start(&f, 0);
    checkpoint_request(&f.cp, "10", 0);
    checkpoint_emitted(&f.cp, 1);
    checkpoint_request(&f.cp, "11", 0);
    checkpoint_answered(&f.cp, 0);
    checkpoint_acked(&f.cp, 1);
    assert_int_equal(f.nwritten, 1);
    assert_true(checkpoint_idle(&f.cp));
    finish(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_checkpoint_waits_for_every_record_emitted_before_it),
        cmocka_unit_test(test_a_checkpoint_with_nothing_emitted_before_it_does_not_wait),
        cmocka_unit_test(test_acknowledgements_write_the_newest_request_they_cover),
        cmocka_unit_test(test_a_coalesced_checkpoint_due_while_outputs_wait_is_written_when_they_are_acknowledged),
        cmocka_unit_test(test_a_cut_drops_every_request_that_waits_for_a_lost_record),
        cmocka_unit_test(test_positions_never_go_backwards_even_when_outputs_are_acknowledged_late),
        cmocka_unit_test(test_shard_end_waits_for_outputs_then_is_written_at_once),
        cmocka_unit_test(test_a_refused_write_stops_all_writes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
