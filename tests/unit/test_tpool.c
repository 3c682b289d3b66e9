/* tpool: jobs run on the pool's threads and come back on the loop thread, in
 * order when the pool has one thread; a slow job never holds up the loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <ev.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "base/tpool.h"

typedef struct test_job {
    tpool_job_t job;          /* first: the pool's handle */
    int id;
    pthread_t ran_on, done_on;
    atomic_int *gate;         /* run waits while *gate is 0 (NULL: no wait) */
    int *order, *norder;      /* done appends id */
} test_job_t;

static void job_run(tpool_job_t *j)
{
    test_job_t *t = (test_job_t *)j;
    t->ran_on = pthread_self();
    while (t->gate && !atomic_load(t->gate)) usleep(1000);
}

static void job_done(tpool_job_t *j)
{
    test_job_t *t = (test_job_t *)j;
    t->done_on = pthread_self();
    t->order[(*t->norder)++] = t->id;
}

static void run_loop_until(struct ev_loop *loop, const int *norder, int want)
{
    for (int i = 0; i < 5000 && *norder < want; i++) {
        ev_run(loop, EVRUN_NOWAIT);
        usleep(1000);
    }
}

static void test_jobs_run_off_the_loop_and_come_back_on_it_in_order(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    tpool_t *p = tpool_new(loop, 1, "test");
    assert_non_null(p);
    int order[8], norder = 0;
    test_job_t jobs[8];
    for (int i = 0; i < 8; i++) {
        jobs[i] = (test_job_t){.job = {.run = job_run, .done = job_done}, .id = i, .order = order, .norder = &norder};
        tpool_submit(p, &jobs[i].job);
    }
    assert_int_equal(tpool_busy(p), 8);
    run_loop_until(loop, &norder, 8);
    assert_int_equal(norder, 8);
    assert_int_equal(tpool_busy(p), 0);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(order[i], i);
        assert_false(pthread_equal(jobs[i].ran_on, pthread_self()));
        assert_true(pthread_equal(jobs[i].done_on, pthread_self()));
    }
    tpool_free(p);
    ev_loop_destroy(loop);
}

/* A job that blocks keeps its thread only: the loop's timers still fire. */
static int ticks;
static void on_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)t;
    (void)revents;
    ticks++;
}

static void test_a_blocked_job_does_not_stall_the_loop(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    tpool_t *p = tpool_new(loop, 1, "test");
    atomic_int gate = 0;
    int order[1], norder = 0;
    test_job_t job = {.job = {.run = job_run, .done = job_done}, .gate = &gate, .order = order, .norder = &norder};
    tpool_submit(p, &job.job);
    ev_timer tick;
    ev_timer_init(&tick, on_tick, 0.005, 0.005);
    ev_timer_start(loop, &tick);
    ticks = 0;
    for (int i = 0; i < 2000 && ticks < 10; i++) ev_run(loop, EVRUN_ONCE);
    assert_true(ticks >= 10);
    assert_int_equal(norder, 0);            /* still blocked */
    assert_int_equal(tpool_busy(p), 1);
    atomic_store(&gate, 1);
    ev_timer_stop(loop, &tick);
    run_loop_until(loop, &norder, 1);
    assert_int_equal(norder, 1);
    tpool_free(p);
    ev_loop_destroy(loop);
}

/* The pool's watcher alone does not keep ev_run going (the worker's loop
 * ends when its own watchers do). */
static void test_an_idle_pool_does_not_keep_the_loop_running(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    tpool_t *p = tpool_new(loop, 2, "test");
    assert_int_equal(ev_run(loop, 0), 0); /* returns at once: nothing active */
    tpool_free(p);
    ev_loop_destroy(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jobs_run_off_the_loop_and_come_back_on_it_in_order),
        cmocka_unit_test(test_a_blocked_job_does_not_stall_the_loop),
        cmocka_unit_test(test_an_idle_pool_does_not_keep_the_loop_running),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
