/* simcheck: the truth of a simulated run, and the invariants checked on it.
 *
 * The truth is kept apart from the code under test: which writes the store
 * carried out, who sent each and when (simstore tells), which records a
 * processor finished (simsource), which worker dispatched which batch, and
 * when (simproc tells). Its checks use none of the runtime's own judgement
 * (no lease_coord_may_dispatch, no checkpoint_cmp): positions are compared
 * by code of its own.
 *
 * The validity window. A worker W holds a lease K valid at time t when
 *   (a) the store's row for K names W as its owner at t, or
 *   (b) t < deadline(W, K), the send time of the last write of W on K that
 *       the store carried out while W owned K (take, renew, checkpoint),
 *       plus lease_duration; unless W gave K up since (a release or handoff
 *       of W's was carried out).
 * (b) is the bound every peer respects: a peer first sees the counter of
 * that write no earlier than it was carried out, and judges it expired only
 * lease_duration after that, so it takes K no earlier than deadline(W, K).
 * A worker's clock is the simulation's (no drift).
 *
 * Invariants, each failure naming the seed, the step, the shard and the
 * values involved:
 *   1. A dispatch (a batch of K submitted to a processor by W at t) is
 *      legal only while W's lease on K is valid at t; and when the previous
 *      dispatcher of K was another worker V, V's window must be closed at t
 *      (not valid by (a) nor (b)): two workers dispatching K in overlapping
 *      validity windows is a violation. The lease-transfer window is thus
 *      [the new owner's take, deadline(V, K)): the new owner may hold the
 *      row, but must not dispatch in it while V may still be dispatching.
 *   2. K's checkpoint in the store never moves backwards ((sequence number,
 *      sub-sequence number) order; the initial-position sentinels first,
 *      SHARD_END last), and never passes a record no worker finished
 *      processing: every user record at or before it was processed at
 *      least once; SHARD_END only on a closed shard whose records all were.
 *      A row deleted (a finished parent, cleaned up) and created again
 *      starts a life of its own; what counts is that no record at or before
 *      the furthest checkpoint ever written for K is dispatched again (a
 *      finished shard's row that comes back must not run).
 *   3. A batch of a child shard is dispatched only after each parent's
 *      checkpoint was SHARD_END.
 *   4. At the end (faults stopped, time run on until quiet): every record of
 *      every shard was processed at least once, and every closed shard
 *      reached SHARD_END.
 * Checked after every step: 2 against each row a write changed since the
 * last step (and its second half at each dispatch); 1 and 3 at each
 * dispatch, the moment they can break; 4 when the run ends. */
#ifndef SHARDRUN_SIMCHECK_H
#define SHARDRUN_SIMCHECK_H

#include "lease/lease.h"
#include "record/batch.h"
#include "sim.h"

simcheck_t *simcheck_new(sim_t *sim);
void simcheck_free(simcheck_t *c);

/* The store carried out a write of worker `worker` (kind: a
 * lease_write_kind_t) sent at sent_ms: the row before (NULL: none), the
 * status, the row after (NULL unless LEASE_OK and still there). */
void simcheck_write(sim_t *sim, int worker, int kind, const lease_t *before, int64_t sent_ms, lease_status_t st,
                    const lease_t *after);
/* Worker `worker` submits batch b of lease `key` to its processor now. */
void simcheck_dispatch(sim_t *sim, int worker, const char *key, const batch_t *b);
/* After each step: invariant 2 on the rows changed. */
void simcheck_step(sim_t *sim);
/* Every closed shard's checkpoint reached SHARD_END (a row deleted after it counts). */
int simcheck_all_ended(sim_t *sim);
/* Invariant 4 (the run is over). */
void simcheck_end(sim_t *sim);

/* How many times each invariant was evaluated: 1 at each dispatch, 2 on
 * each row changed and at each dispatch, 3 on each parent of a child
 * dispatched, 4 on each record at the end. */
typedef struct simcheck_counts {
    uint64_t inv1, inv2, inv3, inv4;
} simcheck_counts_t;
simcheck_counts_t simcheck_counts(const simcheck_t *c);

#endif
