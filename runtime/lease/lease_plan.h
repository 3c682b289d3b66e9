/* lease_plan: the lease coordinator's decisions, as a pure function.
 *
 * In: the lease table as just scanned (sorted by key), this worker's
 * observations of it (when it first saw each row's counter value, whether
 * that counter ever moved), what this worker holds or waits for (owned
 * leases, takes in flight, its handoff requests), which leases it may run
 * (eligibility), and the monotonic time. Out: decisions. No I/O, no clock,
 * no libev: lease_coord carries the decisions out; the unit tests and the
 * simulation call the planner directly.
 *
 * The rules:
 * - Expiry is judged by this worker's clock only: a row whose counter has not
 *   moved for lease_duration since this worker first saw that value is
 *   expired. A worker is live when it owns an unexpired row.
 * - Rows owned by a worker the store knows dead (all->dead: on this machine,
 *   its kernel-released lock is free) are expired at once, and that worker
 *   is not live.
 * - Eligible rows: valid, not finished (SHARD_END), and eligible() says so.
 *   target = ceil(eligible / live workers, this one included). "Mine" counts
 *   eligible rows this worker owns, is taking, or has asked for.
 * - Below target: take unowned or expired rows. Takers that see the same
 *   table choose disjoint rows: live workers are ranked by id, each one's
 *   deficit (target - its count) is known to all, and this worker starts at
 *   the sum of the deficits ranked before it, so a dead worker's leases are
 *   all taken in one taker run. (A worker that sees another table may
 *   collide: the conditional take decides, the loser tries again.)
 * - Still below target: ask the most loaded worker for a graceful handoff, if
 *   it holds more than the target (or as many, when this worker is two or
 *   more below). At most max_steal requests are outstanding at any time.
 * - A request is forgotten once the row moved elsewhere or vanished, adopted
 *   once the row names this worker, withdrawn when this worker holds enough
 *   or stops taking, and turned into a plain steal when the owner has not
 *   answered within lease_duration (or its lease expired meanwhile).
 * - An owned row with a peer's request: tell the owner once per requester;
 *   when the request is withdrawn, say so (the handoff becomes a release).
 * - A valid row in this worker's name that it neither holds nor is taking
 *   (a take answered with a timeout although written, a handoff that landed
 *   after this worker withdrew, an earlier process with the same id) is
 *   released, so nobody waits for it to expire. A handoff request in this
 *   worker's name that it does not wait for (a withdrawal that failed, a
 *   request answered with an error although written) is withdrawn, so it
 *   is never granted to a worker that no longer wants the lease.
 * - Invalid rows are reported once per version and never taken. */
#ifndef SHARDRUN_LEASE_PLAN_H
#define SHARDRUN_LEASE_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "lease.h"

/* What this worker has seen of one row. */
typedef struct lease_obs {
    char *key;             /* owned by the set; "" for a row without a key */
    int64_t counter;
    int64_t since_ms;      /* when this worker first saw that counter value */
    int moved;             /* the counter changed while this worker watched */
    int reported;          /* this version was reported invalid already */
} lease_obs_t;

/* One entry per row of the last scan, in the scan's (key) order. */
typedef struct lease_obs_set {
    lease_obs_t *v;
    size_t n;
} lease_obs_set_t;

/* Replaces the observations by those of a fresh scan `all` (sorted by key)
 * made at now_ms: a counter value seen before keeps its first-seen time.
 * O(n) (a merge of two sorted lists). */
void lease_obs_update(lease_obs_set_t *o, const lease_list_t *all, int64_t now_ms);
void lease_obs_clear(lease_obs_set_t *o);
/* Binary search; NULL when the last scan had no such row. */
const lease_obs_t *lease_obs_find(const lease_obs_set_t *o, const char *key);
int lease_obs_expired(const lease_obs_t *o, int64_t now_ms, int64_t lease_duration_ms);
/* Its owner is alive: the counter moved while watched, and not expired. */
int lease_obs_alive(const lease_obs_t *o, int64_t now_ms, int64_t lease_duration_ms);

typedef enum {
    LEASE_LOCAL_OWNED,     /* held and renewed by this worker */
    LEASE_LOCAL_TAKING,    /* a take write is on its way */
    LEASE_LOCAL_ASKED,     /* this worker asked the owner for a handoff */
} lease_local_kind_t;

/* What this worker holds or waits for, per key (any order). */
typedef struct lease_local {
    const char *key;
    lease_local_kind_t kind;
    const char *told_to;   /* OWNED: the requester this worker's shard was told of, or NULL */
    const char *asked;     /* ASKED: the owner asked */
    int64_t asked_ms;      /* ASKED: when */
} lease_local_t;

typedef enum {
    LEASE_PLAN_REPORT_INVALID,  /* a malformed row, not reported in this version yet */
    LEASE_PLAN_TELL,            /* owned: a peer (row->pending_owner) asked for it */
    LEASE_PLAN_UNTELL,          /* owned: the request told earlier was withdrawn */
    LEASE_PLAN_ADOPT,           /* asked: the row names this worker now (handed over) */
    LEASE_PLAN_FORGET,          /* asked: moot (row gone, released, taken by another, refused) */
    LEASE_PLAN_WITHDRAW,        /* asked: withdraw the request (enough leases, or not taking) */
    LEASE_PLAN_STEAL,           /* asked: no answer within lease_duration: take it */
    LEASE_PLAN_RELEASE,         /* the row names this worker, which does not hold it */
    LEASE_PLAN_CANCEL,          /* a handoff request names this worker, which does not wait for it */
    LEASE_PLAN_TAKE,            /* unowned or expired */
    LEASE_PLAN_ASK,             /* ask the owner for a graceful handoff */
} lease_plan_kind_t;

typedef struct lease_plan_decision {
    lease_plan_kind_t kind;
    const char *key;       /* the row's key, or the local entry's (FORGET of a vanished row) */
    const lease_t *row;    /* into the scan, as scanned (the expected owner and counter); NULL if vanished */
} lease_plan_decision_t;

typedef struct lease_plan_input {
    const char *worker_id;
    int64_t now_ms;
    int64_t lease_duration_ms;
    int64_t max_steal;
    int taking;                    /* 0: stopping, or a tool: take and ask for nothing */
    const lease_list_t *all;       /* sorted by key; all->dead: owners known dead */
    const lease_obs_set_t *obs;    /* lease_obs_update'd with `all` */
    const lease_local_t *local;
    size_t nlocal;
    /* May this worker run the row (its stream is configured, its parents are done)? */
    int (*eligible)(void *ud, const lease_t *l, const lease_list_t *all);
    void *ud;
} lease_plan_input_t;

typedef struct lease_plan {
    lease_plan_decision_t *v;      /* in the order to carry them out */
    size_t n, cap;
    /* the balance as computed (logs, tests) */
    size_t eligible, workers, target, mine;
} lease_plan_t;

/* Fills `out` (reset first; free with lease_plan_free). O(n log n). */
void lease_plan_run(const lease_plan_input_t *in, lease_plan_t *out);
void lease_plan_free(lease_plan_t *p);

/* ceil(leases / workers); workers 0 counts as 1. */
size_t lease_plan_target(size_t leases, size_t workers);

#endif
