/* simworker: one simulated shardrun worker.
 *
 * The real lease coordinator, the real shard sync and the real glue between
 * the coordinator and the shards (shardset.c, the module worker.c uses),
 * with the shards' processor jobs run by simproc, the lease store and the
 * stream reached through handles of their own (simstore, simsource), and
 * every timer on the worker's own virtual-time scheduler.
 *
 * What worker.c does besides the set, and how it is mirrored here: the
 * shard-sync timer (every shard_sync_interval_ms until stopping), the exit
 * of a stopping worker once its set is empty and no lease write is pending
 * (worker_maybe_exit, also polled every 100 ms like worker.c's drain timer),
 * and the grace timer (exit without release after shutdown_grace_ms). The
 * rest of worker.c (signals, hot reload, status, metrics, systemd) is not
 * simulated.
 *
 * A crash frees the worker without a single write: what it sent is still
 * carried out by the store, what was coming to it is dropped. */
#ifndef SHARDRUN_SIMWORKER_H
#define SHARDRUN_SIMWORKER_H

#include "lease/lease_coord.h"
#include "shard/breaker.h"
#include "sim.h"
#include "worker/shardset.h"
#include "worker/shardsync.h"

typedef struct simjob simjob_t;

struct simworker {
    sim_t *sim;
    int idx;                     /* in sim->workers, for ever */
    char id[32];
    vsched_t vs;                 /* every timer of this worker, and what travels to it */
    int live;                    /* started, not crashed or exited */
    int paused;                  /* its timers wait (the world resumes it) */
    int stopping;                /* graceful stop under way */
    int stopped_quiet;           /* the stop began once the faults were over (sim->calm_ms): it must
                                    finish, and release everything */
    const char *exiting;         /* it exits after this step: why (simworker_reap) */
    const char *exit_reason;     /* once gone: "exited" (a graceful stop finished), or why it vanished */
    lease_store_t *store;        /* its handle on the lease store */
    source_t *source;            /* its handle on the stream */
    lease_coord_t *coord;
    shardsync_t *sync;
    shardset_t set;
    proc_script_t *script;       /* the one stream's (a reference) */
    breaker_t breaker;
    fetch_budget_t budget;
    sched_timer_t sync_timer, exit_timer, grace_timer;
    simjob_t *jobs;              /* processor jobs out (simproc) */
    int64_t started_ms;
};

/* Starts a worker now (its first shard sync and lease scan are due at once). */
simworker_t *simworker_start(sim_t *sim);
/* Graceful stop (SIGTERM): releases every lease, then exits. */
void simworker_stop(simworker_t *w);
/* Frees a worker that exited during the step (a graceful stop finished, or
 * its grace passed): the step loop calls it after each step. */
void simworker_reap(simworker_t *w);
/* Vanishes at once, without a write. Never from inside the worker's own
 * callbacks (the world's events only). */
void simworker_crash(simworker_t *w, const char *why);
/* Frees a worker that is no longer live (the run is over). */
void simworker_free(simworker_t *w);
/* Held leases (for the scenario's choices and the trace). */
size_t simworker_shards(const simworker_t *w);

#endif
