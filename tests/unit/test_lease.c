/* The SQLite lease store's conditional writes and the balancing target. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <ev.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lease/lease_plan.h"
#include "lease/lease_sqlite.h"

typedef struct result {
    int done;
    lease_status_t st;
    lease_t row;
    lease_list_t *list;
} result_t;

static struct ev_loop *loop;
static lease_store_t *store;
static char path[64];

static void on_write(void *ud, lease_status_t st, const char *msg, const lease_t *updated)
{
    result_t *r = ud;
    r->done = 1;
    r->st = st;
    if (updated) lease_copy(&r->row, updated);
}

static void on_list(void *ud, lease_status_t st, const char *msg, lease_list_t *l)
{
    result_t *r = ud;
    r->done = 1;
    r->st = st;
    r->list = l;
}

static void wait_for(result_t *r)
{
    for (int i = 0; i < 1000 && !r->done; i++) ev_run(loop, EVRUN_ONCE);
    assert_true(r->done);
}

static int setup(void **state)
{
    snprintf(path, sizeof path, "/tmp/shardrun-test-lease-XXXXXX");
    int fd = mkstemp(path);
    close(fd);
    loop = ev_loop_new(EVFLAG_AUTO);
    errbuf_t err;
    store = lease_sqlite_new(loop, path, "app", &err);
    return store ? 0 : -1;
}

static int teardown(void **state)
{
    lease_store_destroy(store);
    ev_loop_destroy(loop);
    unlink(path);
    return 0;
}

static lease_t new_lease(const char *key)
{
    lease_t l = {0};
    l.key = (char *)key;
    l.shard = (char *)key;
    l.stream = (char *)"s";
    l.checkpoint = (char *)"TRIM_HORIZON";
    return l;
}

static lease_status_t do_write(int op, const lease_t *l, const char *arg, result_t *r)
{
    memset(r, 0, sizeof *r);
    switch (op) {
    case 0: store->ops->create(store, l, on_write, r); break;
    case 1: store->ops->take(store, l, arg, on_write, r); break;
    case 2: store->ops->renew(store, l, on_write, r); break;
    case 3: store->ops->checkpoint(store, l, arg, 0, on_write, r); break;
    case 4: store->ops->release(store, l, on_write, r); break;
    case 5: store->ops->remove(store, l, on_write, r); break;
    }
    assert_false(r->done); /* callbacks never run inside the call */
    wait_for(r);
    return r->st;
}

static void test_every_write_is_conditional_on_owner_and_counter(void **state)
{
    result_t r, r2;
    lease_t l = new_lease("shard-1");
    assert_int_equal(do_write(0, &l, NULL, &r), LEASE_OK);
    assert_int_equal(do_write(0, &l, NULL, &r2), LEASE_CONFLICT); /* exists */
    lease_clear(&r2.row);
    /* take: owner NULL, counter 0 -> worker-a, counter 1 */
    assert_int_equal(do_write(1, &l, "worker-a", &r2), LEASE_OK);
    assert_string_equal(r2.row.owner, "worker-a");
    assert_int_equal(r2.row.counter, 1);
    /* a second taker with the stale view loses */
    result_t r3;
    assert_int_equal(do_write(1, &l, "worker-b", &r3), LEASE_CONFLICT);
    /* renew with the right view bumps the counter */
    result_t r4;
    assert_int_equal(do_write(2, &r2.row, NULL, &r4), LEASE_OK);
    assert_int_equal(r4.row.counter, 2);
    /* a checkpoint with the old counter (a paused owner) is refused */
    result_t r5;
    assert_int_equal(do_write(3, &r2.row, "00000000000000000005", &r5), LEASE_CONFLICT);
    result_t r6;
    assert_int_equal(do_write(3, &r4.row, "00000000000000000005", &r6), LEASE_OK);
    assert_int_equal(r6.row.counter, 3);
    /* release clears the owner; the old owner's renew now fails */
    result_t r7, r8;
    assert_int_equal(do_write(4, &r6.row, NULL, &r7), LEASE_OK);
    assert_null(r7.row.owner);
    assert_int_equal(do_write(2, &r6.row, NULL, &r8), LEASE_CONFLICT);
    /* the table holds exactly what was written */
    result_t lr = {0};
    store->ops->list(store, on_list, &lr);
    wait_for(&lr);
    assert_int_equal(lr.list->count, 1);
    lease_t *got = &lr.list->leases[0];
    assert_null(got->owner);
    assert_int_equal(got->counter, 4);
    assert_string_equal(got->checkpoint, "00000000000000000005");
    assert_int_equal(got->owner_switches, 0);
    assert_null(got->invalid);
    lease_list_free(lr.list);
    result_t r9, r10;
    assert_int_equal(do_write(5, &r6.row, NULL, &r9), LEASE_CONFLICT); /* stale counter */
    assert_int_equal(do_write(5, &r7.row, NULL, &r10), LEASE_OK);
    lease_clear(&r.row);
    lease_clear(&r2.row);
    lease_clear(&r4.row);
    lease_clear(&r6.row);
    lease_clear(&r7.row);
    lease_clear(&r10.row);
}

static void test_malformed_rows_are_reported_not_fatal(void **state)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "INSERT INTO app(leaseKey, leaseOwner, leaseCounter, checkpoint) VALUES"
                                  " ('bad-counter', NULL, 'x', 'TRIM_HORIZON'),"
                                  " ('bad-checkpoint', NULL, 1, 'yesterday'),"
                                  " ('bad-owner', X'0102', 1, 'TRIM_HORIZON');"
                                  "INSERT INTO app(leaseKey, leaseCounter, checkpoint, parentShardId) VALUES"
                                  " ('bad-parents', 1, 'TRIM_HORIZON', '{not json');",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    result_t lr = {0};
    store->ops->list(store, on_list, &lr);
    wait_for(&lr);
    assert_int_equal(lr.st, LEASE_OK);
    assert_int_equal(lr.list->count, 4);
    const char *want[][2] = {{"bad-checkpoint", "checkpoint"}, {"bad-counter", "leaseCounter"},
                             {"bad-owner", "leaseOwner"}, {"bad-parents", "parentShardId"}};
    for (int i = 0; i < 4; i++) {
        const lease_t *l = lease_list_find(lr.list, want[i][0]);
        assert_non_null(l);
        assert_non_null(l->invalid);
        if (!strstr(l->invalid, want[i][1])) fail_msg("%s: %s", want[i][0], l->invalid);
    }
    lease_list_free(lr.list);
}

static void test_an_older_table_gets_the_newer_columns(void **state)
{
    char old[64];
    snprintf(old, sizeof old, "/tmp/shardrun-test-lease-old-XXXXXX");
    int fd = mkstemp(old);
    close(fd);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(old, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE app(leaseKey TEXT PRIMARY KEY, leaseOwner TEXT, leaseCounter INTEGER,"
                                      " checkpoint TEXT); INSERT INTO app VALUES('shardId-1', NULL, 7, '42')",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    struct ev_loop *l2 = ev_loop_new(EVFLAG_AUTO);
    errbuf_t err;
    struct ev_loop *saved = loop;
    loop = l2;
    lease_store_t *s2 = lease_sqlite_new(l2, old, "app", &err);
    if (!s2) fail_msg("%s", err.msg);
    result_t lr = {0};
    s2->ops->list(s2, on_list, &lr);
    wait_for(&lr);
    assert_int_equal(lr.st, LEASE_OK);
    assert_int_equal(lr.list->count, 1);
    assert_null(lr.list->leases[0].invalid);
    assert_int_equal(lr.list->leases[0].counter, 7);
    assert_string_equal(lr.list->leases[0].checkpoint, "42");
    lease_list_free(lr.list);
    lease_store_destroy(s2);
    loop = saved;
    ev_loop_destroy(l2);
    unlink(old);
}

static void test_balance_target_is_ceiling_of_leases_over_workers(void **state)
{
    assert_int_equal(lease_plan_target(8, 3), 3);
    assert_int_equal(lease_plan_target(8, 4), 2);
    assert_int_equal(lease_plan_target(1, 3), 1);
    assert_int_equal(lease_plan_target(0, 3), 0);
    assert_int_equal(lease_plan_target(5, 0), 5);
}

typedef struct locked_run {
    sqlite3 *locker;
    int unlocked;
    double last_tick, max_gap;
    int a_done, a_busy;
    double b_answered, started;
} locked_run_t;

static locked_run_t LR;

static void on_tick(struct ev_loop *l, ev_timer *t, int revents)
{
    double now = ev_time();
    if (LR.last_tick > 0 && now - LR.last_tick > LR.max_gap) LR.max_gap = now - LR.last_tick;
    LR.last_tick = now;
}

static void on_unlock(struct ev_loop *l, ev_timer *t, int revents)
{
    assert_int_equal(sqlite3_exec(LR.locker, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    LR.unlocked = 1;
}

static void on_a_write(void *ud, lease_status_t st, const char *msg, const lease_t *updated)
{
    LR.a_done++;
    LR.a_busy += st == LEASE_ERETRY;
}

static void on_b_write(void *ud, lease_status_t st, const char *msg, const lease_t *updated)
{
    assert_int_equal(st, LEASE_OK);
    LR.b_answered = ev_time() - LR.started;
}

/* Issue 11 #10: another process holds the lease file locked for 2 s. The
 * store's writes wait for the lock on their own thread: the loop's timers
 * keep firing on time, and a second store (another file) answers at once. */
static void test_a_locked_lease_file_does_not_hold_up_the_loop(void **state)
{
    result_t r;
    lease_t l = new_lease("k");
    assert_int_equal(do_write(0, &l, NULL, &r), LEASE_OK);
    lease_clear(&r.row);
    char path2[64];
    snprintf(path2, sizeof path2, "/tmp/shardrun-test-lease-XXXXXX");
    int fd = mkstemp(path2);
    close(fd);
    errbuf_t err;
    lease_store_t *other = lease_sqlite_new(loop, path2, "app", &err);
    assert_non_null(other);
    memset(&LR, 0, sizeof LR);
    assert_int_equal(sqlite3_open(path, &LR.locker), SQLITE_OK);
    assert_int_equal(sqlite3_exec(LR.locker, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
    ev_timer tick, unlock;
    ev_timer_init(&tick, on_tick, 0.01, 0.01);
    ev_timer_init(&unlock, on_unlock, 2.0, 0.0);
    ev_timer_start(loop, &tick);
    ev_timer_start(loop, &unlock);
    ev_now_update(loop);
    LR.started = ev_time();
    for (int i = 0; i < 8; i++) store->ops->renew(store, &l, on_a_write, NULL); /* each waits 250 ms for the lock */
    lease_t l2 = new_lease("k2");
    other->ops->create(other, &l2, on_b_write, NULL);
    while (!(LR.unlocked && LR.a_done == 8)) ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &tick);
    ev_timer_stop(loop, &unlock);
    assert_true(LR.a_busy > 0);              /* the lock was really in the way */
    assert_true(LR.b_answered > 0 && LR.b_answered < 0.2);
    assert_true(LR.max_gap < 0.15);          /* on the loop, each wait was 250 ms without a tick */
    sqlite3_close(LR.locker);
    lease_store_destroy(other);
    unlink(path2);
}

/* Asks the store to create n leases keyed <prefix>00, <prefix>01, ... at
 * once (keys and ls keep the keys and leases alive until answered); each
 * answer goes to r[i]. */
static void ask_creates(int n, const char *prefix, char keys[][16], lease_t *ls, result_t *r)
{
    for (int i = 0; i < n; i++) {
        snprintf(keys[i], sizeof keys[i], "%s%02d", prefix, i);
        ls[i] = new_lease(keys[i]);
        memset(&r[i], 0, sizeof r[i]);
        store->ops->create(store, &ls[i], on_write, &r[i]);
    }
}

/* Issue 18: requests asked while the store's thread is busy run together in
 * one transaction (group commit); each keeps its own condition and answer,
 * in the order asked, and a list asked after writes sees them. */
static void test_writes_asked_together_commit_together_each_with_its_own_answer(void **state)
{
    enum { N = 40 };
    result_t created[N], dup, taken[N], stale[N], lr = {0};
    lease_t ls[N];
    char keys[N][16];
    ask_creates(N, "k", keys, ls, created);
    memset(&dup, 0, sizeof dup);
    store->ops->create(store, &ls[3], on_write, &dup); /* in the same batch as the first create of k03 */
    for (int i = 0; i < N; i++) wait_for(&created[i]);
    wait_for(&dup);
    for (int i = 0; i < N; i++) assert_int_equal(created[i].st, LEASE_OK);
    assert_int_equal(dup.st, LEASE_CONFLICT);
    /* takes with the right view and, right behind each, one with the same (now stale) view */
    for (int i = 0; i < N; i++) {
        memset(&taken[i], 0, sizeof taken[i]);
        memset(&stale[i], 0, sizeof stale[i]);
        store->ops->take(store, &ls[i], "a", on_write, &taken[i]);
        store->ops->take(store, &ls[i], "b", on_write, &stale[i]);
    }
    store->ops->list(store, on_list, &lr);
    wait_for(&lr);
    for (int i = 0; i < N; i++) {
        assert_true(taken[i].done && stale[i].done); /* answered before the list asked after them */
        assert_int_equal(taken[i].st, LEASE_OK);
        assert_int_equal(stale[i].st, LEASE_CONFLICT);
        assert_int_equal(taken[i].row.counter, 1);
    }
    assert_int_equal(lr.list->count, N);
    for (size_t i = 0; i < lr.list->count; i++) {
        assert_string_equal(lr.list->leases[i].owner, "a");
        assert_int_equal(lr.list->leases[i].counter, 1);
    }
    lease_list_free(lr.list);
    for (int i = 0; i < N; i++) {
        lease_clear(&created[i].row);
        lease_clear(&taken[i].row);
    }
}

/* A batch that cannot take the file's write lock writes nothing and answers
 * every request in it LEASE_ERETRY (the coordinator tries again). */
static void test_a_batch_that_cannot_begin_writes_nothing_and_answers_every_request_retry(void **state)
{
    sqlite3 *locker = NULL;
    assert_int_equal(sqlite3_open(path, &locker), SQLITE_OK);
    assert_int_equal(sqlite3_exec(locker, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
    enum { N = 5 };
    result_t r[N];
    lease_t ls[N];
    char keys[N][16];
    ask_creates(N, "x", keys, ls, r);
    for (int i = 0; i < N; i++) wait_for(&r[i]);
    for (int i = 0; i < N; i++) assert_int_equal(r[i].st, LEASE_ERETRY);
    assert_int_equal(sqlite3_exec(locker, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(locker);
    result_t lr = {0};
    store->ops->list(store, on_list, &lr);
    wait_for(&lr);
    assert_int_equal(lr.st, LEASE_OK);
    assert_int_equal(lr.list->count, 0);
    lease_list_free(lr.list);
}

static lease_t row_written(const lease_t *l, lease_write_t w)
{
    lease_t out;
    lease_apply_write(l, &w, &out);
    return out;
}

static void test_each_write_names_the_row_as_written_once_for_every_store(void **state)
{
    lease_t l = new_lease("k");
    l.owner = (char *)"a";
    l.pending_owner = (char *)"b";
    l.counter = 7;
    l.owner_switches = 2;
    lease_t t = row_written(&l, (lease_write_t){.kind = LEASE_WRITE_TAKE, .worker = "c"});
    assert_string_equal(t.owner, "c");
    assert_null(t.pending_owner);
    assert_int_equal(t.counter, 8);
    assert_int_equal(t.owner_switches, 3);
    lease_t cp = row_written(&l, (lease_write_t){.kind = LEASE_WRITE_CHECKPOINT, .seq = "49", .sub = 3});
    assert_string_equal(cp.checkpoint, "49");
    assert_int_equal(cp.checkpoint_sub, 3);
    assert_int_equal(cp.owner_switches, 0);
    assert_int_equal(cp.counter, 8);
    assert_string_equal(cp.owner, "a");
    lease_t rel = row_written(&l, (lease_write_t){.kind = LEASE_WRITE_RELEASE});
    assert_null(rel.owner);
    assert_null(rel.pending_owner);
    assert_int_equal(rel.counter, 8);
    lease_t ho = row_written(&l, (lease_write_t){.kind = LEASE_WRITE_HANDOFF});
    assert_string_equal(ho.owner, "b");
    assert_null(ho.pending_owner);
    assert_int_equal(ho.counter, 8);
    assert_int_equal(ho.owner_switches, 3);
    lease_t rq = row_written(&rel, (lease_write_t){.kind = LEASE_WRITE_REQUEST_HANDOFF, .worker = "d"});
    assert_string_equal(rq.pending_owner, "d");
    assert_int_equal(rq.counter, 8); /* asking does not move the counter: the owner keeps renewing */
    lease_t cc = row_written(&l, (lease_write_t){.kind = LEASE_WRITE_CANCEL_HANDOFF, .worker = "b"});
    assert_null(cc.pending_owner);
    assert_int_equal(cc.counter, 7);
    lease_t rn = row_written(&l, (lease_write_t){.kind = LEASE_WRITE_RENEW});
    assert_int_equal(rn.counter, 8);
    assert_string_equal(rn.owner, "a");

    /* the conditions: owner and counter as the writer saw them */
    assert_true(lease_write_allowed(&l, &l, &(lease_write_t){.kind = LEASE_WRITE_RENEW}));
    assert_false(lease_write_allowed(&rn, &l, &(lease_write_t){.kind = LEASE_WRITE_RENEW}));
    assert_false(lease_write_allowed(&t, &l, &(lease_write_t){.kind = LEASE_WRITE_CHECKPOINT}));
    assert_false(lease_write_allowed(&l, &l, &(lease_write_t){.kind = LEASE_WRITE_REQUEST_HANDOFF})); /* one pending */
    assert_true(lease_write_allowed(&rel, &rel, &(lease_write_t){.kind = LEASE_WRITE_REQUEST_HANDOFF}));
    assert_true(lease_write_allowed(&l, &l, &(lease_write_t){.kind = LEASE_WRITE_HANDOFF}));
    assert_false(lease_write_allowed(&cc, &l, &(lease_write_t){.kind = LEASE_WRITE_HANDOFF})); /* withdrawn */
    assert_false(lease_write_allowed(&l, &l, &(lease_write_t){.kind = LEASE_WRITE_CANCEL_HANDOFF, .worker = "x"}));
    assert_true(lease_write_allowed(NULL, &l, &(lease_write_t){.kind = LEASE_WRITE_CREATE}));
    assert_false(lease_write_allowed(&l, &l, &(lease_write_t){.kind = LEASE_WRITE_CREATE}));
    assert_false(lease_write_allowed(NULL, &l, &(lease_write_t){.kind = LEASE_WRITE_RENEW}));
    lease_t *all[] = {&t, &cp, &rel, &ho, &rq, &cc, &rn};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) lease_clear(all[i]);
}

static void test_a_sorted_list_finds_every_key_and_misses_absent_ones(void **state)
{
    lease_list_t *l = calloc(1, sizeof *l);
    l->count = 1000;
    l->leases = calloc(l->count, sizeof *l->leases);
    char key[32];
    for (size_t i = 0; i < l->count; i++) {
        snprintf(key, sizeof key, "shardId-%06zu", (i * 7919) % l->count); /* scrambled order */
        l->leases[i].key = strdup(key);
    }
    l->leases[500].key[0] = 'Z'; /* one key outside the pattern */
    free(l->leases[3].key);
    l->leases[3].key = NULL; /* an invalid row without a key sorts first */
    lease_list_sort(l);
    assert_null(l->leases[0].key);
    for (size_t i = 2; i < l->count; i++) assert_true(strcmp(l->leases[i - 1].key, l->leases[i].key) < 0);
    for (size_t i = 1; i < l->count; i++) assert_ptr_equal(lease_list_find(l, l->leases[i].key), &l->leases[i]);
    assert_null(lease_list_find(l, "shardId-x"));
    assert_null(lease_list_find(l, ""));
    lease_list_free(l);
}

static void test_the_dead_owners_are_found_by_binary_search(void **state)
{
    (void)state;
    lease_list_t *l = calloc(1, sizeof *l);
    const char *dead[] = {"host-a:1:aa", "host-b:2:bb", "host-c:3:cc", "host-d:4:dd", "host-e:5:ee"};
    l->ndead = sizeof dead / sizeof *dead;
    l->dead = calloc(l->ndead, sizeof *l->dead);
    for (size_t i = 0; i < l->ndead; i++) l->dead[i] = strdup(dead[i]);
    for (size_t i = 0; i < l->ndead; i++) assert_true(lease_list_owner_dead(l, dead[i]));
    assert_false(lease_list_owner_dead(l, "host-0:0:00")); /* before the first */
    assert_false(lease_list_owner_dead(l, "host-bb"));     /* between two */
    assert_false(lease_list_owner_dead(l, "host-z:9:zz")); /* after the last */
    assert_false(lease_list_owner_dead(l, NULL));          /* an unowned row */
    assert_false(lease_list_owner_dead(NULL, "host-a:1:aa"));
    lease_list_free(l);
}

static void test_parent_ids_parse_strictly(void **state)
{
    char **ids;
    size_t n;
    assert_int_equal(lease_sqlite_parse_ids("[\"a\",\"b\"]", &ids, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(ids[1], "b");
    free(ids[0]);
    free(ids[1]);
    free(ids);
    assert_int_equal(lease_sqlite_parse_ids("[1]", &ids, &n), -1);
    assert_int_equal(lease_sqlite_parse_ids("{}", &ids, &n), -1);
    assert_int_equal(lease_sqlite_parse_ids(NULL, &ids, &n), 0);
    assert_int_equal(n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_every_write_is_conditional_on_owner_and_counter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_rows_are_reported_not_fatal, setup, teardown),
        cmocka_unit_test(test_an_older_table_gets_the_newer_columns),
        cmocka_unit_test(test_balance_target_is_ceiling_of_leases_over_workers),
        cmocka_unit_test(test_parent_ids_parse_strictly),
        cmocka_unit_test(test_each_write_names_the_row_as_written_once_for_every_store),
        cmocka_unit_test(test_a_sorted_list_finds_every_key_and_misses_absent_ones),
        cmocka_unit_test(test_the_dead_owners_are_found_by_binary_search),
        cmocka_unit_test_setup_teardown(test_a_locked_lease_file_does_not_hold_up_the_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writes_asked_together_commit_together_each_with_its_own_answer, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_batch_that_cannot_begin_writes_nothing_and_answers_every_request_retry,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
