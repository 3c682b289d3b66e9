/* lease: a lease row, the lease store interface, and what each write does.
 *
 * A lease is one row per shard in the KCL's schema. Every write is
 * conditional: renew, take, checkpoint and release succeed only if the row
 * still has the counter (and owner) the writer last saw, and each bumps the
 * counter. A failed condition comes back as LEASE_CONFLICT: someone else
 * changed the lease, so the writer must act as if it lost it.
 *
 * What each write changes and what it is conditional on is stated once, here
 * (lease_apply_write, lease_write_allowed); both stores (SQLite, DynamoDB)
 * hand back the row lease_apply_write computes, and express the same
 * condition in their own query language.
 *
 * The store is asynchronous (DynamoDB is a network call): callbacks run later
 * on the loop thread, never inside the call. list() delivers the rows sorted
 * by key (strcmp), so lease_list_find is a binary search. The coordinator
 * (lease_coord.h) and its planner (lease_plan.h) run over any store. */
#ifndef SHARDRUN_LEASE_H
#define SHARDRUN_LEASE_H

#include <stddef.h>
#include <stdint.h>

struct ev_loop;

typedef struct lease {
    char *key;             /* leaseKey */
    char *stream;          /* stream name (shardrun attribute "streamName") */
    char *shard;           /* shard id */
    char *owner;           /* leaseOwner, NULL when unowned */
    char *pending_owner;   /* pendingOwner: a worker asked for a graceful handoff (NULL: none) */
    int64_t counter;       /* leaseCounter */
    char *checkpoint;      /* sequence number or a sentinel (TRIM_HORIZON, SHARD_END, ...) */
    int64_t checkpoint_sub;
    int64_t owner_switches;
    char **parents;        /* parentShardId (a set of shard ids) */
    size_t nparents;
    char **children;       /* childShardIds */
    size_t nchildren;
    char *start_hash, *end_hash;
    char *info;            /* shardrunInfo: JSON the owner writes with each renewal and with its
                              release or handoff (state, cumulative counters, script version,
                              lag) for `status` and the next owner; may be NULL */
    char *control;         /* shardrunControl: a request to the owner written by `shardrun
                              resume` (JSON {"id", "action"}); may be NULL */
    char *invalid;         /* set when the row is malformed: why (the row is never taken) */
} lease_t;

typedef struct lease_list {
    size_t count;
    lease_t *leases;       /* owned by the list */
    /* Owners the store knows dead at the scan (a store whose workers joined
     * it, see lease_store_ops.join), sorted by strcmp; owned by the list. */
    char **dead;
    size_t ndead;
} lease_list_t;

void lease_clear(lease_t *l);               /* frees the fields, not l itself */
void lease_copy(lease_t *dst, const lease_t *src);   /* deep copy; dst is overwritten */
void lease_list_free(lease_list_t *l);
/* Sorts the rows by key (strcmp; rows without a key first). Stores call it
 * before delivering a list: O(n log n) once per scan. */
void lease_list_sort(lease_list_t *l);
/* Binary search: the list must be sorted (lease_list_sort). NULL if absent. */
const lease_t *lease_list_find(const lease_list_t *l, const char *key);
/* Whether the store listed `owner` dead at the scan (binary search in
 * l->dead, which stores deliver sorted). 0 for a NULL owner. */
int lease_list_owner_dead(const lease_list_t *l, const char *owner);

/* One conditional write, as the stores' operations below take it. */
typedef enum {
    LEASE_WRITE_CREATE,
    LEASE_WRITE_RENEW,
    LEASE_WRITE_TAKE,
    LEASE_WRITE_CHECKPOINT,
    LEASE_WRITE_RELEASE,
    LEASE_WRITE_REQUEST_HANDOFF,
    LEASE_WRITE_HANDOFF,
    LEASE_WRITE_CANCEL_HANDOFF,
    LEASE_WRITE_REMOVE,
    LEASE_WRITE_CONTROL,
} lease_write_kind_t;

typedef struct lease_write {
    lease_write_kind_t kind;
    const char *worker;          /* TAKE: the new owner; REQUEST/CANCEL_HANDOFF: the requester */
    const char *seq;             /* CHECKPOINT */
    int64_t sub;                 /* CHECKPOINT */
    const char *control;         /* CONTROL */
} lease_write_t;

/* The row as written: `w` applied to `l`, the row as the writer sees it
 * (its expected owner and counter). *out is overwritten with a deep copy the
 * caller clears (lease_clear). Fields a write does not name are kept. */
void lease_apply_write(const lease_t *l, const lease_write_t *w, lease_t *out);
/* 1 if a store holding `stored` (NULL: no such row) accepts `w` written with
 * the writer's view `l`; 0 is LEASE_CONFLICT. The stores' SQL and DynamoDB
 * condition expressions say the same; the test store and the simulation use
 * this one. */
int lease_write_allowed(const lease_t *stored, const lease_t *l, const lease_write_t *w);

/* How long one lease write (all its retries included) may take: a renewal
 * sent on schedule, renew_interval after the last successful one, is useless
 * once lease_duration has passed since that one was sent. A store that waits
 * longer only holds up the next renewal of the same lease. */
static inline int64_t lease_write_budget_ms(int64_t lease_duration_ms, int64_t renew_interval_ms)
{
    int64_t b = lease_duration_ms - renew_interval_ms;
    return b > 0 ? b : lease_duration_ms / 2;
}

typedef enum {
    LEASE_OK = 0,
    LEASE_CONFLICT,   /* the condition failed: the lease changed under us */
    LEASE_ERETRY,     /* transient: store busy, throttled, network */
    LEASE_EFATAL,     /* the store cannot be used (bad table, bad credentials) */
} lease_status_t;

const char *lease_status_name(lease_status_t s);

/* `updated` is the row as written (new counter), valid during the callback. */
typedef void (*lease_write_cb)(void *ud, lease_status_t st, const char *msg, const lease_t *updated);
typedef void (*lease_list_cb)(void *ud, lease_status_t st, const char *msg, lease_list_t *list /* callee owns */);

typedef struct lease_store lease_store_t;

typedef struct lease_store_ops {
    const char *name;
    void (*list)(lease_store_t *s, lease_list_cb cb, void *ud);
    /* Creates the row if no row has this key (else LEASE_CONFLICT). */
    void (*create)(lease_store_t *s, const lease_t *l, lease_write_cb cb, void *ud);
    /* counter+1 (and shardrunInfo := l->info when non-NULL) if owner and counter match. */
    void (*renew)(lease_store_t *s, const lease_t *l, lease_write_cb cb, void *ud);
    /* owner := new_owner, pendingOwner := NULL (a request was for the old owner),
     * counter+1, ownerSwitches+1, if owner and counter match. */
    void (*take)(lease_store_t *s, const lease_t *l, const char *new_owner, lease_write_cb cb, void *ud);
    /* checkpoint := (seq, sub), counter+1, ownerSwitches := 0, if owner and counter match. */
    void (*checkpoint)(lease_store_t *s, const lease_t *l, const char *seq, int64_t sub, lease_write_cb cb,
                       void *ud);
    /* owner := NULL, pendingOwner := NULL (and shardrunInfo := l->info when
     * non-NULL: the last counters), counter+1, if owner and counter match. */
    void (*release)(lease_store_t *s, const lease_t *l, lease_write_cb cb, void *ud);
    /* pendingOwner := requester if owner and counter match and no handoff is
     * pending; the counter does not move (the owner's renewals go on). */
    void (*request_handoff)(lease_store_t *s, const lease_t *l, const char *requester, lease_write_cb cb, void *ud);
    /* owner := pendingOwner, pendingOwner := NULL (and shardrunInfo := l->info
     * when non-NULL), counter+1, ownerSwitches+1, if owner, counter and
     * pendingOwner match (the owner finished its batch). */
    void (*handoff)(lease_store_t *s, const lease_t *l, lease_write_cb cb, void *ud);
    /* pendingOwner := NULL if it is still `requester` (a worker stopping withdraws its requests). */
    void (*cancel_handoff)(lease_store_t *s, const lease_t *l, const char *requester, lease_write_cb cb, void *ud);
    /* Deletes the row if its counter matches. */
    void (*remove)(lease_store_t *s, const lease_t *l, lease_write_cb cb, void *ud);
    /* shardrunControl := control if the row exists, whoever owns it; the
     * counter does not move (the owner's writes go on). */
    void (*control)(lease_store_t *s, const lease_t *l, const char *control, lease_write_cb cb, void *ud);
    /* Optional (NULL: only the lease clock tells who is alive). This worker
     * takes leases as worker_id: the store lets peers on the same machine
     * know at once when it dies (local store: a kernel-released lock, see
     * lease_alive.h), lists the owners it knows dead in each scan
     * (lease_list_t.dead), and calls gone(ud) on the loop when a peer may
     * have died or left. 0, or -1 when it cannot (logged; the lease clock
     * rules). Called once, before the first scan. */
    int (*join)(lease_store_t *s, const char *worker_id, void (*gone)(void *ud), void *ud);
    void (*destroy)(lease_store_t *s);
} lease_store_ops_t;

struct lease_store {
    const lease_store_ops_t *ops;
    struct ev_loop *loop;
};

static inline void lease_store_destroy(lease_store_t *s)
{
    if (s) s->ops->destroy(s);
}

#endif
