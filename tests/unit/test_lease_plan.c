/* The lease planner: expiry by the local clock, balance, max_steal, the
 * handoff request's whole life, takers racing, invalid and finished rows,
 * eligibility, and takers that do not collide. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lease/lease_plan.h"

#define D 10000

typedef struct world {
    lease_list_t all;
    lease_obs_set_t obs;
    lease_local_t local[32];
    size_t nlocal;
    const char *ineligible;       /* a key eligible() refuses */
    lease_plan_t plan;
} world_t;

static void add(world_t *w, const char *key, const char *owner, int64_t counter)
{
    w->all.leases = realloc(w->all.leases, (w->all.count + 1) * sizeof *w->all.leases);
    lease_t *l = &w->all.leases[w->all.count++];
    memset(l, 0, sizeof *l);
    l->key = strdup(key);
    l->shard = strdup(key);
    l->stream = strdup("s");
    l->owner = owner ? strdup(owner) : NULL;
    l->counter = counter;
    l->checkpoint = strdup("TRIM_HORIZON");
    lease_list_sort(&w->all);
}

static lease_t *row(world_t *w, const char *key)
{
    return (lease_t *)lease_list_find(&w->all, key);
}

static void set(char **field, const char *v)
{
    free(*field);
    *field = v ? strdup(v) : NULL;
}

/* Every live row's counter moves (its owner renews), except `dead`'s. */
static void renew_all_but(world_t *w, const char *dead)
{
    for (size_t i = 0; i < w->all.count; i++) {
        lease_t *l = &w->all.leases[i];
        if (l->owner && (!dead || strcmp(l->owner, dead))) l->counter++;
    }
}

static int eligible(void *ud, const lease_t *l, const lease_list_t *all)
{
    world_t *w = ud;
    return !w->ineligible || strcmp(l->key, w->ineligible);
}

static void local(world_t *w, const char *key, lease_local_kind_t kind, const char *asked, int64_t asked_ms)
{
    w->local[w->nlocal++] = (lease_local_t){key, kind, NULL, asked, asked_ms};
}

/* Observes the table at `now` and plans for worker `me`. */
static const lease_plan_t *plan_at(world_t *w, const char *me, int64_t now, int64_t max_steal, int taking)
{
    lease_obs_update(&w->obs, &w->all, now);
    lease_plan_input_t in = {me, now, D, max_steal, taking, &w->all, &w->obs, w->local, w->nlocal, eligible, w};
    lease_plan_run(&in, &w->plan);
    return &w->plan;
}

/* The same, for another worker's planner on the same table and observations:
 * it holds the rows in its name. */
static void plan_other(world_t *w, const char *me, int64_t now, int64_t max_steal, lease_plan_t *out)
{
    lease_local_t *mine = calloc(w->all.count + 1, sizeof *mine);
    size_t n = 0;
    for (size_t i = 0; i < w->all.count; i++)
        if (w->all.leases[i].owner && !strcmp(w->all.leases[i].owner, me))
            mine[n++] = (lease_local_t){w->all.leases[i].key, LEASE_LOCAL_OWNED, NULL, NULL, 0};
    lease_plan_input_t in = {me, now, D, max_steal, 1, &w->all, &w->obs, mine, n, eligible, w};
    lease_plan_run(&in, out);
    free(mine);
}

static size_t count(const lease_plan_t *p, lease_plan_kind_t kind)
{
    size_t n = 0;
    for (size_t i = 0; i < p->n; i++) n += p->v[i].kind == kind;
    return n;
}

static int has(const lease_plan_t *p, lease_plan_kind_t kind, const char *key)
{
    for (size_t i = 0; i < p->n; i++)
        if (p->v[i].kind == kind && !strcmp(p->v[i].key, key)) return 1;
    return 0;
}

static void clear(world_t *w)
{
    for (size_t i = 0; i < w->all.count; i++) lease_clear(&w->all.leases[i]);
    free(w->all.leases);
    lease_obs_clear(&w->obs);
    lease_plan_free(&w->plan);
}

static void test_a_lease_expires_by_the_local_clock_lease_duration_after_its_counter_was_first_seen(void **state)
{
    world_t w = {0};
    add(&w, "s1", "B", 5);
    assert_int_equal(count(plan_at(&w, "A", 1000, 1, 1), LEASE_PLAN_TAKE), 0);
    /* B's clock or the row's timestamps do not matter: only when A first saw counter 5 */
    assert_int_equal(count(plan_at(&w, "A", 1000 + D - 1, 1, 1), LEASE_PLAN_TAKE), 0);
    assert_true(has(plan_at(&w, "A", 1000 + D, 1, 1), LEASE_PLAN_TAKE, "s1"));
    /* a counter that moves restarts the watch */
    row(&w, "s1")->counter = 6;
    assert_int_equal(count(plan_at(&w, "A", 1000 + D + 1, 1, 1), LEASE_PLAN_TAKE), 0);
    assert_int_equal(count(plan_at(&w, "A", 1000 + 2 * D, 1, 1), LEASE_PLAN_TAKE), 0);
    assert_true(has(plan_at(&w, "A", 1001 + 2 * D, 1, 1), LEASE_PLAN_TAKE, "s1"));
    const lease_obs_t *o = lease_obs_find(&w.obs, "s1");
    assert_non_null(o);
    assert_true(o->moved);
    assert_false(lease_obs_alive(o, 1001 + 2 * D, D));
    clear(&w);
}

static void test_balance_aims_at_the_ceiling_of_leases_over_live_workers(void **state)
{
    world_t w = {0};
    for (int i = 0; i < 8; i++) {
        char key[16];
        snprintf(key, sizeof key, "s%d", i);
        add(&w, key, i < 4 ? "B" : "C", 1);
    }
    const lease_plan_t *p = plan_at(&w, "A", 0, 1, 1);
    assert_int_equal(p->eligible, 8);
    assert_int_equal(p->workers, 3);
    assert_int_equal(p->target, 3);
    assert_int_equal(count(p, LEASE_PLAN_ASK), 1);   /* max_steal = 1, from the most loaded (B: 4 > 3) */
    assert_true(has(p, LEASE_PLAN_ASK, "s0"));
    assert_int_equal(count(p, LEASE_PLAN_TAKE), 0);  /* nothing expired */
    /* at target with one lease missing, nobody is asked: no back and forth */
    set(&row(&w, "s0")->owner, "A");
    set(&row(&w, "s4")->owner, "A");
    local(&w, "s0", LEASE_LOCAL_OWNED, NULL, 0);
    local(&w, "s4", LEASE_LOCAL_OWNED, NULL, 0);
    p = plan_at(&w, "A", 1, 1, 1);                   /* A 2, B 3, C 3: target 3 */
    assert_int_equal(p->mine, 2);
    assert_int_equal(p->n, 0);
    clear(&w);
}

static void test_max_steal_bounds_the_requests_outstanding_not_per_run(void **state)
{
    world_t w = {0};
    for (int i = 0; i < 6; i++) {
        char key[16];
        snprintf(key, sizeof key, "s%d", i);
        add(&w, key, "B", 1);
    }
    const lease_plan_t *p = plan_at(&w, "A", 0, 2, 1);   /* target 3, want 3, max_steal 2 */
    assert_int_equal(count(p, LEASE_PLAN_ASK), 2);
    /* one request pending (the owner has not answered): one more at most */
    set(&row(&w, "s0")->pending_owner, "A");
    local(&w, "s0", LEASE_LOCAL_ASKED, "B", 0);
    p = plan_at(&w, "A", 100, 2, 1);
    assert_int_equal(count(p, LEASE_PLAN_ASK), 1);
    assert_false(has(p, LEASE_PLAN_ASK, "s0"));
    /* two pending: none, however many runs */
    set(&row(&w, "s1")->pending_owner, "A");
    local(&w, "s1", LEASE_LOCAL_ASKED, "B", 100);
    assert_int_equal(count(plan_at(&w, "A", 200, 2, 1), LEASE_PLAN_ASK), 0);
    assert_int_equal(count(plan_at(&w, "A", 300, 2, 1), LEASE_PLAN_ASK), 0);
    /* max_steal 0: never asks */
    world_t z = {0};
    add(&z, "s0", "B", 1);
    add(&z, "s1", "B", 1);
    assert_int_equal(count(plan_at(&z, "A", 0, 0, 1), LEASE_PLAN_ASK), 0);
    clear(&z);
    clear(&w);
}

static void test_a_handoff_request_is_adopted_forgotten_withdrawn_or_turned_into_a_steal(void **state)
{
    world_t w = {0};
    add(&w, "s1", "B", 3);
    add(&w, "s2", "B", 3);
    add(&w, "s3", "B", 3);
    add(&w, "s4", "B", 3);
    set(&row(&w, "s1")->pending_owner, "A");
    local(&w, "s1", LEASE_LOCAL_ASKED, "B", 0);
    const lease_plan_t *p = plan_at(&w, "A", 10, 1, 1);
    assert_int_equal(p->n, 0);                          /* waiting for B's answer */
    /* answered: the row names A */
    set(&row(&w, "s1")->owner, "A");
    set(&row(&w, "s1")->pending_owner, NULL);
    row(&w, "s1")->counter = 4;
    assert_true(has(plan_at(&w, "A", 20, 1, 1), LEASE_PLAN_ADOPT, "s1"));
    /* handed over after A stopped taking: released, not left in A's name */
    assert_true(has(plan_at(&w, "A", 30, 1, 0), LEASE_PLAN_RELEASE, "s1"));
    /* taken by someone else (C stole it): forgotten */
    set(&row(&w, "s1")->owner, "C");
    assert_true(has(plan_at(&w, "A", 40, 1, 1), LEASE_PLAN_FORGET, "s1"));
    /* refused (our pendingOwner is gone): forgotten */
    set(&row(&w, "s1")->owner, "B");
    assert_true(has(plan_at(&w, "A", 50, 1, 1), LEASE_PLAN_FORGET, "s1"));
    /* no answer within lease_duration: a plain steal, of the row as scanned */
    set(&row(&w, "s1")->pending_owner, "A");
    row(&w, "s1")->counter = 9;
    assert_false(has(plan_at(&w, "A", D, 1, 1), LEASE_PLAN_STEAL, "s1"));
    p = plan_at(&w, "A", D + 1, 1, 1);
    assert_true(has(p, LEASE_PLAN_STEAL, "s1"));
    assert_int_equal(p->v[0].row->counter, 9);
    /* stopping: withdrawn */
    assert_true(has(plan_at(&w, "A", 60, 1, 0), LEASE_PLAN_WITHDRAW, "s1"));
    /* the row vanished (deleted): forgotten */
    w.nlocal = 0;
    local(&w, "gone", LEASE_LOCAL_ASKED, "B", 0);
    assert_true(has(plan_at(&w, "A", 70, 1, 1), LEASE_PLAN_FORGET, "gone"));
    clear(&w);
}

static void test_a_request_is_withdrawn_when_expired_leases_gave_enough(void **state)
{
    world_t w = {0};
    add(&w, "s1", "B", 3);
    add(&w, "s2", "B", 3);
    add(&w, "s3", "X", 3);
    add(&w, "s4", "X", 3);
    set(&row(&w, "s1")->pending_owner, "A");
    local(&w, "s1", LEASE_LOCAL_ASKED, "B", 0);
    plan_at(&w, "A", 0, 1, 1);
    renew_all_but(&w, "X");                             /* X died */
    /* A holds s3 and s4 now (taken as expired); with s1 asked it would hold 3 of 4 */
    set(&row(&w, "s3")->owner, "A");
    set(&row(&w, "s4")->owner, "A");
    local(&w, "s3", LEASE_LOCAL_OWNED, NULL, 0);
    local(&w, "s4", LEASE_LOCAL_OWNED, NULL, 0);
    const lease_plan_t *p = plan_at(&w, "A", 100, 1, 1);
    assert_int_equal(p->target, 2);
    assert_true(has(p, LEASE_PLAN_WITHDRAW, "s1"));
    clear(&w);
}

static void test_an_owner_is_told_of_a_request_once_and_of_its_withdrawal(void **state)
{
    world_t w = {0};
    add(&w, "s1", "A", 3);
    set(&row(&w, "s1")->pending_owner, "B");
    local(&w, "s1", LEASE_LOCAL_OWNED, NULL, 0);
    assert_true(has(plan_at(&w, "A", 0, 1, 1), LEASE_PLAN_TELL, "s1"));
    w.local[0].told_to = "B";
    assert_int_equal(plan_at(&w, "A", 1, 1, 1)->n, 0); /* told already */
    set(&row(&w, "s1")->pending_owner, NULL);         /* B withdrew */
    assert_true(has(plan_at(&w, "A", 2, 1, 1), LEASE_PLAN_UNTELL, "s1"));
    set(&row(&w, "s1")->pending_owner, "C");          /* another asks meanwhile */
    assert_true(has(plan_at(&w, "A", 3, 1, 1), LEASE_PLAN_TELL, "s1"));
    clear(&w);
}

static void test_a_row_in_this_workers_name_that_it_does_not_hold_is_released(void **state)
{
    world_t w = {0};
    add(&w, "s1", "A", 3);     /* e.g. a take answered with a timeout, though written */
    add(&w, "s2", "A", 3);     /* being taken right now: left alone */
    local(&w, "s2", LEASE_LOCAL_TAKING, NULL, 0);
    const lease_plan_t *p = plan_at(&w, "A", 0, 1, 1);
    assert_true(has(p, LEASE_PLAN_RELEASE, "s1"));
    assert_false(has(p, LEASE_PLAN_RELEASE, "s2"));
    assert_false(has(p, LEASE_PLAN_TAKE, "s1"));
    clear(&w);
}

/* A handoff request in this worker's name that it does not wait for (it
 * withdrew and the withdrawal failed, or its request was answered with an
 * error although written) is withdrawn: left there, it would be granted to
 * a worker that no longer wants the lease (or is gone). Taking or not. */
static void test_a_handoff_request_in_this_workers_name_that_it_does_not_wait_for_is_withdrawn(void **state)
{
    world_t w = {0};
    add(&w, "s1", "B", 3);
    set(&row(&w, "s1")->pending_owner, "A");
    add(&w, "s2", "B", 3);
    set(&row(&w, "s2")->pending_owner, "A");  /* asked, and waited for: left alone */
    local(&w, "s2", LEASE_LOCAL_ASKED, "B", 0);
    add(&w, "s3", "B", 3);
    set(&row(&w, "s3")->pending_owner, "C");  /* another's request */
    const lease_plan_t *p = plan_at(&w, "A", 0, 1, 0);
    assert_true(has(p, LEASE_PLAN_CANCEL, "s1"));
    assert_false(has(p, LEASE_PLAN_CANCEL, "s2"));
    assert_false(has(p, LEASE_PLAN_CANCEL, "s3"));
    assert_true(has(plan_at(&w, "A", 1, 1, 1), LEASE_PLAN_CANCEL, "s1"));
    clear(&w);
}

/* Two takers see the same unowned lease and both try: the conditional take
 * lets exactly one win; the loser's next run takes nothing. */
static void test_two_takers_racing_for_one_lease_one_wins_and_the_other_stays_off(void **state)
{
    world_t w = {0};
    add(&w, "s1", NULL, 0);
    lease_plan_t pb = {0};
    const lease_plan_t *pa = plan_at(&w, "A", 0, 1, 1);
    plan_other(&w, "B", 0, 1, &pb);
    assert_true(has(pa, LEASE_PLAN_TAKE, "s1"));
    assert_true(has(&pb, LEASE_PLAN_TAKE, "s1"));
    /* the store carries A's take out first */
    lease_write_t ta = {.kind = LEASE_WRITE_TAKE, .worker = "A"}, tb = {.kind = LEASE_WRITE_TAKE, .worker = "B"};
    lease_t *stored = row(&w, "s1"), after;
    assert_true(lease_write_allowed(stored, pa->v[0].row, &ta));
    lease_apply_write(pa->v[0].row, &ta, &after);
    assert_false(lease_write_allowed(&after, pb.v[0].row, &tb));  /* B's view is stale: LEASE_CONFLICT */
    lease_clear(stored);
    *stored = after;
    lease_plan_free(&pb);
    plan_other(&w, "B", 100, 1, &pb);
    assert_int_equal(pb.n, 0);          /* A is at the target of 1; nothing expired */
    lease_plan_free(&pb);
    clear(&w);
}

static void test_invalid_rows_are_reported_once_per_version_and_never_taken(void **state)
{
    world_t w = {0};
    add(&w, "bad", NULL, 0);
    add(&w, "mine-but-bad", "A", 0);
    row(&w, "bad")->invalid = strdup("leaseCounter is missing or not a number");
    row(&w, "mine-but-bad")->invalid = strdup("checkpoint is missing");
    const lease_plan_t *p = plan_at(&w, "A", 0, 1, 1);
    assert_int_equal(count(p, LEASE_PLAN_REPORT_INVALID), 2);
    assert_int_equal(p->n, 2);          /* no take, no release */
    assert_int_equal(p->eligible, 0);
    for (size_t i = 0; i < w.obs.n; i++) w.obs.v[i].reported = 1; /* what the coordinator records */
    assert_int_equal(plan_at(&w, "A", D * 2, 1, 1)->n, 0);
    row(&w, "bad")->counter = 1;        /* a new version is reported again */
    p = plan_at(&w, "A", D * 3, 1, 1);
    assert_int_equal(p->n, 1);
    assert_true(has(p, LEASE_PLAN_REPORT_INVALID, "bad"));
    clear(&w);
}

static void test_finished_and_ineligible_rows_are_neither_taken_nor_counted(void **state)
{
    world_t w = {0};
    add(&w, "done", NULL, 7);
    set(&row(&w, "done")->checkpoint, "SHARD_END");
    add(&w, "child", NULL, 0);          /* e.g. its parent is not finished */
    add(&w, "open", NULL, 0);
    w.ineligible = "child";
    const lease_plan_t *p = plan_at(&w, "A", 0, 1, 1);
    assert_int_equal(p->eligible, 1);
    assert_int_equal(p->n, 1);
    assert_true(has(p, LEASE_PLAN_TAKE, "open"));
    clear(&w);
}

/* Issue 18: a dead worker's leases, seen expired by three live workers at
 * once, are all taken in one taker run, each by one worker. */
static void test_three_takers_on_the_same_scan_pick_disjoint_leases_and_take_them_all(void **state)
{
    /* A, B, C, dead X (peers know a worker by the leases it holds: each holds one at least) */
    const int owned[][4] = {{2, 2, 2, 3}, {1, 2, 3, 3}, {3, 1, 2, 3}};
    const char *ids[] = {"A", "B", "C", "X"};
    for (size_t variant = 0; variant < 3; variant++) {
        world_t w = {0};
        int n = 0;
        for (int who = 0; who < 4; who++) {
            for (int k = 0; k < owned[variant][who]; k++) {
                char key[32];
                snprintf(key, sizeof key, "shard-%02d", n++);
                add(&w, key, ids[who], 1);
            }
        }
        lease_obs_update(&w.obs, &w.all, 0);
        renew_all_but(&w, "X");
        lease_obs_update(&w.obs, &w.all, D);   /* the same observations for all three */
        char taken[32] = {0};
        size_t total = 0;
        for (int who = 0; who < 3; who++) {
            lease_plan_t p = {0};
            plan_other(&w, ids[who], D, 1, &p);
            assert_int_equal(p.target, 3);
            for (size_t i = 0; i < p.n; i++) {
                assert_int_equal(p.v[i].kind, LEASE_PLAN_TAKE);
                assert_string_equal(p.v[i].row->owner, "X");
                size_t idx = (size_t)(p.v[i].row - w.all.leases);
                assert_int_equal(taken[idx], 0);   /* nobody else chose it */
                taken[idx] = 1;
                total++;
            }
            lease_plan_free(&p);
        }
        assert_int_equal(total, 3);
        clear(&w);
    }
}

/* Issue 18: the store knows a worker on this machine dead (its kernel lock
 * is free): its leases are taken at the first scan, long before its counters
 * could look expired, by live workers that do not collide; a worker only
 * paused is not in the list and keeps its leases until the clock says so. */
static void test_a_dead_owners_leases_are_taken_at_once_and_a_paused_owners_only_by_the_clock(void **state)
{
    world_t w = {0};
    const char *ids[] = {"A", "B", "C"};
    for (int who = 0; who < 3; who++) {
        for (int k = 0; k < 2; k++) {
            char key[32];
            snprintf(key, sizeof key, "shard-%d%d", who, k);
            add(&w, key, ids[who], 1);
        }
    }
    lease_obs_update(&w.obs, &w.all, 0);
    renew_all_but(&w, "C");
    lease_obs_update(&w.obs, &w.all, 100);     /* C's counters still look fresh */
    lease_plan_t pa = {0}, pb = {0};
    /* C paused (not known dead): nobody takes anything */
    plan_other(&w, "A", 100, 1, &pa);
    plan_other(&w, "B", 100, 1, &pb);
    assert_int_equal(pa.n + pb.n, 0);
    lease_plan_free(&pa);
    lease_plan_free(&pb);
    /* C killed: both of its leases are taken now, one by each live worker */
    char *dead[] = {"C", "Z-not-an-owner"};
    w.all.dead = dead;
    w.all.ndead = 2;
    plan_other(&w, "A", 100, 1, &pa);
    plan_other(&w, "B", 100, 1, &pb);
    assert_int_equal(pa.workers, 2);           /* C does not count as live any more */
    assert_int_equal(pa.target, 3);
    assert_int_equal(count(&pa, LEASE_PLAN_TAKE), 1);
    assert_int_equal(count(&pb, LEASE_PLAN_TAKE), 1);
    assert_string_equal(pa.v[0].row->owner, "C");
    assert_string_equal(pb.v[0].row->owner, "C");
    assert_string_not_equal(pa.v[0].key, pb.v[0].key);
    lease_plan_free(&pa);
    lease_plan_free(&pb);
    w.all.dead = NULL;
    w.all.ndead = 0;
    clear(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_lease_expires_by_the_local_clock_lease_duration_after_its_counter_was_first_seen),
        cmocka_unit_test(test_balance_aims_at_the_ceiling_of_leases_over_live_workers),
        cmocka_unit_test(test_max_steal_bounds_the_requests_outstanding_not_per_run),
        cmocka_unit_test(test_a_handoff_request_is_adopted_forgotten_withdrawn_or_turned_into_a_steal),
        cmocka_unit_test(test_a_request_is_withdrawn_when_expired_leases_gave_enough),
        cmocka_unit_test(test_an_owner_is_told_of_a_request_once_and_of_its_withdrawal),
        cmocka_unit_test(test_a_row_in_this_workers_name_that_it_does_not_hold_is_released),
        cmocka_unit_test(test_two_takers_racing_for_one_lease_one_wins_and_the_other_stays_off),
        cmocka_unit_test(test_invalid_rows_are_reported_once_per_version_and_never_taken),
        cmocka_unit_test(test_finished_and_ineligible_rows_are_neither_taken_nor_counted),
        cmocka_unit_test(test_three_takers_on_the_same_scan_pick_disjoint_leases_and_take_them_all),
        cmocka_unit_test(test_a_handoff_request_in_this_workers_name_that_it_does_not_wait_for_is_withdrawn),
        cmocka_unit_test(test_a_dead_owners_leases_are_taken_at_once_and_a_paused_owners_only_by_the_clock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
