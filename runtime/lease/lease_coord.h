/* lease_coord: the lease coordinator (renewer, taker, stealer, releaser).
 *
 * Carries out what lease_plan decides and owns the I/O around it: store
 * calls and timers, all from the sched_t it is given (every timer and every
 * "now"), so virtual time can drive it. Keeps this worker's owned leases,
 * serialises the conditional writes on each (one in flight per lease, so a
 * renewal never races a checkpoint of the same lease), and tells its owner
 * when a lease is acquired or lost.
 *
 * What it guarantees:
 * - Expiry is judged by this worker's monotonic clock only: a peer's lease is
 *   expired when its counter has not moved for lease_duration since this
 *   worker first saw that counter value. No clock needs to agree between hosts.
 * - An owned lease is valid until (send time of its last successful write) +
 *   lease_duration. A peer first sees that write's counter no earlier than it
 *   was written, so no peer can judge the lease expired before then. At that
 *   moment a timer declares it lost, whether or not a write is still hanging;
 *   lease_coord_may_dispatch turns 0 at the same moment (and once a release
 *   or handoff is queued), and the shard asks it before every batch.
 * - A lease taken from an owner still alive (a steal: it left a handoff
 *   request unanswered for lease_duration) is not dispatched before that
 *   owner's own deadline: lease_duration after this worker first saw the
 *   counter it took the lease with (the owner sent the write that made it
 *   before). A row taken because it expired is past that moment already.
 *   Nor is it released or handed on before then (it is renewed meanwhile):
 *   whoever gets it next dispatches at once.
 * - A loss is recorded and told (handler `lost`) before any waiter of that
 *   lease runs; a write answered after the loss reports LEASE_CONFLICT to its
 *   waiters, never success.
 * - A handoff refused because the requester withdrew becomes a release; a
 *   transient failure of a release is retried while the lease is valid; a row
 *   in this worker's name that it does not hold is released. No lease is
 *   left owned by nobody who renews it.
 * - At most max_steal handoff requests are outstanding.
 * - Where the store can tell that a peer on the same machine died (a local
 *   store's kernel-released lock, lease_store_ops.join), that peer's leases
 *   are taken at once: the store names it dead in a scan, and says when to
 *   scan. A peer that is only paused is not dead: the lease clock rules. */
#ifndef SHARDRUN_LEASE_COORD_H
#define SHARDRUN_LEASE_COORD_H

#include <stdint.h>

#include "base/metrics.h"
#include "base/sched.h"
#include "lease.h"

typedef struct lease_coord lease_coord_t;

typedef struct lease_coord_options {
    const char *worker_id;
    int64_t lease_duration_ms;
    int64_t renew_interval_ms;
    int64_t taker_interval_ms;
    int64_t max_steal;
    int take;                 /* 0: never take leases (status, tools) */
    metrics_t *metrics;       /* the worker's registry (lease_metrics.h); NULL: none */
} lease_coord_options_t;

typedef struct lease_coord_handler {
    /* This worker now owns `lease` (a copy valid during the call). */
    void (*acquired)(void *ud, const lease_t *lease);
    /* The lease is lost (renewal or checkpoint refused, or not renewed in time):
     * stop processing it and never write its checkpoint. */
    void (*lost)(void *ud, const char *key);
    /* May this worker process the lease now? (its stream is configured, its
     * parents are finished). `all` is the whole table as just scanned. */
    int (*eligible)(void *ud, const lease_t *lease, const lease_list_t *all);
    /* Called after each taker scan with the table (for shard sync and status). */
    void (*scanned)(void *ud, const lease_list_t *all);
    /* Runtime facts about an owned lease, written with its renewals (JSON
     * text, caller-allocated; the coordinator frees it). May be NULL. */
    char *(*describe)(void *ud, const char *key);
    /* Another worker asked for this owned lease (rebalancing): finish the
     * batch in flight, checkpoint, then call lease_coord_handoff(). */
    void (*handoff_requested)(void *ud, const char *key, const char *to);
    /* The store answered LEASE_EFATAL before any scan succeeded: it cannot be
     * used as configured (credentials, table, file). May be NULL. */
    void (*store_unusable)(void *ud, const char *msg);
} lease_coord_handler_t;

/* Caller owns the coordinator: lease_coord_free(). The store and the
 * scheduler (every timer and every "now") stay the caller's. */
lease_coord_t *lease_coord_new(sched_t *sched, lease_store_t *store, const lease_coord_options_t *opt,
                               const lease_coord_handler_t *h, void *ud);
/* Stops timers and forgets owned leases without writing; waiters are not
 * called. Destroy the store first: it drops the callbacks of requests in
 * flight, whose contexts this frees. */
void lease_coord_free(lease_coord_t *c);

void lease_coord_start(lease_coord_t *c);   /* first scan now, then timers */
/* Shutdown: keep renewing, take nothing, withdraw the handoff requests.
 * lease_coord_pending stays above 0 until a scan shows no row naming this
 * worker (as owner or requester) that it does not hold: a handoff granted as
 * it withdrew, a take written though answered with an error, are released
 * or withdrawn first, so leaving never orphans a lease until it expires. */
void lease_coord_stop_taking(lease_coord_t *c);
void lease_coord_scan_now(lease_coord_t *c);    /* run the taker soon (e.g. after shard sync) */

typedef void (*lease_coord_done_cb)(void *ud, lease_status_t st);

/* Writes a checkpoint through the owned lease (conditional on owner and
 * counter). Coalesces with a checkpoint still waiting for its turn. done gets
 * LEASE_CONFLICT if the lease was lost (the write was refused or not tried). */
void lease_coord_checkpoint(lease_coord_t *c, const char *key, const char *seq, int64_t sub,
                            lease_coord_done_cb done, void *ud);
/* Clears ownership so a peer takes the lease at once; the lease is forgotten. */
void lease_coord_release(lease_coord_t *c, const char *key, lease_coord_done_cb done, void *ud);
/* The owner's last facts about the lease (JSON, shardrunInfo; taken: the
 * coordinator frees it), written with the next renewal, release or
 * handoff: a shard giving its lease up leaves its final counters there. */
void lease_coord_set_info(lease_coord_t *c, const char *key, char *info);
/* Hands the lease to the worker that asked for it (after the last checkpoint);
 * the lease is forgotten here. */
void lease_coord_handoff(lease_coord_t *c, const char *key, lease_coord_done_cb done, void *ud);
/* Forgets an owned lease without any write (e.g. a finished shard); a
 * release or handoff already asked for still happens, and ends it. */
void lease_coord_forget(lease_coord_t *c, const char *key);

/* The owned lease, or NULL. Valid until the next loop turn. */
const lease_t *lease_coord_owned(lease_coord_t *c, const char *key);
/* Leases that ended without their last write: a release or handoff that
 * failed, a lease lost after lease_coord_stop_taking, a checkpoint that never
 * reached the store (each is logged: lease_not_released,
 * checkpoint_not_written). A shutdown is clean when this does not grow. */
size_t lease_coord_unclean(const lease_coord_t *c);

/* Writes in flight or queued, over all owned leases, and a stopping
 * worker's last scan still to come (shutdown waits for 0). */
size_t lease_coord_pending(lease_coord_t *c);

/* 1 while this worker may dispatch a batch of the lease: it holds it, no
 * release or handoff is queued, by this worker's clock it cannot have
 * expired yet (now < last successful write's send time + lease_duration),
 * and a previous owner it was stolen from can no longer be dispatching. */
int lease_coord_may_dispatch(lease_coord_t *c, const char *key);

/* 1 if the lease's counter moved within lease_duration while this worker
 * watched it: its owner is alive (0: not known yet, or expired). */
int lease_coord_owner_alive(lease_coord_t *c, const char *key);

#endif
