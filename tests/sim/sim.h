/* sim: the deterministic simulation of a fleet of shardrun workers.
 *
 * In the spirit of FoundationDB's simulation testing: the real lease
 * coordinator (lease_coord.c, lease_plan.c), the real shards (shard.c,
 * fetch.c, checkpoint.c, policy.c), the real glue between them (shardset.c)
 * and the real shard sync (shardsync.c) run against simulated time, a
 * simulated lease store and stream, and a simulated processor. Everything
 * that varies (latencies, faults, decisions, pauses, crashes, resharding)
 * is drawn from one PRNG seeded by the run's seed; nothing reads the wall
 * clock and nothing runs on another thread, so a seed replays exactly.
 *
 * The world is a set of nodes, each with its own virtual-time scheduler
 * (vsched): node 0 is the world itself (the store applying writes, the
 * stream, the fault schedule), the others are workers. Every clock shows
 * the same time; a paused worker's timers (its own, and the answers
 * travelling to it) wait until it resumes and then fire late, as after a
 * SIGSTOP. One step fires one timer; the invariants (simcheck.h) are
 * checked after every step.
 *
 * Files: sim.c (seeds, scenario, the fault schedule, the step loop),
 * simworker (a worker: coordinator + shards + glue + shard sync),
 * simstore (the faulty lease store), simsource (the stream and its faulty
 * reads), simproc (the processor), simcheck (the truth and the invariants). */
#ifndef SHARDRUN_SIM_H
#define SHARDRUN_SIM_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "vsched.h"

typedef struct sim sim_t;
typedef struct simworker simworker_t;
typedef struct simstore simstore_t;
typedef struct simsource simsource_t;
typedef struct simcheck simcheck_t;
typedef struct sim_event sim_event_t;

/* What a run draws once from its seed: the shape of the world and how
 * hostile it is. */
typedef struct sim_params {
    int64_t lease_duration_ms, renew_interval_ms, taker_interval_ms, max_steal;
    int64_t sync_interval_ms;
    int64_t min_poll_ms;           /* the source's per-shard read interval */
    int initial_workers, max_workers;
    int initial_shards;
    int64_t fault_ms;              /* faults, records and reshards happen before this */
    int64_t quiet_limit_ms;        /* after fault_ms: everything processed by then */
    double fault_rate;             /* scales every fault probability */
    double record_rate;            /* records per second over the stream */
    int pauses, crashes, stops, reshards;   /* how many the schedule draws (at most) */
} sim_params_t;

/* What a run injected (the summary shows that the faults happen). */
typedef struct sim_stats {
    uint64_t pauses, crashes, stops, joins, splits, merges, records;
    uint64_t store_errors, store_lost_answers, store_duplicates, store_late;
    uint64_t source_errors, iterators_expired, job_errors, job_failed, slow_jobs;
} sim_stats_t;

struct sim {
    uint64_t seed;
    uint64_t rng[4];               /* xoshiro256**: the run's only source of randomness */
    sim_params_t p;
    config_t cfg;                  /* one stream, as config_load would build it */
    int64_t now;                   /* the time every clock shows */
    vsched_t world;                /* node 0 */
    simworker_t **workers;         /* every worker ever started (dead ones stay, for the truth) */
    size_t nworkers;
    simstore_t *store;
    simsource_t *source;
    simcheck_t *check;
    sim_event_t *events;           /* the world's, every one scheduled (freed at the end of the run) */
    int joins_pending;             /* workers to start, scheduled */
    int stopping_all;              /* quiet: every worker stops gracefully */
    int done;                      /* every worker exited after the quiet phase */
    int faults;                    /* 1 until fault_ms: faults, records, reshards */
    int64_t calm_ms;               /* from then on, nothing sent during the faults is still on its way */
    int trace;                     /* SIM_TRACE: print what happens */
    uint64_t steps;
    uint64_t digest;               /* of what happened: two runs of one seed must agree */
    sim_stats_t stats;
    char failure[4096];            /* the first invariant broken ("" while none) */
};

/* ---- randomness ------------------------------------------------------------- */

uint64_t sim_rand(sim_t *sim);
/* Uniform in [lo, hi]. */
int64_t sim_range(sim_t *sim, int64_t lo, int64_t hi);
/* 1 with probability p. */
int sim_chance(sim_t *sim, double p);
/* A fault happens (probability p scaled by the run's fault rate; never once faults stopped). */
int sim_fault(sim_t *sim, double p);
/* A one-way network delay: mostly short, sometimes long, rarely (with
 * faults on) longer than a lease. */
int64_t sim_latency(sim_t *sim);

/* ---- the run ------------------------------------------------------------------ */

/* Records that something broke (the first failure wins) and stops the run. */
void sim_fail(sim_t *sim, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sim_trace(sim_t *sim, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Mixes a fact into the run's digest. */
void sim_digest(sim_t *sim, uint64_t v);

#endif
