/* policy and breaker: the error policy's pure decisions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "shard/breaker.h"
#include "shard/policy.h"

static policy_config_t policy(int64_t retries, int bisect)
{
    policy_config_t p;
    memset(&p, 0, sizeof p);
    p.retries = retries;
    p.isolate = bisect;
    p.backoff_ms = 100;
    p.max_backoff_ms = 1000;
    p.final = FINAL_SKIP;
    return p;
}

static policy_step_t next(const policy_config_t *p, size_t count, int64_t failures)
{
    policy_failure_t f = {count, failures, 1000, 2000};
    return policy_next(p, &f);
}

static void test_retries_then_isolation_then_final(void **state)
{
    policy_config_t p = policy(2, 1);
    assert_int_equal(next(&p, 100, 1), POLICY_RETRY);
    assert_int_equal(next(&p, 100, 2), POLICY_RETRY);
    assert_int_equal(next(&p, 100, 3), POLICY_SPLIT);   /* retries spent: narrow it down */
    /* a half starts with the retries spent: it is cut again at its first failure */
    int64_t half = policy_split_failures(&p, 50);
    assert_int_equal(next(&p, 50, half + 1), POLICY_SPLIT);
    /* a single record starts its own retries before anything is given up */
    int64_t one = policy_split_failures(&p, 1);
    assert_int_equal(one, 0);
    assert_int_equal(next(&p, 1, one + 1), POLICY_RETRY);
    assert_int_equal(next(&p, 1, one + 2), POLICY_RETRY);
    assert_int_equal(next(&p, 1, one + 3), POLICY_FINAL);
}

static void test_batch_mode_gives_the_whole_piece_up(void **state)
{
    policy_config_t p = policy(1, 0);
    assert_int_equal(next(&p, 100, 1), POLICY_RETRY);
    assert_int_equal(next(&p, 100, 2), POLICY_FINAL);
}

static void test_forever_never_gives_up(void **state)
{
    policy_config_t p = policy(-1, 1);
    assert_int_equal(next(&p, 100, 1000000), POLICY_RETRY);
    assert_int_equal(next(&p, 1, 1000000), POLICY_RETRY);
}

static void test_records_too_old_skip_the_retries(void **state)
{
    policy_config_t p = policy(5, 1);
    p.max_record_age_s = 10;
    policy_failure_t f = {8, 1, 0, 60 * 1000};
    assert_int_equal(policy_next(&p, &f), POLICY_SPLIT);
    f.count = 1;
    assert_int_equal(policy_next(&p, &f), POLICY_FINAL);
}

static void test_backoff_grows_within_its_bounds(void **state)
{
    policy_config_t p = policy(10, 1);
    unsigned seed = 7;
    for (int i = 0; i < 100; i++) {
        int64_t d1 = policy_backoff_ms(&p, 1, &seed), d3 = policy_backoff_ms(&p, 3, &seed);
        int64_t d9 = policy_backoff_ms(&p, 9, &seed);
        assert_true(d1 >= 50 && d1 <= 100);
        assert_true(d3 >= 200 && d3 <= 400);
        assert_true(d9 >= 500 && d9 <= 1000); /* capped at max_backoff_ms */
    }
}

static void test_backoff_of_zero_retries_at_once_and_huge_retries_stay_capped(void **state)
{
    (void)state;
    policy_config_t p = policy(10, 1);
    p.backoff_ms = 0;
    p.max_backoff_ms = 0;
    unsigned seed = 7;
    assert_int_equal(policy_backoff_ms(&p, 1, &seed), 0);
    assert_int_equal(policy_backoff_ms(&p, 50, &seed), 0);
    p = policy(10, 1);
    int64_t d = policy_backoff_ms(&p, INT64_MAX, &seed); /* a shard retrying forever */
    assert_true(d >= p.max_backoff_ms / 2 && d <= p.max_backoff_ms);
}

static void test_breaker_trips_when_most_of_a_full_window_fails(void **state)
{
    breaker_t b;
    breaker_init(&b, 100, 0.5);
    /* not before `window` records have ended */
    for (int i = 0; i < 99; i++) assert_int_equal(breaker_give_up(&b, 1), 0);
    assert_int_equal(breaker_give_up(&b, 1), 1);
    assert_int_equal(b.trips, 1);
    /* the records that would have tripped it are not counted */
    assert_true(breaker_share(&b) > 0.98);
    breaker_clear(&b);
}

static void test_breaker_lets_a_few_poison_records_through(void **state)
{
    breaker_t b;
    breaker_init(&b, 100, 0.5);
    for (int k = 0; k < 20; k++) {
        breaker_processed(&b, 249);
        assert_int_equal(breaker_give_up(&b, 1), 0);
    }
    breaker_clear(&b);
}

static void test_breaker_window_slides_and_resets(void **state)
{
    breaker_t b;
    breaker_init(&b, 10, 0.5);
    breaker_processed(&b, 10);
    for (int i = 0; i < 5; i++) assert_int_equal(breaker_give_up(&b, 1), 0); /* 5 of 10: not more than half */
    assert_int_equal(breaker_give_up(&b, 1), 1);                            /* 6 of 10 */
    breaker_reset(&b);
    assert_int_equal(breaker_give_up(&b, 1), 0);
    /* a piece larger than the window fills it at once */
    breaker_reset(&b);
    breaker_processed(&b, 10);
    assert_int_equal(breaker_give_up(&b, 500), 1);
    breaker_clear(&b);
}

static void test_breaker_off(void **state)
{
    breaker_t b;
    breaker_init(&b, 0, 0.5);
    for (int i = 0; i < 1000; i++) assert_int_equal(breaker_give_up(&b, 1), 0);
    breaker_clear(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retries_then_isolation_then_final),
        cmocka_unit_test(test_batch_mode_gives_the_whole_piece_up),
        cmocka_unit_test(test_forever_never_gives_up),
        cmocka_unit_test(test_records_too_old_skip_the_retries),
        cmocka_unit_test(test_backoff_grows_within_its_bounds),
        cmocka_unit_test(test_backoff_of_zero_retries_at_once_and_huge_retries_stay_capped),
        cmocka_unit_test(test_breaker_trips_when_most_of_a_full_window_fails),
        cmocka_unit_test(test_breaker_lets_a_few_poison_records_through),
        cmocka_unit_test(test_breaker_window_slides_and_resets),
        cmocka_unit_test(test_breaker_off),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
