#include "simworker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/xalloc.h"
#include "simproc.h"
#include "simsource.h"
#include "simstore.h"

#define SIMWORKER_EXIT_CHECK_MS 100     /* worker.c: WORKER_DRAIN_CHECK_S while stopping */
#define SIMWORKER_GRACE_MS 30000        /* config: shutdown_grace_ms' default */

static void simworker_teardown(simworker_t *w);

/* ---- the host of the set: what worker.c does for it ---------------------------- */

static void simworker_submit(void *ud, proc_job_t *job)
{
    simproc_submit(ud, job);
}

static void simworker_halt(void *ud, shard_t *s)
{
    simworker_t *w = ud;
    sim_fail(w->sim, "worker %s: shard %s asked to halt the worker (the policy never halts)", w->id, shard_id(s));
}

static void simworker_tripped(void *ud, shard_t *s, const char *why)
{
    simworker_t *w = ud;
    sim_fail(w->sim, "worker %s: shard %s tripped the breaker (it is off): %s", w->id, shard_id(s), why);
}

/* worker_maybe_exit: a stopping worker exits once its shards closed and no
 * lease write is pending. As worker.c breaks out of its loop and frees
 * everything after, the worker is freed after the step (simworker_reap):
 * this may run deep inside the coordinator's or a shard's callbacks. */
static void simworker_maybe_exit(simworker_t *w)
{
    if (!w->live || !w->stopping || w->exiting || w->set.nshards || lease_coord_pending(w->coord)) return;
    sim_trace(w->sim, "worker_exit worker=%s", w->id);
    w->exiting = "exited";
}

static void simworker_closed(void *ud)
{
    simworker_maybe_exit(ud);
}

static void simworker_store_unusable(void *ud, const char *msg)
{
    simworker_t *w = ud;
    sim_fail(w->sim, "worker %s: the lease store was judged unusable: %s", w->id, msg ? msg : "-");
}

static void simworker_synced(void *ud)
{
    simworker_t *w = ud;
    shardset_synced(&w->set);
}

static void simworker_sync_failed(void *ud, int status, const char *msg)
{
    simworker_t *w = ud;
    sim_fail(w->sim, "worker %s: shard sync failed for good (status %d): %s", w->id, status, msg ? msg : "-");
}

/* ---- its timers ------------------------------------------------------------------- */

static void simworker_on_sync(sched_timer_t *t)
{
    simworker_t *w = t->data;
    sched_timer_start(&w->vs.base, t, w->sim->p.sync_interval_ms);
    shardsync_run(w->sync);
}

static void simworker_on_exit_check(sched_timer_t *t)
{
    simworker_t *w = t->data;
    sched_timer_start(&w->vs.base, t, SIMWORKER_EXIT_CHECK_MS);
    simworker_maybe_exit(w);
}

static void simworker_on_grace(sched_timer_t *t)
{
    simworker_t *w = t->data;
    /* worker.c exits without release here; in the simulation, a graceful
     * stop begun once nothing from the faults is on its way any more must
     * finish: one that does not is a failure of its own */
    if (w->stopped_quiet) {
        char left[1024] = "";
        size_t len = 0;
        for (size_t i = 0; i < w->set.nshards && len + 64 < sizeof left; i++)
            len += (size_t)snprintf(left + len, sizeof left - len, " %s:%s", shard_id(w->set.shards[i]),
                                    shard_state_name(shard_state(w->set.shards[i])));
        sim_fail(w->sim, "worker %s: a graceful stop did not finish within %d ms (shards left:%s; %zu writes "
                 "pending)", w->id, SIMWORKER_GRACE_MS, left, lease_coord_pending(w->coord));
    }
    w->exiting = "shutdown_grace_ms passed";
}

/* ---- life ---------------------------------------------------------------------------- */

simworker_t *simworker_start(sim_t *sim)
{
    simworker_t *w = xcalloc(1, sizeof *w); /* the run's: simworker_free */
    w->sim = sim;
    w->idx = (int)sim->nworkers;
    snprintf(w->id, sizeof w->id, "w%d", w->idx);
    sim->workers = xrealloc(sim->workers, (sim->nworkers + 1) * sizeof *sim->workers);
    sim->workers[sim->nworkers++] = w;
    vsched_init(&w->vs, sim->now);
    w->live = 1;
    w->started_ms = sim->now;
    w->store = simstore_connect(sim->store, w);
    w->source = simsource_connect(sim->source, w);
    /* the one stream's script: never loaded (no Lua runs), only referenced */
    w->script = xcalloc(1, sizeof *w->script);
    w->script->path = xstrdup("sim");
    w->script->code = xstrdup("");
    snprintf(w->script->hash, sizeof w->script->hash, "sim");
    w->script->refs = 1;
    breaker_init(&w->breaker, 0, 1.0);
    const config_t *cfg = &sim->cfg;
    lease_coord_options_t copt = {w->id, cfg->lease_duration_ms, cfg->renew_interval_ms, cfg->taker_interval_ms,
                                  cfg->max_steal, 1, NULL};
    w->coord = lease_coord_new(&w->vs.base, w->store, &copt, shardset_coord_handler(), &w->set);
    w->sync = shardsync_new(&w->vs.base, w->source, w->store, cfg, simworker_synced, simworker_sync_failed, w);
    shard_env_t env = {.sched = &w->vs.base, .source = w->source, .budget = &w->budget, .worker_id = w->id,
                       .min_poll_interval_ms = sim->p.min_poll_ms};
    shardset_host_t host = {.submit = simworker_submit, .halt_worker = simworker_halt,
                            .tripped = simworker_tripped, .closed = simworker_closed,
                            .store_unusable = simworker_store_unusable};
    shardset_init(&w->set, cfg, &w->script, &w->breaker, &env, &host, w);
    shardset_attach(&w->set, w->coord, w->sync);
    sched_timer_init(&w->sync_timer, simworker_on_sync, w);
    sched_timer_init(&w->exit_timer, simworker_on_exit_check, w);
    sched_timer_init(&w->grace_timer, simworker_on_grace, w);
    sched_timer_start(&w->vs.base, &w->sync_timer, sim->p.sync_interval_ms);
    sim_trace(sim, "worker_start worker=%s", w->id);
    shardsync_run(w->sync);
    lease_coord_start(w->coord);
    return w;
}

void simworker_stop(simworker_t *w)
{
    if (!w->live || w->stopping) return;
    w->stopping = 1;
    w->stopped_quiet = !w->sim->faults && w->sim->now >= w->sim->calm_ms;
    sim_trace(w->sim, "worker_stop worker=%s shards=%zu", w->id, w->set.nshards);
    sched_timer_stop(&w->vs.base, &w->sync_timer);
    sched_timer_start(&w->vs.base, &w->exit_timer, SIMWORKER_EXIT_CHECK_MS);
    sched_timer_start(&w->vs.base, &w->grace_timer, SIMWORKER_GRACE_MS);
    shardset_stop(&w->set);
    simworker_maybe_exit(w);
}

/* Frees what runs on the worker, in worker_close's order, without a single
 * callback: its timers are dropped first, so nothing fires meanwhile. */
static void simworker_teardown(simworker_t *w)
{
    w->live = 0;
    w->paused = 0;
    vsched_drop_all(&w->vs);
    shardset_free(&w->set);
    shardsync_free(w->sync);
    lease_store_destroy(w->store); /* drops pending writes: their callbacks never run */
    lease_coord_free(w->coord);
    source_destroy(w->source);
    simproc_drop(w);
    proc_script_unref(w->script);
    breaker_clear(&w->breaker);
    vsched_free(&w->vs);
    w->sync = NULL;
    w->store = NULL;
    w->coord = NULL;
    w->source = NULL;
    w->script = NULL;
}

void simworker_reap(simworker_t *w)
{
    if (!w->live || !w->exiting) return;
    w->exit_reason = w->exiting;
    simworker_teardown(w);
}

void simworker_crash(simworker_t *w, const char *why)
{
    if (!w->live) return;
    sim_trace(w->sim, "worker_crash worker=%s shards=%zu reason=\"%s\"", w->id, w->set.nshards, why);
    w->exit_reason = why;
    simworker_teardown(w);
}

void simworker_free(simworker_t *w)
{
    if (w->live) simworker_teardown(w);
    free(w);
}

size_t simworker_shards(const simworker_t *w)
{
    return w->live ? w->set.nshards : 0;
}
