/* gather: the batching window waits for min_batch_records or the window,
 * whichever comes first, and never holds retries or a shard's end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "shard/gather.h"

static void test_records_wait_until_the_window_has_passed_since_the_oldest_was_read(void **state)
{
    gather_view_t v = {.window_ms = 1000, .min_records = 500, .records = 10, .oldest_ms = 5000, .now_ms = 5200};
    assert_int_equal(gather_wait_ms(&v), 800);
    v.now_ms = 6000;
    assert_int_equal(gather_wait_ms(&v), 0);
    v.now_ms = 9000;
    assert_int_equal(gather_wait_ms(&v), 0);
}

static void test_enough_records_go_at_once(void **state)
{
    gather_view_t v = {.window_ms = 1000, .min_records = 500, .records = 500, .oldest_ms = 5000, .now_ms = 5000};
    assert_int_equal(gather_wait_ms(&v), 0);
}

static void test_retries_the_end_of_a_shard_and_no_window_never_wait(void **state)
{
    gather_view_t v = {.window_ms = 1000, .min_records = 500, .records = 1, .oldest_ms = 5000, .now_ms = 5000};
    v.retrying = 1;
    assert_int_equal(gather_wait_ms(&v), 0);
    v.retrying = 0;
    v.ended = 1;
    assert_int_equal(gather_wait_ms(&v), 0);
    v.ended = 0;
    v.window_ms = 0;
    assert_int_equal(gather_wait_ms(&v), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_records_wait_until_the_window_has_passed_since_the_oldest_was_read),
        cmocka_unit_test(test_enough_records_go_at_once),
        cmocka_unit_test(test_retries_the_end_of_a_shard_and_no_window_never_wait),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
