/* simstore: the simulated lease store, and the handles workers reach it by.
 *
 * One table (the truth), kept by memstore_table_apply: the rules of
 * lease.h that the SQLite and DynamoDB stores follow. Each worker talks to
 * it through a handle of its own (a lease_store_t). A request travels to
 * the store (a world timer), is carried out there, and its answer travels
 * back (a timer of the worker's). Faults, drawn per request:
 *   - delays each way, now and then longer than a lease;
 *   - a store error: not carried out, answered LEASE_ERETRY;
 *   - carried out, but the answer lost: LEASE_ERETRY once the client's
 *     timeout passes (the write stands);
 *   - duplicated: the client retried a write whose answer it lost, so the
 *     store carries it out twice and the second answer (often a conflict,
 *     the first having moved the counter) is the one delivered.
 * Every write carried out is told to simcheck (who sent it, when), which
 * keeps the truth about validity windows. */
#ifndef SHARDRUN_SIMSTORE_H
#define SHARDRUN_SIMSTORE_H

#include "lease/lease.h"
#include "sim.h"

simstore_t *simstore_new(sim_t *sim);
void simstore_free(simstore_t *st);

/* A worker's handle (lease_store_destroy: what it sent is still carried
 * out, what was coming to it is dropped). */
lease_store_t *simstore_connect(simstore_t *st, simworker_t *w);

/* The table as the store holds it now (sorted by key). */
const lease_list_t *simstore_table(const simstore_t *st);
/* Counts writes carried out: the table changes only when it moves. */
uint64_t simstore_version(const simstore_t *st);
/* Requests still on their way, either direction. */
size_t simstore_in_flight(const simstore_t *st);

#endif
