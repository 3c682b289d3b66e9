/* The fetcher and its source's wake-ups (shard/fetch.c, source_watch): a
 * caught-up fetcher waits idle_ms between reads unless woken; a wake-up that
 * comes while a read is out makes it read again as soon as that read is
 * answered (the read may have been made before the records it announces);
 * and a source without wake-ups is polled every idle_ms, as before.
 *
 * The source is a fake whose answers the test delivers by hand, on virtual
 * time (vsched.h), so every interleaving here replays exactly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shard/fetch.h"
#include "vsched.h"

#define IDLE_MS 5000

typedef struct fake {
    source_t base;
    int can_watch;
    source_watch_t *watcher;
    /* the request out, answered by the test */
    source_iterator_cb it_cb;
    source_records_cb rec_cb;
    void *ud;
    int reads;                 /* get_records calls so far */
    int64_t next;              /* the next record's sequence number */
    int64_t last;              /* the last record in the shard */
    int64_t snap;              /* the last record the read out can see (its snapshot) */
    int delivered;             /* records given to the owner */
} fake_t;

static void fake_get_iterator(source_t *s, const char *stream, const char *shard, const source_position_t *pos,
                              source_iterator_cb cb, void *ud)
{
    fake_t *f = (fake_t *)s;
    f->it_cb = cb;
    f->ud = ud;
}

static void fake_get_records(source_t *s, const char *stream, const char *shard, const char *it, size_t max,
                             size_t max_bytes, source_records_cb cb, void *ud)
{
    fake_t *f = (fake_t *)s;
    f->rec_cb = cb;
    f->ud = ud;
    f->reads++;
    f->snap = f->last;
}

static int fake_watch(source_t *s, const char *stream, const char *shard, source_watch_t *w)
{
    fake_t *f = (fake_t *)s;
    if (!f->can_watch) return -1;
    f->watcher = w;
    w->active = 1;
    return 0;
}

static void fake_unwatch(source_t *s, source_watch_t *w)
{
    fake_t *f = (fake_t *)s;
    f->watcher = NULL;
    w->active = 0;
}

static const source_ops_t fake_ops = {
    .name = "fake", .get_iterator = fake_get_iterator, .get_records = fake_get_records,
    .watch = fake_watch, .unwatch = fake_unwatch,
};
static const source_ops_t fake_ops_no_watch = {
    .name = "fake", .get_iterator = fake_get_iterator, .get_records = fake_get_records,
};

/* Answers the iterator request out. */
static void answer_iterator(fake_t *f)
{
    source_iterator_cb cb = f->it_cb;
    assert_non_null(cb);
    f->it_cb = NULL;
    cb(f->ud, SOURCE_OK, NULL, strdup("it"));
}

/* Answers the read out with the records its snapshot holds. */
static void answer_read(fake_t *f)
{
    source_records_cb cb = f->rec_cb;
    assert_non_null(cb);
    f->rec_cb = NULL;
    batch_t *b = batch_new(16, 256);
    for (; f->next <= f->snap; f->next++) {
        char seq[24];
        snprintf(seq, sizeof seq, "%020lld", (long long)f->next);
        assert_int_equal(batch_add(&b, "x", 1, "k", 1, seq, strlen(seq), 0, 0), 0);
    }
    source_records_t res = {.batch = b, .next_iterator = strdup("it"), .millis_behind = 0, .bytes = b->arena_len};
    cb(f->ud, &res);
}

static void on_records(void *ud, batch_t *b)
{
    fake_t *f = ud;
    f->delivered += (int)b->count;
    batch_free(b);
}
static void on_ended(void *ud) {}
static void on_failed(void *ud, const char *why) { fail_msg("fetch failed: %s", why); }
static int room(void *ud) { return 1; }
static void on_settled(void *ud) {}

typedef struct rig {
    vsched_t vs;
    fake_t src;
    fetch_budget_t budget;
    fetcher_t f;
} rig_t;

/* A fetcher that has read the shard to its end (caught up) and waits idle. */
static void rig_start(rig_t *r, int can_watch)
{
    memset(r, 0, sizeof *r);
    vsched_init(&r->vs, 1000);
    r->src.base.ops = can_watch >= 0 ? &fake_ops : &fake_ops_no_watch;
    r->src.can_watch = can_watch > 0;
    r->src.next = 1;
    fetch_options_t opt = {.max_records = 100, .idle_ms = IDLE_MS, .retry_ms = 1000, .initial = POS_TRIM_HORIZON};
    fetch_handler_t h = {on_records, on_ended, on_failed, room, on_settled};
    fetch_init(&r->f, &r->vs.base, &r->src.base, &r->budget, "s", "shard-0", NULL, 0, &opt, &h, &r->src);
    fetch_poke(&r->f);
    answer_iterator(&r->src);
    answer_read(&r->src); /* nothing there yet */
    assert_int_equal(r->src.reads, 1);
    assert_true(fetch_caught_up(&r->f));
    assert_int_equal(r->f.state, FETCH_WAITING);
}

static void rig_free(rig_t *r)
{
    fetch_clear(&r->f);
    vsched_free(&r->vs);
}

static void wake(rig_t *r)
{
    assert_non_null(r->src.watcher);
    r->src.watcher->cb(r->src.watcher);
}

static void test_a_caught_up_fetcher_woken_reads_at_once_instead_of_after_idle_ms(void **state)
{
    rig_t r;
    rig_start(&r, 1);
    r.src.last = 3; /* a put */
    wake(&r);
    assert_int_equal(r.src.reads, 2); /* no time passed */
    answer_read(&r.src);
    assert_int_equal(r.src.delivered, 3);
    /* then idle again: nothing more is read until idle_ms passes or a wake-up */
    vsched_advance(&r.vs, IDLE_MS - 1);
    assert_int_equal(r.src.reads, 2);
    rig_free(&r);
}

static void test_a_wake_up_while_a_read_is_out_makes_another_read_after_it(void **state)
{
    rig_t r;
    rig_start(&r, 1);
    r.src.last = 1;
    wake(&r);                 /* read 2 goes out, its snapshot holds record 1 */
    assert_int_equal(r.src.reads, 2);
    r.src.last = 2;           /* record 2 commits after read 2 was made: */
    wake(&r);                 /* its wake-up comes while read 2 is out */
    assert_int_equal(r.src.reads, 2);
    answer_read(&r.src);      /* read 2 brings record 1 only, and looks caught up... */
    assert_int_equal(r.src.delivered, 1);
    assert_int_equal(r.src.reads, 3); /* ...yet the fetcher reads again at once */
    answer_read(&r.src);
    assert_int_equal(r.src.delivered, 2);
    vsched_advance(&r.vs, IDLE_MS - 1);
    assert_int_equal(r.src.reads, 3); /* caught up, no wake-up pending: idle */
    rig_free(&r);
}

static void test_wake_ups_never_replace_the_idle_poll(void **state)
{
    rig_t r;
    rig_start(&r, 1);
    r.src.last = 2; /* records whose wake-up was lost (a writer died after its commit) */
    vsched_advance(&r.vs, IDLE_MS);
    assert_int_equal(r.src.reads, 2);
    answer_read(&r.src);
    assert_int_equal(r.src.delivered, 2);
    rig_free(&r);
}

static void test_a_source_without_wake_ups_is_polled_every_idle_ms(void **state)
{
    for (int can = -1; can <= 0; can++) { /* no watch op; a watch that refuses */
        rig_t r;
        rig_start(&r, can);
        assert_null(r.src.watcher);
        r.src.last = 1;
        vsched_advance(&r.vs, IDLE_MS - 1);
        assert_int_equal(r.src.reads, 1);
        vsched_advance(&r.vs, 1);
        assert_int_equal(r.src.reads, 2);
        answer_read(&r.src);
        assert_int_equal(r.src.delivered, 1);
        rig_free(&r);
    }
}

static void test_a_stopped_fetcher_ignores_wake_ups_and_stops_watching_when_cleared(void **state)
{
    rig_t r;
    rig_start(&r, 1);
    fetch_stop(&r.f);
    r.src.last = 1;
    wake(&r);
    vsched_advance(&r.vs, 2 * IDLE_MS);
    assert_int_equal(r.src.reads, 1);
    fetch_clear(&r.f);
    assert_null(r.src.watcher);
    vsched_free(&r.vs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_caught_up_fetcher_woken_reads_at_once_instead_of_after_idle_ms),
        cmocka_unit_test(test_a_wake_up_while_a_read_is_out_makes_another_read_after_it),
        cmocka_unit_test(test_wake_ups_never_replace_the_idle_poll),
        cmocka_unit_test(test_a_source_without_wake_ups_is_polled_every_idle_ms),
        cmocka_unit_test(test_a_stopped_fetcher_ignores_wake_ups_and_stops_watching_when_cleared),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
