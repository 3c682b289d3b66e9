/* shardset: the shards one worker runs, and the glue between its lease
 * coordinator and them.
 *
 * The coordinator decides which leases this worker holds; a shard (shard.h)
 * runs one held lease. The set connects the two:
 * - it is the coordinator's handler: a lease acquired starts a shard (or is
 *   released at once when its stream is not configured or the set is
 *   stopping), a lease lost stops its shard, a handoff request hands the
 *   shard over, and eligibility says which leases may be taken (a configured
 *   stream, parents finished, no earlier shard object of it still closing);
 * - it is the shards' environment: a batch may be dispatched while the
 *   coordinator says the lease cannot have expired; a shard that ended makes
 *   shard sync run (its children need leases); a shard that closed has its
 *   lease forgotten and is freed.
 *
 * The worker and the deterministic simulation (tests/sim) both run this
 * code, so the simulation checks the glue the worker runs. What only the
 * host does (processor threads, status text, readiness, exit) comes through
 * the host's callbacks. Loop thread only. */
#ifndef SHARDRUN_SHARDSET_H
#define SHARDRUN_SHARDSET_H

#include <stddef.h>

#include "config/config.h"
#include "lease/lease_coord.h"
#include "shard/shard.h"
#include "shardsync.h"

/* What the set asks of its host (the worker, or the simulation). */
typedef struct shardset_host {
    /* Runs a processor job; shard_job_done gets it back on the loop. */
    void (*submit)(void *ud, proc_job_t *job);
    void (*halt_worker)(void *ud, shard_t *s);
    void (*tripped)(void *ud, shard_t *s, const char *why);
    /* A shard closed and was freed (the set may be empty now). */
    void (*closed)(void *ud);
    /* After each lease scan (may be NULL). */
    void (*scanned)(void *ud, const lease_list_t *all);
    /* Facts about a running shard for its lease row, caller frees (may be NULL). */
    char *(*describe)(void *ud, shard_t *s);
    /* The lease store cannot be used as configured (may be NULL). */
    void (*store_unusable)(void *ud, const char *msg);
} shardset_host_t;

typedef struct shardset {
    const config_t *cfg;
    proc_script_t **scripts;     /* the host's, per stream: the version new shards start with */
    breaker_t *breakers;         /* the host's, per stream */
    lease_coord_t *coord;        /* the host's (shardset_attach) */
    shardsync_t *sync;           /* the host's (shardset_attach) */
    shard_env_t env;             /* every shard's environment; its ud is the set */
    shard_t **shards;            /* running, in no particular order; owned by the set */
    size_t nshards, cap;
    int stopping;                /* shardset_stop: no new shards, every lease released */
    shardset_host_t host;
    void *host_ud;
} shardset_t;

/* env: the shards' environment as the host sets it up (sched, source, dead
 * letters, budget, worker id, Lua path, limits); its coord, ud and callbacks
 * are the set's. scripts and breakers (per configured stream) stay the
 * host's and must outlive the set. */
void shardset_init(shardset_t *ss, const config_t *cfg, proc_script_t **scripts, breaker_t *breakers,
                   const shard_env_t *env, const shardset_host_t *host, void *host_ud);
/* The coordinator's handler; pass the set as its ud (lease_coord_new). */
const lease_coord_handler_t *shardset_coord_handler(void);
/* The coordinator (made with the set's handler) and shard sync to use. */
void shardset_attach(shardset_t *ss, lease_coord_t *coord, shardsync_t *sync);
/* Frees every shard still in the set (no callbacks) and the set's memory. */
void shardset_free(shardset_t *ss);

shard_t *shardset_find(const shardset_t *ss, const char *key);
/* The lease is of a configured stream, its parents are finished, and it is
 * not a finished shard's row come back (shardsync_resurrected). */
int shardset_runnable(const shardset_t *ss, const lease_t *lease, const lease_list_t *all);
/* Shard sync completed a run: leases may have been created, scan for them
 * now (unless stopping). */
void shardset_synced(shardset_t *ss);
/* Graceful stop: take nothing more, shut every shard down (each ends with
 * its last checkpoint written and its lease released). */
void shardset_stop(shardset_t *ss);

#endif
