/* lease: the lease store interface and the lease coordinator.
 *
 * A lease is one row per shard in the KCL's schema. Every write is
 * conditional: renew, take, checkpoint and release succeed only if the row
 * still has the counter (and owner) this worker last saw, and each bumps the
 * counter. A failed condition comes back as LEASE_CONFLICT: someone else
 * changed the lease, so this worker must act as if it lost it.
 *
 * The store is asynchronous (DynamoDB is a network call): callbacks run later
 * on the loop thread, never inside the call. The coordinator (renewer, taker,
 * stealer, releaser) runs on the loop thread over any store. */
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
    char *info;            /* shardrunInfo: JSON the owner writes with each renewal (state,
                              counters, script version, lag) for `status`; may be NULL */
    char *invalid;         /* set when the row is malformed: why (the row is never taken) */
} lease_t;

typedef struct lease_list {
    size_t count;
    lease_t *leases;       /* owned by the list */
} lease_list_t;

void lease_clear(lease_t *l);               /* frees the fields, not l itself */
void lease_copy(lease_t *dst, const lease_t *src);   /* deep copy; dst is overwritten */
void lease_list_free(lease_list_t *l);
const lease_t *lease_list_find(const lease_list_t *l, const char *key);

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
    /* owner := NULL, pendingOwner := NULL, counter+1, if owner and counter match. */
    void (*release)(lease_store_t *s, const lease_t *l, lease_write_cb cb, void *ud);
    /* pendingOwner := requester if owner and counter match and no handoff is
     * pending; the counter does not move (the owner's renewals go on). */
    void (*request_handoff)(lease_store_t *s, const lease_t *l, const char *requester, lease_write_cb cb, void *ud);
    /* owner := pendingOwner, pendingOwner := NULL, counter+1, ownerSwitches+1,
     * if owner, counter and pendingOwner match (the owner finished its batch). */
    void (*handoff)(lease_store_t *s, const lease_t *l, lease_write_cb cb, void *ud);
    /* pendingOwner := NULL if it is still `requester` (a worker stopping withdraws its requests). */
    void (*cancel_handoff)(lease_store_t *s, const lease_t *l, const char *requester, lease_write_cb cb, void *ud);
    /* Deletes the row if its counter matches. */
    void (*remove)(lease_store_t *s, const lease_t *l, lease_write_cb cb, void *ud);
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
