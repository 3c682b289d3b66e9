/* sim: runs seeds of the deterministic simulation (see sim.h) and reports.
 *
 *   build/tests/sim                 the regression seeds, then seeds 1..SIM_SEEDS (default 2000)
 *   SIM_SEEDS=N                     N seeds (from SIM_SEED_BASE, default 1)
 *   SIM_SEED=S                      that seed alone (SIM_TRACE=1: what happened, step by step;
 *                                   SIM_LOG=1: the runtime's own log lines too)
 *
 * One line per failing seed (what broke, where, and how to replay it), then
 * a summary: seeds run, steps, invariant checks. Exit 1 if a seed failed.
 * Each run's first seed is run twice: the two runs must agree step for step
 * (their digests), or replaying a seed would mean nothing. */
#include "sim.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "base/xalloc.h"
#include "simcheck.h"
#include "simsource.h"
#include "simstore.h"
#include "simworker.h"

#define SIM_TICK_MS 250
#define SIM_START_MS 1000000         /* virtual time starts here (0 would be a special value to nobody, but why risk it) */

/* Seeds that broke an invariant, run every time whatever SIM_SEEDS says (a
 * regression test each: the seed, and what it catches when its fix is
 * taken out again, checked on the code as fixed). */
static const struct {
    uint64_t seed;
    const char *caught;
} sim_regressions[] = {
    {1, "a shard whose read was in flight when it stopped was never freed: the worker never exited, and no "
        "worker of it ever took that lease again (records stalled)"},
    {3, "a lease stolen from a live owner (handoff request unanswered) was dispatched at once, while the owner "
        "could still dispatch until its own deadline"},
    {56, "a lease stolen from a live owner was released or handed on before that owner's deadline, and the "
         "next holder dispatched at once"},
    {307, "a steal that landed without the stealer holding it (answered with an error although written) was "
          "released at once, and a third worker dispatched while the owner still could"},
    {373, "a stopping worker exited with a lease left in its name (a handoff granted as it withdrew, a write "
          "answered with an error although carried out): the lease waited to expire"},
    {1152, "the same: a worker that stopped gracefully left a lease in its name"},
    {122, "a finished parent's row that came back (a late create) was taken and processed again"},
    {1991, "a finished parent's row that came back was processed again, after its children"},
    {4277, "a shard sync acting on a scan older than a lease (its worker paused) brought a finished parent "
           "back, two generations after it"},
};

/* ---- randomness ------------------------------------------------------------------ */

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t sim_rand(sim_t *sim)
{
    uint64_t *s = sim->rng, r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17; /* xoshiro256** */
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

int64_t sim_range(sim_t *sim, int64_t lo, int64_t hi)
{
    if (hi <= lo) return lo;
    return lo + (int64_t)(sim_rand(sim) % (uint64_t)(hi - lo + 1));
}

int sim_chance(sim_t *sim, double p)
{
    return (double)(sim_rand(sim) >> 11) * (1.0 / 9007199254740992.0) < p;
}

int sim_fault(sim_t *sim, double p)
{
    return sim->faults && sim_chance(sim, p * sim->p.fault_rate);
}

int64_t sim_latency(sim_t *sim)
{
    int64_t r = sim_range(sim, 0, 999);
    if (sim->faults && r < (int64_t)(3 * sim->p.fault_rate)) {
        sim->stats.store_late++;
        return sim_range(sim, 8000, 2 * sim->p.lease_duration_ms);
    }
    if (r < 10) return sim_range(sim, 1000, 6000);
    if (r < 100) return sim_range(sim, 20, 1000);
    return sim_range(sim, 1, 20);
}

static void sim_seed_rng(sim_t *sim, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) { /* splitmix64 */
        uint64_t z = (x += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        sim->rng[i] = z ^ (z >> 31);
    }
}

/* ---- reporting -------------------------------------------------------------------- */

void sim_digest(sim_t *sim, uint64_t v)
{
    sim->digest = (sim->digest ^ v) * 0x100000001b3ull;
}

void sim_fail(sim_t *sim, const char *fmt, ...)
{
    if (sim->failure[0]) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sim->failure, sizeof sim->failure, fmt, ap);
    va_end(ap);
    if (sim->trace) fprintf(stderr, "t=%" PRId64 " step=%" PRIu64 " FAIL %s\n", sim->now, sim->steps, sim->failure);
}

void sim_trace(sim_t *sim, const char *fmt, ...)
{
    if (!sim->trace) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "t=%" PRId64 " step=%" PRIu64 " ", sim->now, sim->steps);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ---- the world's events ---------------------------------------------------------------- */

typedef enum { EV_TICK, EV_RESUME, EV_JOIN } event_kind_t;

struct sim_event {
    sched_timer_t timer;
    sim_t *sim;
    event_kind_t kind;
    simworker_t *w;
    sim_event_t *next;
};

static void sim_on_event(sched_timer_t *t);

static void sim_schedule(sim_t *sim, event_kind_t kind, simworker_t *w, int64_t after_ms)
{
    sim_event_t *e = xcalloc(1, sizeof *e); /* freed at the end of the run */
    e->sim = sim;
    e->kind = kind;
    e->w = w;
    e->next = sim->events;
    sim->events = e;
    if (kind == EV_JOIN) sim->joins_pending++;
    sched_timer_init(&e->timer, sim_on_event, e);
    sched_timer_start(&sim->world.base, &e->timer, after_ms);
}

/* A worker still running (not gone, not on its way out). */
static int sim_running(const simworker_t *w)
{
    return w->live && !w->stopping && !w->exiting;
}

static simworker_t *sim_pick_running(sim_t *sim, int unpaused)
{
    simworker_t *c[64];
    size_t n = 0;
    for (size_t i = 0; i < sim->nworkers && n < 64; i++)
        if (sim_running(sim->workers[i]) && (!unpaused || !sim->workers[i]->paused)) c[n++] = sim->workers[i];
    return n ? c[sim_range(sim, 0, (int64_t)n - 1)] : NULL;
}

static size_t sim_count_running(sim_t *sim)
{
    size_t n = 0;
    for (size_t i = 0; i < sim->nworkers; i++) n += (size_t)sim_running(sim->workers[i]);
    return n;
}

/* Per tick, the chance of an event the run draws `count` of over its faults. */
static int sim_draw(sim_t *sim, int count)
{
    return count > 0 && sim_chance(sim, (double)count / ((double)sim->p.fault_ms / SIM_TICK_MS));
}

static void sim_faulty_tick(sim_t *sim)
{
    const sim_params_t *p = &sim->p;
    int64_t n = sim_range(sim, 0, (int64_t)(2 * p->record_rate * SIM_TICK_MS / 1000.0));
    if (n) simsource_put(sim->source, (int)n);
    if (sim_draw(sim, p->reshards)) {
        if (sim_chance(sim, 0.5) ? simsource_split(sim->source) : simsource_merge(sim->source))
            simsource_split(sim->source);
    }
    sim->stats.records += (uint64_t)n;
    simworker_t *w;
    if (sim_draw(sim, p->pauses) && (w = sim_pick_running(sim, 1))) {
        int64_t ms = sim_range(sim, 200, 3 * p->lease_duration_ms);
        sim_trace(sim, "worker_pause worker=%s ms=%" PRId64, w->id, ms);
        w->paused = 1;
        sim->stats.pauses++;
        sim_schedule(sim, EV_RESUME, w, ms);
    }
    if (sim_draw(sim, p->crashes) && (w = sim_pick_running(sim, 0))) {
        simworker_crash(w, "simulated crash");
        sim->stats.crashes++;
        sim_schedule(sim, EV_JOIN, NULL, sim_range(sim, 0, 2 * p->lease_duration_ms));
    }
    if (sim_draw(sim, p->stops) && (w = sim_pick_running(sim, 1))) {
        simworker_stop(w);
        sim->stats.stops++;
        sim_schedule(sim, EV_JOIN, NULL, sim_range(sim, 0, p->lease_duration_ms));
    }
}

/* After the faults: quiet once every record was processed and every closed
 * shard ended; then every worker stops gracefully, and the run ends when
 * all exited. */
static int sim_quiet_tick(sim_t *sim)
{
    if (!sim->stopping_all) {
        if (!sim_count_running(sim) && !sim->joins_pending) simworker_start(sim);
        if (sim->now < sim->calm_ms || !simsource_all_processed(sim->source) || !simcheck_all_ended(sim)) return 0;
        sim_trace(sim, "quiet: every record processed, every closed shard ended; stopping every worker");
        sim->stopping_all = 1;
    }
    int left = 0;
    for (size_t i = 0; i < sim->nworkers; i++) {
        simworker_t *w = sim->workers[i];
        if (w->live && !w->paused) simworker_stop(w); /* a paused one acts once it resumes */
        left += w->live;
    }
    return !left;
}

static void sim_on_event(sched_timer_t *t)
{
    sim_event_t *e = t->data;
    sim_t *sim = e->sim;
    switch (e->kind) {
    case EV_TICK:
        if (sim->faults && sim->now >= SIM_START_MS + sim->p.fault_ms) {
            sim->faults = 0;
            sim->calm_ms = sim->now + 4 * sim->p.lease_duration_ms; /* a request and its answer, each up to 2 leases late */
            sim_trace(sim, "faults_end records=%zu shards=%zu", simsource_records(sim->source),
                      simsource_count(sim->source));
        }
        if (sim->faults) sim_faulty_tick(sim);
        else if (sim_quiet_tick(sim)) {
            sim->done = 1;
            return;
        }
        sched_timer_start(&sim->world.base, t, SIM_TICK_MS);
        return;
    case EV_RESUME:
        sim_trace(sim, "worker_resume worker=%s", e->w->id);
        e->w->paused = 0;
        return;
    case EV_JOIN:
        sim->joins_pending--;
        if (!sim->stopping_all && (int)sim_count_running(sim) < sim->p.max_workers) {
            simworker_start(sim);
            sim->stats.joins++;
        }
        return;
    }
}

/* ---- one run -------------------------------------------------------------------------- */

static void sim_params(sim_t *sim)
{
    sim_params_t *p = &sim->p;
    p->lease_duration_ms = 10000;
    p->renew_interval_ms = p->lease_duration_ms / 3;
    p->taker_interval_ms = 2000;
    p->max_steal = sim_range(sim, 1, 3);
    p->sync_interval_ms = sim_range(sim, 5, 60) * 1000;
    p->min_poll_ms = sim_range(sim, 0, 50);
    p->initial_workers = (int)sim_range(sim, 1, 4);
    p->max_workers = 5;
    p->initial_shards = (int)sim_range(sim, 1, 6);
    p->fault_ms = sim_range(sim, 60, 180) * 1000;
    p->quiet_limit_ms = 600000;
    p->fault_rate = (double)sim_range(sim, 3, 30) / 10.0;
    p->record_rate = (double)sim_range(sim, 2, 40);
    p->pauses = (int)sim_range(sim, 0, 4);
    p->crashes = (int)sim_range(sim, 0, 3);
    p->stops = (int)sim_range(sim, 0, 2);
    p->reshards = (int)sim_range(sim, 0, 4);
}

static void sim_config(sim_t *sim)
{
    config_t *cfg = &sim->cfg;
    const sim_params_t *p = &sim->p;
    static config_stream_t stream;
    memset(cfg, 0, sizeof *cfg);
    memset(&stream, 0, sizeof stream);
    stream.name = "sim";
    stream.processor = "sim.lua";
    stream.initial_position = POS_TRIM_HORIZON;
    stream.policy = (policy_config_t){.retries = -1, .backoff_ms = sim_range(sim, 10, 500),
                                      .max_backoff_ms = 5000, .isolate = (int)sim_range(sim, 0, 1),
                                      .final = FINAL_HALT};
    stream.max_records = sim_chance(sim, 0.2) ? sim_range(sim, 1, 4) : sim_range(sim, 5, 100);
    if (stream.max_records < 5 && sim->p.record_rate > 5) sim->p.record_rate = 5; /* else it never catches up */
    stream.checkpoint_interval_ms = sim_chance(sim, 0.5) ? 0 : sim_range(sim, 100, 5000);
    stream.prefetch_batches = sim_range(sim, 1, 3);
    stream.idle_time_between_reads_ms = sim_range(sim, 100, 1000);
    stream.max_emit_buffer_mb = 32; /* the config's default (the simulation emits nothing) */
    cfg->application = "sim";
    cfg->leases.type = BACKEND_LOCAL;
    cfg->leases.path = "sim-leases.db";
    cfg->leases.table = "sim";
    cfg->streams = &stream;
    cfg->nstreams = 1;
    cfg->lease_duration_ms = p->lease_duration_ms;
    cfg->renew_interval_ms = p->renew_interval_ms;
    cfg->taker_interval_ms = p->taker_interval_ms;
    cfg->max_steal = p->max_steal;
    cfg->shard_sync_interval_ms = p->sync_interval_ms;
    cfg->shutdown_grace_ms = 30000;
}

typedef struct sim_result {
    int failed;
    uint64_t steps, digest;
    simcheck_counts_t counts;
    sim_stats_t stats;
    char failure[4200];
    int64_t end_ms;
} sim_result_t;

/* The node whose next timer fires first: the world, or a worker not paused. */
static vsched_t *sim_next_node(sim_t *sim)
{
    vsched_t *best = NULL;
    const sched_timer_t *bt = vsched_next(&sim->world);
    if (bt) best = &sim->world;
    for (size_t i = 0; i < sim->nworkers; i++) {
        simworker_t *w = sim->workers[i];
        if (!w->live || w->paused) continue;
        const sched_timer_t *t = vsched_next(&w->vs);
        int64_t due = t ? (t->due_ms > sim->now ? t->due_ms : sim->now) : 0;
        int64_t bdue = bt ? (bt->due_ms > sim->now ? bt->due_ms : sim->now) : 0;
        if (t && (!bt || due < bdue)) {
            best = &w->vs;
            bt = t;
        }
    }
    return best;
}

static void sim_run(uint64_t seed, int trace, sim_result_t *out)
{
    sim_t *sim = xcalloc(1, sizeof *sim);
    sim->seed = seed;
    sim->trace = trace;
    sim_seed_rng(sim, seed);
    sim_params(sim);
    sim_config(sim);
    sim->now = SIM_START_MS;
    sim->faults = 1;
    vsched_init(&sim->world, sim->now);
    sim->source = simsource_new(sim, sim->p.initial_shards);
    sim->store = simstore_new(sim);
    sim->check = simcheck_new(sim);
    /* a stream resharded before the application first ran (its children
     * must still wait for their parents) */
    if (sim_chance(sim, 0.3)) {
        for (int64_t i = sim_range(sim, 1, 3); i > 0; i--) {
            simsource_put(sim->source, (int)sim_range(sim, 0, 50));
            if (sim_chance(sim, 0.5) ? simsource_split(sim->source) : simsource_merge(sim->source))
                simsource_split(sim->source);
        }
    }
    sim_trace(sim, "run seed=%" PRIu64 " workers=%d shards=%zu fault_ms=%" PRId64 " fault_rate=%.1f records/s=%.0f "
              "pauses=%d crashes=%d stops=%d reshards=%d max_records=%lld cp_interval=%lld isolate=%d",
              seed, sim->p.initial_workers, simsource_count(sim->source), sim->p.fault_ms, sim->p.fault_rate,
              sim->p.record_rate, sim->p.pauses, sim->p.crashes, sim->p.stops, sim->p.reshards,
              (long long)sim->cfg.streams[0].max_records, (long long)sim->cfg.streams[0].checkpoint_interval_ms,
              sim->cfg.streams[0].policy.isolate);
    for (int i = 0; i < sim->p.initial_workers; i++) sim_schedule(sim, EV_JOIN, NULL, sim_range(sim, 0, 3000));
    sim_schedule(sim, EV_TICK, NULL, SIM_TICK_MS);
    int64_t limit = SIM_START_MS + sim->p.fault_ms + sim->p.quiet_limit_ms;
    while (!sim->done && !sim->failure[0]) {
        vsched_t *node = sim_next_node(sim);
        if (!node) {
            sim_fail(sim, "nothing left to happen at t=%" PRId64 " (no timer anywhere)", sim->now);
            break;
        }
        const sched_timer_t *t = vsched_next(node);
        if (t->due_ms > sim->now) sim->now = t->due_ms;
        if (sim->now > limit) {
            simcheck_end(sim);
            if (!sim->failure[0])
                sim_fail(sim, "not quiet %" PRId64 " ms after the faults stopped: every record was processed, "
                         "but the workers did not all stop gracefully", sim->p.quiet_limit_ms);
            break;
        }
        vsched_set_now(&sim->world, sim->now);
        for (size_t i = 0; i < sim->nworkers; i++)
            if (sim->workers[i]->live) vsched_set_now(&sim->workers[i]->vs, sim->now);
        sim_digest(sim, (uint64_t)sim->now * 131 + (uint64_t)(node == &sim->world ? 0 : 1));
        vsched_fire_next(node);
        sim->steps++;
        for (size_t i = 0; i < sim->nworkers; i++) simworker_reap(sim->workers[i]);
        simcheck_step(sim);
    }
    if (!sim->failure[0]) simcheck_end(sim);
    if (!sim->failure[0]) {
        const lease_list_t *table = simstore_table(sim->store);
        for (size_t i = 0; i < table->count && !sim->failure[0]; i++) {
            const lease_t *l = &table->leases[i];
            for (size_t k = 0; l->owner && k < sim->nworkers; k++)
                if (!strcmp(sim->workers[k]->id, l->owner) && sim->workers[k]->stopped_quiet &&
                    sim->workers[k]->exit_reason && !strcmp(sim->workers[k]->exit_reason, "exited"))
                    sim_fail(sim, "worker %s stopped gracefully (no faults), but lease %s (checkpoint %s) still "
                             "names it as its owner", l->owner, l->key, l->checkpoint);
        }
    }
    out->failed = sim->failure[0] != 0;
    snprintf(out->failure, sizeof out->failure, "step=%" PRIu64 " t=%" PRId64 ": %s", sim->steps, sim->now,
             sim->failure);
    out->steps = sim->steps;
    out->digest = sim->digest;
    out->counts = simcheck_counts(sim->check);
    out->stats = sim->stats;
    out->end_ms = sim->now;
    /* every timer is forgotten before the objects holding them are freed */
    vsched_drop_all(&sim->world);
    for (size_t i = 0; i < sim->nworkers; i++) simworker_free(sim->workers[i]);
    free(sim->workers);
    simstore_free(sim->store);
    simsource_free(sim->source);
    simcheck_free(sim->check);
    while (sim->events) {
        sim_event_t *e = sim->events;
        sim->events = e->next;
        free(e);
    }
    vsched_free(&sim->world);
    free(sim);
}

/* ---- main ------------------------------------------------------------------------------ */

static uint64_t sim_env_u64(const char *name, uint64_t dflt)
{
    const char *v = getenv(name);
    return v && *v ? strtoull(v, NULL, 10) : dflt;
}

int main(int argc, char **argv)
{
    const char *self = argc > 0 ? argv[0] : "build/tests/sim";
    int trace = getenv("SIM_TRACE") && *getenv("SIM_TRACE") == '1';
    if (getenv("SIM_LOG") && *getenv("SIM_LOG") == '1') log_set_level(LOG_DEBUG);
    else log_set_level((log_level_t)(LOG_ERROR + 1));
    const char *one = getenv("SIM_SEED");
    uint64_t nseeds = sim_env_u64("SIM_SEEDS", 2000), base = sim_env_u64("SIM_SEED_BASE", 1);
    size_t nreg = 0;
    uint64_t *seeds;
    size_t n = 0;
    if (one && *one) {
        seeds = xcalloc(1, sizeof *seeds);
        seeds[n++] = strtoull(one, NULL, 10);
    } else {
        for (size_t i = 0; i < sizeof sim_regressions / sizeof *sim_regressions; i++) nreg += sim_regressions[i].caught != NULL;
        seeds = xcalloc(nreg + nseeds + 1, sizeof *seeds);
        for (size_t i = 0; i < sizeof sim_regressions / sizeof *sim_regressions; i++)
            if (sim_regressions[i].caught) seeds[n++] = sim_regressions[i].seed;
        for (uint64_t i = 0; i < nseeds; i++) seeds[n++] = base + i;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint64_t steps = 0, failed = 0;
    simcheck_counts_t total = {0};
    sim_stats_t inj = {0};
    for (size_t i = 0; i < n; i++) {
        sim_result_t r;
        sim_run(seeds[i], trace, &r);
        if (i == 0 && !trace) {
            sim_result_t again;
            sim_run(seeds[i], 0, &again);
            if (again.digest != r.digest || again.steps != r.steps) {
                printf("sim: FAIL seed=%" PRIu64 ": two runs of the seed differ (steps %" PRIu64 " and %" PRIu64
                       ", digests %016" PRIx64 " and %016" PRIx64 "): something reads the wall clock, a thread or "
                       "an address\n", seeds[i], r.steps, again.steps, r.digest, again.digest);
                failed++;
            }
        }
        steps += r.steps;
        total.inv1 += r.counts.inv1;
        total.inv2 += r.counts.inv2;
        total.inv3 += r.counts.inv3;
        total.inv4 += r.counts.inv4;
        uint64_t *to = (uint64_t *)&inj;
        const uint64_t *from = (const uint64_t *)&r.stats;
        for (size_t k = 0; k < sizeof inj / sizeof *to; k++) to[k] += from[k];
        if (r.failed) {
            failed++;
            printf("sim: FAIL seed=%" PRIu64 "%s %s\n  replay: SIM_SEED=%" PRIu64 " SIM_TRACE=1 %s\n", seeds[i],
                   i < nreg ? " (a regression seed)" : "", r.failure, seeds[i], self);
        } else if (one && *one) {
            printf("sim: seed=%" PRIu64 " ok steps=%" PRIu64 " virtual_ms=%" PRId64 " digest=%016" PRIx64 "\n",
                   seeds[i], r.steps, r.end_ms - SIM_START_MS, r.digest);
        }
        fflush(stdout);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("sim: seeds=%zu (regressions %zu) passed=%" PRIu64 " failed=%" PRIu64 " steps=%" PRIu64
           " invariant_checks=%" PRIu64 " (1: %" PRIu64 " 2: %" PRIu64 " 3: %" PRIu64 " 4: %" PRIu64 ")"
           " seconds=%.1f\n",
           n, nreg, (uint64_t)n - failed, failed, steps, total.inv1 + total.inv2 + total.inv3 + total.inv4,
           total.inv1, total.inv2, total.inv3, total.inv4, secs);
    printf("sim: injected: pauses=%" PRIu64 " crashes=%" PRIu64 " graceful_stops=%" PRIu64 " joins=%" PRIu64
           " splits=%" PRIu64 " merges=%" PRIu64 " store_errors=%" PRIu64 " store_answers_lost=%" PRIu64
           " store_duplicates=%" PRIu64 " late_messages=%" PRIu64 " source_errors=%" PRIu64
           " iterators_expired=%" PRIu64 " batch_errors=%" PRIu64 " batch_failed_at=%" PRIu64 " slow_batches=%" PRIu64
           "\n", inj.pauses, inj.crashes, inj.stops, inj.joins, inj.splits, inj.merges, inj.store_errors,
           inj.store_lost_answers, inj.store_duplicates, inj.store_late, inj.source_errors, inj.iterators_expired,
           inj.job_errors, inj.job_failed, inj.slow_jobs);
    free(seeds);
    return failed ? 1 : 0;
}
