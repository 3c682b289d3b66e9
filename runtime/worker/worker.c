#include "worker.h"

#include <ev.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "backends.h"
#include "destinations.h"
#include "base/buf.h"
#include "base/clock.h"
#include "shard/deadletter.h"
#include "faults.h"
#include "lease/lease_coord.h"
#include "local_lag.h"
#include "base/log.h"
#include "notify.h"
#include "base/metrics.h"
#include "metrics_server.h"
#include "proc/processor.h"
#include "preflight.h"
#include "reload.h"
#include "record/seqnum.h"
#include "shard/shard.h"
#include "shardset.h"
#include "shardsync.h"
#include "base/sched.h"
#include "base/tpool.h"
#include "base/xalloc.h"
#include "worker_metrics.h"

#define WORKER_DRAIN_CHECK_S 0.1

typedef struct worker {
    struct ev_loop *loop;
    config_t *cfg;               /* SIGHUP applies live changes in place */
    worker_options_t opt;
    char *id;
    aws_client_t *aws;           /* shared by source and store when either is AWS; freed after both */
    source_t *source;
    destinations_t dests;        /* the config's outputs, opened (shard.emit's destinations) */
    lease_store_t *store;
    lease_coord_t *coord;
    shardsync_t *sync;
    proc_pool_t *pool;
    deadletter_t *dead_letters;
    sched_t *sched;              /* timers and clock of the coordinator and the shards */
    fetch_budget_t budget;       /* max_buffered_mb over every shard's prefetched records */
    tpool_t *config_thread;      /* SIGHUP: the config (user Lua) is evaluated off the loop */
    int config_loading;          /* a SIGHUP's config is being evaluated */
    int config_again;            /* another SIGHUP came meanwhile */
    proc_script_t **scripts;     /* per configured stream: the version new shards start with */
    proc_script_t **previous;    /* per stream: the version before the last hot reload (breaker rollback), or NULL */
    breaker_t *breakers;         /* per stream: the poison-rate breaker over all its shards */
    reload_t *reload;
    shardset_t set;              /* the shards, and the glue between them and the coordinator */
    ev_signal sigterm, sigint, sighup;
    ev_timer sync_timer, drain_timer, grace_timer;
    notify_t notify;             /* systemd: READY after the first scan, the watchdog, STOPPING */
    int stopping;
    int exit_code;
    /* At the last scan: the keys of leases nobody held that we could take,
     * or held by a worker not seen alive (yet). A drain waits for each to be
     * ours, or for a later scan: the scan that finds a new lease unowned is
     * also the one that takes it, so no scan needs to come for that one. */
    char **unowned;
    size_t nunowned;
    int64_t scanned_after_sync;  /* shardsync_runs() seen complete at the last scan */
    int64_t started_ms;
    size_t unclean_at_stop;      /* lease_coord_unclean() when the shutdown began */
    metrics_t *metrics;          /* loop thread only; NULL: metrics off (no metrics.listen) */
    worker_metrics_t wm;
    metrics_server_t *metrics_server;
    local_lag_t *local_lag;      /* shardrun_records_behind (metrics on, local source) */
} worker_t;

char *worker_default_id(void)
{
    char host[256] = "localhost", id[512];
    if (gethostname(host, sizeof host - 1) != 0) snprintf(host, sizeof host, "localhost");
    unsigned r = (unsigned)clock_mono_us() ^ ((unsigned)getpid() << 16);
    FILE *f = fopen("/dev/urandom", "rb");
    if (f) {
        if (fread(&r, sizeof r, 1, f) != 1) r ^= (unsigned)time(NULL);
        fclose(f);
    }
    snprintf(id, sizeof id, "%s:%d:%08x", host, (int)getpid(), r);
    return xstrdup(id);
}

static void worker_maybe_exit(worker_t *w)
{
    if (w->stopping && w->set.nshards == 0 && lease_coord_pending(w->coord) == 0) ev_break(w->loop, EVBREAK_ALL);
}

/* ---- coordinator events (the rest is the set's: shardset.c) ------------------ */

static char *worker_describe(void *ud, shard_t *s)
{
    worker_t *w = ud;
    int idx = config_stream_index(w->cfg, shard_stream(s));
    return shard_describe(s, idx >= 0 && w->reload ? reload_error(w->reload, (size_t)idx) : NULL);
}

/* ---- the service manager (notify.c) --------------------------------------------- */

/* After a lease scan: the first one that follows a completed shard sync
 * makes the worker ready (every shard has its lease row, and the worker has
 * started taking its share). */
static void worker_notify_scanned(worker_t *w, const lease_list_t *all)
{
    if (w->stopping || w->scanned_after_sync == 0) return;
    size_t owned = 0;
    for (size_t i = 0; i < all->count; i++)
        owned += all->leases[i].owner && !strcmp(all->leases[i].owner, w->id);
    char status[200];
    snprintf(status, sizeof status, "running: %zu of %zu leases owned", owned, all->count);
    notify_ready(&w->notify, status);
}

static void worker_forget_unowned(worker_t *w)
{
    for (size_t i = 0; i < w->nunowned; i++) free(w->unowned[i]);
    free(w->unowned);
    w->unowned = NULL;
    w->nunowned = 0;
}

/* Of the leases the last scan found unowned, those this worker has not
 * taken since. */
static size_t worker_unowned_left(worker_t *w)
{
    size_t left = 0;
    for (size_t i = 0; i < w->nunowned; i++) left += lease_coord_owned(w->coord, w->unowned[i]) == NULL;
    return left;
}

static void worker_scanned(void *ud, const lease_list_t *all)
{
    worker_t *w = ud;
    worker_forget_unowned(w);
    for (size_t i = 0; i < all->count; i++) {
        const lease_t *l = &all->leases[i];
        if (l->invalid || !strcmp(l->checkpoint, SEQNUM_SHARD_END) || !shardset_runnable(&w->set, l, all)) continue;
        int mine = l->owner && !strcmp(l->owner, w->id);
        if (!l->owner || (!mine && !lease_coord_owner_alive(w->coord, l->key))) {
            if (!w->nunowned) w->unowned = xcalloc(all->count, sizeof *w->unowned); /* freed by worker_forget_unowned */
            w->unowned[w->nunowned++] = xstrdup(l->key);
        }
        shard_t *s = mine && l->control ? shardset_find(&w->set, l->key) : NULL;
        if (s) shard_control(s, l->control); /* `shardrun resume`, through the lease table */
    }
    if (!shardsync_busy(w->sync)) w->scanned_after_sync = shardsync_runs(w->sync);
    worker_notify_scanned(w, all);
}

/* ---- shard events (the rest is the set's: shardset.c) ------------------------ */

static void worker_shard_closed(void *ud)
{
    worker_maybe_exit(ud);
}

static void worker_halt(void *ud, shard_t *s)
{
    worker_t *w = ud;
    log_error("worker_halted", "stream=%s shard=%s reason=\"halt_worker = true\" exit=1", shard_stream(s),
              shard_id(s));
    w->exit_code = 1;
    ev_break(w->loop, EVBREAK_ALL);
}

static void worker_job_done(void *ud, proc_job_t *job)
{
    shard_job_done(job->ud, job);
}

static void worker_submit(void *ud, proc_job_t *job)
{
    worker_t *w = ud;
    proc_pool_submit(w->pool, job);
}

/* A backend that fails fatally before it ever worked will not start working
 * by itself (no credentials, no such stream or table): exit 1, clearly,
 * instead of retrying forever. */
static void worker_fail_start(void *ud, int status, const char *msg)
{
    worker_t *w = ud;
    if (w->exit_code) return;
    char q[2048];
    log_error("worker_cannot_start", "worker=%s error=%s exit=%d", w->id, log_quote(msg, q, sizeof q), status);
    fprintf(stderr, "shardrun: cannot start: %s\n", msg ? msg : "backend unusable");
    w->exit_code = status;
    ev_break(w->loop, EVBREAK_ALL);
}

static void worker_cannot_start(void *ud, const char *msg)
{
    worker_fail_start(ud, 1, msg);
}

static void worker_synced(void *ud)
{
    worker_t *w = ud;
    shardset_synced(&w->set);
}

/* ---- timers and signals ------------------------------------------------------ */

static void worker_on_sync(struct ev_loop *loop, ev_timer *t, int revents)
{
    shardsync_run(((worker_t *)t->data)->sync);
}

/* Names each lease still held when the worker gives up waiting: none of them
 * is released, and their last checkpoints may not be written. */
static void worker_log_unreleased(worker_t *w, const char *why)
{
    for (size_t i = 0; i < w->set.nshards; i++)
        log_error("lease_not_released", "lease=%s stream=%s shard=%s worker=%s reason=%s state=%s",
                  shard_key(w->set.shards[i]), shard_stream(w->set.shards[i]), shard_id(w->set.shards[i]), w->id, why,
                  shard_state_name(shard_state(w->set.shards[i])));
}

/* A shutdown that left leases unreleased or checkpoints unwritten (the
 * coordinator named each) is not a clean exit. */
static void worker_check_clean_stop(worker_t *w)
{
    if (!w->stopping || w->exit_code) return;
    size_t unclean = lease_coord_unclean(w->coord) - w->unclean_at_stop;
    if (!unclean) return;
    log_error("shutdown_unclean", "worker=%s leases=%zu action=\"each expires after lease_duration; records after "
              "its last written checkpoint are processed again\" exit=1", w->id, unclean);
    w->exit_code = 1;
}

static void worker_on_grace(struct ev_loop *loop, ev_timer *t, int revents)
{
    worker_t *w = t->data;
    worker_log_unreleased(w, "\"shutdown_grace_ms passed\"");
    log_error("shutdown_timeout", "shards_left=%zu grace_ms=%lld action=\"exit without release; leases expire\"",
              w->set.nshards, (long long)w->cfg->shutdown_grace_ms);
    w->exit_code = 1;
    ev_break(loop, EVBREAK_ALL);
}

static void worker_stop(worker_t *w, const char *why)
{
    if (w->stopping) return;
    w->stopping = 1;
    w->unclean_at_stop = lease_coord_unclean(w->coord);
    log_info("worker_stopping", "worker=%s reason=%s shards=%zu", w->id, why, w->set.nshards);
    char status[128];
    snprintf(status, sizeof status, "stopping (%s): releasing %zu shards", why, w->set.nshards);
    notify_stopping(&w->notify, w->cfg->shutdown_grace_ms, status);
    ev_timer_stop(w->loop, &w->sync_timer);
    /* The drain timer now polls for the exit: a release written by an
     * asynchronous store (DynamoDB) may complete after the last shard closed,
     * and nothing else would look again. */
    ev_timer_stop(w->loop, &w->drain_timer);
    ev_timer_set(&w->drain_timer, WORKER_DRAIN_CHECK_S, WORKER_DRAIN_CHECK_S);
    ev_timer_start(w->loop, &w->drain_timer);
    if (w->cfg->shutdown_grace_ms > 0) {
        ev_timer_set(&w->grace_timer, (double)w->cfg->shutdown_grace_ms / 1000.0, 0.0);
        ev_timer_start(w->loop, &w->grace_timer);
    }
    shardset_stop(&w->set);
    worker_maybe_exit(w);
}

static void worker_on_signal(struct ev_loop *loop, ev_signal *sig, int revents)
{
    worker_t *w = sig->data;
    if (w->stopping) {
        worker_log_unreleased(w, "\"second signal\"");
        log_warn("worker_killed", "signal=%d action=\"exit now; leases expire\"", sig->signum);
        w->exit_code = 1;
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    worker_stop(w, sig->signum == SIGINT ? "SIGINT" : "SIGTERM");
}

/* ---- hot reload and SIGHUP ------------------------------------------------------ */

/* Every shard of stream idx runs `script` from its next batch; halted ones
 * get their chance with it. The worker keeps the version replaced (one
 * reference) for a breaker rollback. */
static void worker_use_script(worker_t *w, size_t idx, proc_script_t *script, const char *why)
{
    const char *stream = w->cfg->streams[idx].name;
    char previous[sizeof w->scripts[idx]->hash];
    snprintf(previous, sizeof previous, "%s", w->scripts[idx]->hash);
    proc_script_unref(w->previous[idx]);
    w->previous[idx] = w->scripts[idx];
    w->scripts[idx] = script;
    worker_metrics_script(&w->wm, idx, script->hash);
    breaker_reset(&w->breakers[idx]);
    size_t n = 0, resumed = 0;
    for (size_t i = 0; i < w->set.nshards; i++) {
        if (strcmp(shard_stream(w->set.shards[i]), stream)) continue;
        shard_set_script(w->set.shards[i], script);
        n++;
    }
    log_info("reload_applied", "stream=%s version=%s previous=%s modules=%zu shards=%zu reason=%s swap=\"at each "
             "shard's next batch\"", stream, script->hash, previous, script->ndeps, n, why);
    for (size_t i = 0; i < w->set.nshards; i++)
        if (!strcmp(shard_stream(w->set.shards[i]), stream))
            resumed += (size_t)shard_resume(w->set.shards[i], why, 0);
    if (resumed) log_info("halted_shards_resumed", "stream=%s version=%s shards=%zu", stream, script->hash, resumed);
}

static void worker_swap_script(void *ud, size_t idx, proc_script_t *script)
{
    worker_metrics_reloaded(&((worker_t *)ud)->wm, idx);
    worker_use_script(ud, idx, script, "\"new script version\"");
}

/* The stream's breaker tripped: if a hot reload brought the failures, the
 * previous version comes back; otherwise every shard of the stream halts. */
static void worker_tripped(void *ud, shard_t *s, const char *why)
{
    worker_t *w = ud;
    int idx = config_stream_index(w->cfg, shard_stream(s));
    if (idx < 0) return;
    const char *stream = w->cfg->streams[idx].name;
    char q[1200];
    proc_script_t *good = w->previous[idx];
    if (good) {
        log_error("breaker_rollback", "stream=%s from=%s to=%s reason=%s", stream, w->scripts[idx]->hash, good->hash,
                  log_quote(why, q, sizeof q));
        w->previous[idx] = NULL;
        worker_metrics_rolled_back(&w->wm, (size_t)idx);
        worker_use_script(w, (size_t)idx, good, "\"breaker rollback\"");
        /* the version that failed is not a rollback target */
        proc_script_unref(w->previous[idx]);
        w->previous[idx] = NULL;
        return;
    }
    log_error("breaker_halt", "stream=%s reason=%s action=\"every shard of the stream halts; fix the script or the "
              "data, then save the script or run `shardrun resume`\"", stream, log_quote(why, q, sizeof q));
    size_t n = w->set.nshards;
    shard_t **copy = xmalloc((n ? n : 1) * sizeof *copy);
    if (n) memcpy(copy, w->set.shards, n * sizeof *copy);
    for (size_t i = 0; i < n; i++)
        if (!strcmp(shard_stream(copy[i]), stream)) shard_halt(copy[i], why);
    free(copy);
}

static int worker_sample_shard(void *ud, size_t idx, proc_shard_info_t *out)
{
    worker_t *w = ud;
    for (size_t i = 0; i < w->set.nshards; i++) {
        if (strcmp(shard_stream(w->set.shards[i]), w->cfg->streams[idx].name)) continue;
        *out = (proc_shard_info_t){w->cfg->streams[idx].name, shard_id(w->set.shards[i]), "reload-check", w->id};
        return 1;
    }
    return 0;
}

static int worker_str_differs(const char *a, const char *b)
{
    return (a == NULL) != (b == NULL) || (a && strcmp(a, b));
}

static int worker_outputs_differ(const config_t *old, const config_t *nu)
{
    if (old->noutputs != nu->noutputs) return 1;
    for (size_t i = 0; i < old->noutputs; i++) {
        const config_output_t *a = &old->outputs[i], *b = &nu->outputs[i];
        if (strcmp(a->name, b->name) || strcmp(a->stream, b->stream) || a->own != b->own || a->type != b->type ||
            worker_str_differs(a->path, b->path) || worker_str_differs(a->region, b->region) ||
            worker_str_differs(a->endpoint, b->endpoint))
            return 1;
    }
    return 0;
}

/* Names what a new config changes that cannot apply to a running worker. */
static void worker_refused_changes(const config_t *old, const config_t *nu, buf_t *out)
{
#define REFUSE_IF(cond, name) do { if (cond) buf_printf(out, "%s%s", out->len ? "," : "", name); } while (0)
    REFUSE_IF(strcmp(old->application, nu->application), "application");
    REFUSE_IF(old->source.type != nu->source.type || worker_str_differs(old->source.path, nu->source.path) ||
                  worker_str_differs(old->source.region, nu->source.region) ||
                  worker_str_differs(old->source.endpoint, nu->source.endpoint) ||
                  worker_str_differs(old->source.ca_file, nu->source.ca_file), "source");
    REFUSE_IF(old->leases.type != nu->leases.type || worker_str_differs(old->leases.path, nu->leases.path) ||
                  worker_str_differs(old->leases.table, nu->leases.table) ||
                  worker_str_differs(old->leases.region, nu->leases.region) ||
                  worker_str_differs(old->leases.endpoint, nu->leases.endpoint), "leases");
    REFUSE_IF(worker_str_differs(old->worker_id, nu->worker_id), "worker_id");
    REFUSE_IF(worker_str_differs(old->aws.profile, nu->aws.profile) ||
                  worker_str_differs(old->aws.access_key_id, nu->aws.access_key_id) ||
                  worker_str_differs(old->aws.secret_access_key, nu->aws.secret_access_key) ||
                  worker_str_differs(old->aws.session_token, nu->aws.session_token), "aws");
    REFUSE_IF(old->lease_duration_ms != nu->lease_duration_ms || old->renew_interval_ms != nu->renew_interval_ms ||
                  old->taker_interval_ms != nu->taker_interval_ms || old->max_steal != nu->max_steal,
              "lease timing");
    REFUSE_IF(old->processor_threads != nu->processor_threads, "processor_threads");
    REFUSE_IF(old->nlua_path != nu->nlua_path, "lua_path");
    REFUSE_IF(worker_str_differs(old->metrics.listen, nu->metrics.listen) ||
                  old->metrics.loop_stall_ms != nu->metrics.loop_stall_ms, "metrics");
    int same_streams = old->nstreams == nu->nstreams;
    for (size_t i = 0; same_streams && i < old->nstreams; i++)
        same_streams = !strcmp(old->streams[i].name, nu->streams[i].name);
    REFUSE_IF(!same_streams, "streams (added, removed or reordered)");
    for (size_t i = 0; same_streams && i < old->nstreams; i++)
        REFUSE_IF(worker_str_differs(old->streams[i].kcl_stream_identifier, nu->streams[i].kcl_stream_identifier),
                  "kcl_stream_identifier");
    REFUSE_IF(worker_outputs_differ(old, nu), "outputs");
#undef REFUSE_IF
}

/* Applies a stream's live settings (policy, limits, fetch settings, processor). */
static void worker_apply_stream(worker_t *w, size_t idx, config_stream_t *nu)
{
    config_stream_t *old = &w->cfg->streams[idx];
    policy_config_t tmp = old->policy; /* swap: the new config's free releases the old strings */
    old->policy = nu->policy;
    nu->policy = tmp;
    old->process_timeout_ms = nu->process_timeout_ms;
    old->memory_limit_mb = nu->memory_limit_mb;
    old->max_records = nu->max_records;
    old->checkpoint_interval_ms = nu->checkpoint_interval_ms;
    old->prefetch_batches = nu->prefetch_batches;
    old->idle_time_between_reads_ms = nu->idle_time_between_reads_ms;
    old->timer_interval_ms = nu->timer_interval_ms;
    old->max_batching_window_ms = nu->max_batching_window_ms;
    old->min_batch_records = nu->min_batch_records;
    old->max_emit_buffer_mb = nu->max_emit_buffer_mb;
    old->initial_position = nu->initial_position;
    old->initial_timestamp_ms = nu->initial_timestamp_ms;
    char *path = old->processor;
    old->processor = nu->processor;
    nu->processor = path;
    for (size_t i = 0; i < w->set.nshards; i++)
        if (!strcmp(shard_stream(w->set.shards[i]), old->name)) shard_settings_changed(w->set.shards[i]);
}

/* The config is user Lua: evaluated on a thread of its own, so a slow
 * config file never holds up lease renewals. */
typedef struct config_job {
    tpool_job_t job;             /* first: the pool's handle */
    worker_t *w;
    char *path;
    config_t *loaded;            /* NULL: err says why */
    errbuf_t err;
} config_job_t;

static void worker_config_run(tpool_job_t *job)
{
    config_job_t *j = (config_job_t *)job;
    j->loaded = config_load(j->path, &j->err);
}

static void worker_load_config(worker_t *w);

static void worker_config_apply(worker_t *w, config_t *nu)
{
    w->cfg->log_format = nu->log_format; /* first: the reload's own lines are in the new format */
    log_set_json(nu->log_format == CONFIG_LOG_JSON);
    buf_t refused = BUF_INIT;
    worker_refused_changes(w->cfg, nu, &refused);
    if (refused.len) {
        char q[512];
        log_warn("config_reload_refused", "config=%s fields=%s action=\"kept the running values; restart to change "
                 "them\"", w->cfg->path, log_quote(buf_str(&refused), q, sizeof q));
    }
    if (nu->nstreams == w->cfg->nstreams) {
        for (size_t i = 0; i < nu->nstreams; i++)
            if (!strcmp(nu->streams[i].name, w->cfg->streams[i].name)) worker_apply_stream(w, i, &nu->streams[i]);
    }
    w->cfg->max_buffered_mb = nu->max_buffered_mb;
    w->budget.max = (size_t)nu->max_buffered_mb * 1024 * 1024;
    w->cfg->shutdown_grace_ms = nu->shutdown_grace_ms;
    w->cfg->reload_rollback_after_failures = nu->reload_rollback_after_failures;
    w->set.env.rollback_after_failures = nu->reload_rollback_after_failures;
    if (w->cfg->shard_sync_interval_ms != nu->shard_sync_interval_ms && !w->stopping) {
        w->cfg->shard_sync_interval_ms = nu->shard_sync_interval_ms;
        double every = (double)nu->shard_sync_interval_ms / 1000.0;
        ev_timer_stop(w->loop, &w->sync_timer);
        ev_timer_set(&w->sync_timer, every, every);
        ev_timer_start(w->loop, &w->sync_timer);
    }
    log_info("config_reloaded", "config=%s refused=%s", w->cfg->path, refused.len ? buf_str(&refused) : "none");
    buf_free(&refused);
    for (size_t i = 0; i < w->cfg->nstreams; i++) reload_check(w->reload, i); /* scripts too */
}

static void worker_config_done(tpool_job_t *job)
{
    config_job_t *j = (config_job_t *)job;
    worker_t *w = j->w;
    w->config_loading = 0;
    if (!j->loaded) {
        char q[2048];
        log_error("config_reload_failed", "config=%s error=%s action=kept_running_config", j->path,
                  log_quote(j->err.msg, q, sizeof q));
    } else if (!w->stopping) {
        worker_config_apply(w, j->loaded);
    }
    config_free(j->loaded);
    free(j->path);
    free(j);
    if (w->config_again && !w->stopping) {
        w->config_again = 0;
        worker_load_config(w);
    }
}

static void worker_load_config(worker_t *w)
{
    if (w->config_loading) {
        w->config_again = 1; /* the newest file is read once this one is done */
        return;
    }
    config_job_t *j = xcalloc(1, sizeof *j); /* freed in worker_config_done */
    j->job = (tpool_job_t){.run = worker_config_run, .done = worker_config_done};
    j->w = w;
    j->path = xstrdup(w->cfg->path);
    w->config_loading = 1;
    tpool_submit(w->config_thread, &j->job);
}

static void worker_on_sighup(struct ev_loop *loop, ev_signal *sig, int revents)
{
    worker_load_config(sig->data);
}

static void worker_on_drain(struct ev_loop *loop, ev_timer *t, int revents)
{
    worker_t *w = t->data;
    if (w->stopping) {
        worker_maybe_exit(w);
        return;
    }
    if (shardsync_busy(w->sync) || shardsync_runs(w->sync) == 0) return;
    if (w->scanned_after_sync != shardsync_runs(w->sync) || worker_unowned_left(w) > 0) return;
    if (lease_coord_pending(w->coord) > 0) return;
    size_t halted = 0;
    for (size_t i = 0; i < w->set.nshards; i++) {
        if (!shard_caught_up(w->set.shards[i])) return;
        halted += shard_state(w->set.shards[i]) == SHARD_HALTED;
    }
    if (halted) {
        /* a batch job must not look successful with shards stopped on errors */
        log_error("drain_incomplete", "worker=%s halted_shards=%zu exit=1", w->id, halted);
        w->exit_code = 1;
    }
    int64_t busy_us = w->set.env.first_batch_us ? clock_mono_us() - w->set.env.first_batch_us : 0;
    log_info("worker_drained", "worker=%s shards=%zu elapsed_ms=%lld records=%lld processing_ms=%lld", w->id,
             w->set.nshards, (long long)(clock_mono_ms() - w->started_ms), (long long)w->set.env.records,
             (long long)(busy_us / 1000));
    worker_stop(w, "drained");
}

/* ---- metrics: /readyz ---------------------------------------------------------- */

/* Ready once the first lease scan after a shard sync is done (the worker
 * owns its share or is taking it), until it stops; not while a shard it
 * owns is halted. Asked by the metrics server at each heartbeat. */
static int worker_ready(void *ud, char *why, size_t n)
{
    worker_t *w = ud;
    if (w->stopping) {
        snprintf(why, n, "draining: the worker is stopping (%zu shards left)", w->set.nshards);
        return 0;
    }
    if (!w->scanned_after_sync) {
        snprintf(why, n, "starting: no lease scan since the first shard sync yet");
        return 0;
    }
    for (size_t i = 0; i < w->set.nshards; i++) {
        if (shard_state(w->set.shards[i]) != SHARD_HALTED) continue;
        snprintf(why, n, "shard %s of stream %s is halted (shardrun status shows why)", shard_id(w->set.shards[i]),
                 shard_stream(w->set.shards[i]));
        return 0;
    }
    return 1;
}

/* The owned shards and their checkpoints, for shardrun_records_behind. */
static size_t worker_lag_list(void *ud, local_lag_shard_t *out, size_t max)
{
    worker_t *w = ud;
    size_t n = 0;
    for (size_t i = 0; i < w->set.nshards; i++) {
        shard_t *s = w->set.shards[i];
        const lease_t *l = lease_coord_owned(w->coord, shard_key(s));
        if (!l) continue;
        if (n < max) out[n] = (local_lag_shard_t){shard_stream(s), shard_id(s), l->checkpoint};
        n++;
    }
    return n;
}

static int worker_start_metrics(worker_t *w)
{
    if (!w->metrics) return 0;
    if (w->cfg->source.type == BACKEND_LOCAL)
        w->local_lag = local_lag_new(w->loop, w->metrics, w->cfg->source.path, worker_lag_list, w);
    errbuf_t err;
    w->metrics_server = metrics_server_start(w->loop, w->metrics, &w->cfg->metrics, worker_ready, w, &err);
    if (w->metrics_server) return 0;
    char q[2 * sizeof err.msg + 3];
    log_error("metrics_failed", "error=%s exit=1", log_quote(err.msg, q, sizeof q));
    fprintf(stderr, "shardrun: %s\n", err.msg);
    return -1;
}

/* ---- set-up and tear-down ----------------------------------------------------- */

static int worker_load_scripts(worker_t *w)
{
    w->scripts = xcalloc(w->cfg->nstreams, sizeof *w->scripts);   /* owned: freed in worker_close */
    w->previous = xcalloc(w->cfg->nstreams, sizeof *w->previous);
    w->breakers = xcalloc(w->cfg->nstreams, sizeof *w->breakers);
    for (size_t i = 0; i < w->cfg->nstreams; i++)
        breaker_init(&w->breakers[i], (size_t)w->cfg->streams[i].policy.breaker_window,
                     w->cfg->streams[i].policy.breaker_threshold);
    for (size_t i = 0; i < w->cfg->nstreams; i++) {
        errbuf_t err;
        const config_stream_t *cs = &w->cfg->streams[i];
        w->scripts[i] = proc_script_load(cs->processor, w->cfg->lua_path, w->cfg->nlua_path, NULL, &err);
        if (!w->scripts[i]) {
            char q[2048];
            log_error("script_invalid", "stream=%s script=%s error=%s", cs->name, cs->processor,
                      log_quote(err.msg, q, sizeof q));
            fprintf(stderr, "shardrun: %s\n", err.msg);
            return -1;
        }
        log_info("script_loaded", "stream=%s script=%s version=%s modules=%zu", cs->name, cs->processor,
                 w->scripts[i]->hash, w->scripts[i]->ndeps);
        worker_metrics_script(&w->wm, i, w->scripts[i]->hash);
    }
    return 0;
}

static int worker_open(worker_t *w)
{
    errbuf_t err;
    char q[2200];
    if (backend_aws_new(w->cfg, w->loop, &w->aws, &err)) goto fail;
    w->source = backend_source_new(w->cfg, w->loop, w->aws, &err);
    if (!w->source) goto fail;
    w->store = backend_lease_store_new(w->cfg, w->loop, w->aws, 1, &err);
    if (!w->store) goto fail;
    return 0;
fail:
    /* one line (logs go to stderr): the error may list each credentials step */
    log_error("backend_open_failed", "error=%s", log_quote(err.msg, q, sizeof q));
    return -1;
}

/* Every stream is readable before anything is created (lease table, leases). */
static int worker_preflight(worker_t *w)
{
    errbuf_t err;
    char q[1100];
    if (preflight_streams(w->loop, w->source, w->cfg, &err) == 0) return 0;
    log_error("worker_cannot_start", "worker=%s error=%s exit=1", w->id, log_quote(err.msg, q, sizeof q));
    return -1;
}

/* Every output's stream exists before a shard can emit (a missing one is a
 * config error: exit 2; one that cannot be opened or asked, exit 1).
 * Returns the exit status, or 0. */
static int worker_check_outputs(worker_t *w)
{
    errbuf_t err;
    int rc = destinations_open(&w->dests, w->cfg, w->loop, w->source, w->aws, &err) ? 1 : 0;
    if (!rc) rc = destinations_check(&w->dests, w->loop, &err);
    if (!rc) return 0;
    char q[1200];
    log_error("worker_cannot_start", "worker=%s error=%s exit=%d", w->id, log_quote(err.msg, q, sizeof q), rc);
    fprintf(stderr, "shardrun: %s\n", err.msg);
    w->exit_code = rc;
    return rc;
}

static void worker_init_watchers(worker_t *w)
{
    ev_signal_init(&w->sigterm, worker_on_signal, SIGTERM);
    ev_signal_init(&w->sigint, worker_on_signal, SIGINT);
    ev_signal_init(&w->sighup, worker_on_sighup, SIGHUP);
    w->sigterm.data = w->sigint.data = w->sighup.data = w;
    ev_signal_start(w->loop, &w->sigterm);
    ev_signal_start(w->loop, &w->sigint);
    ev_signal_start(w->loop, &w->sighup);
    double sync = (double)w->cfg->shard_sync_interval_ms / 1000.0;
    ev_timer_init(&w->sync_timer, worker_on_sync, sync, sync);
    ev_timer_init(&w->drain_timer, worker_on_drain, WORKER_DRAIN_CHECK_S, WORKER_DRAIN_CHECK_S);
    ev_timer_init(&w->grace_timer, worker_on_grace, 0.0, 0.0);
    w->sync_timer.data = w->drain_timer.data = w->grace_timer.data = w;
    ev_timer_start(w->loop, &w->sync_timer);
    if (w->opt.drain) ev_timer_start(w->loop, &w->drain_timer);
}

static void worker_close(worker_t *w)
{
    size_t running = (w->pool ? proc_pool_busy(w->pool) : 0) +
                     (w->dead_letters ? deadletter_busy(w->dead_letters) : 0) +
                     (w->config_thread ? tpool_busy(w->config_thread) : 0);
    for (size_t i = 0; i < w->set.nshards; i++) running += (size_t)shard_outputs_busy(w->set.shards[i]);
    if (w->exit_code != 0 && running > 0) {
        /* A script may be stuck in a processor thread, a dead-letter write on
         * a hung disk: joining them could hang. */
        log_error("worker_exit", "worker=%s status=%d jobs_running=%zu", w->id, w->exit_code, running);
        _exit(w->exit_code);
    }
    if (w->reload && reload_busy(w->reload) > 0) {
        /* Every lease is released by now; a script check still running (its
         * initialize may never return) must not hold the exit. */
        log_warn("worker_exit", "worker=%s status=%d reload_checks_running=%zu", w->id, w->exit_code,
                 reload_busy(w->reload));
        _exit(w->exit_code);
    }
    notify_stop(&w->notify);
    metrics_server_free(w->metrics_server); /* its threads first: nothing reads the loop's state after */
    local_lag_free(w->local_lag);
    faults_stop(w->loop);
    worker_metrics_clear(&w->wm);
    shardset_free(&w->set);
    proc_pool_free(w->pool);
    deadletter_free(w->dead_letters);
    tpool_free(w->config_thread);
    reload_free(w->reload);
    shardsync_free(w->sync);
    worker_forget_unowned(w);
    lease_store_destroy(w->store);   /* drops pending writes: their callbacks never run */
    lease_coord_free(w->coord);
    destinations_close(&w->dests);   /* its own sources: before the AWS client */
    source_destroy(w->source);
    aws_client_free(w->aws);         /* after both backends: they cancelled their calls */
    free(w->sched);
    for (size_t i = 0; w->scripts && i < w->cfg->nstreams; i++) proc_script_unref(w->scripts[i]);
    for (size_t i = 0; w->previous && i < w->cfg->nstreams; i++) proc_script_unref(w->previous[i]);
    for (size_t i = 0; w->breakers && i < w->cfg->nstreams; i++) breaker_clear(&w->breakers[i]);
    free(w->scripts);
    free(w->previous);
    free(w->breakers);
    free(w->id);
    metrics_free(w->metrics);
}

int worker_run(config_t *cfg, const worker_options_t *opt)
{
    worker_t w = {0};
    w.cfg = cfg;
    w.opt = *opt;
    w.started_ms = clock_mono_ms();
    w.loop = ev_default_loop(EVFLAG_AUTO);
    w.sched = sched_ev_new(w.loop);
    w.id = cfg->worker_id ? xstrdup(cfg->worker_id) : worker_default_id();
    w.metrics = cfg->metrics.listen ? metrics_new() : NULL;
    worker_metrics_init(&w.wm, w.metrics, cfg, &w.budget, &w.set.nshards, &w.reload);
    signal(SIGPIPE, SIG_IGN);
    /* Reads arrive in blocks of megabytes (response bodies, batches). Above
     * glibc's default threshold each would be mmap'd, faulted in and zeroed
     * afresh: a third of the Kinesis path's CPU. Keep them in the heap, reused. */
    mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
    mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);
    if (worker_load_scripts(&w)) {
        worker_close(&w);
        return 2;
    }
    if (worker_open(&w) || worker_preflight(&w)) {
        worker_close(&w);
        return 1;
    }
    aws_client_set_metrics(w.aws, w.metrics); /* every AWS HTTP attempt, when both are on */
    if (worker_check_outputs(&w)) {
        int code = w.exit_code;
        worker_close(&w);
        return code;
    }
    lease_coord_options_t copt = {w.id, cfg->lease_duration_ms, cfg->renew_interval_ms, cfg->taker_interval_ms,
                                  cfg->max_steal, 1, w.metrics};
    /* the set is the coordinator's handler; it is set up below, before the coordinator starts */
    w.coord = lease_coord_new(w.sched, w.store, &copt, shardset_coord_handler(), &w.set);
    w.sync = shardsync_new(w.sched, w.source, w.store, cfg, worker_synced, worker_fail_start, &w);
    w.pool = proc_pool_new(w.loop, (int)cfg->processor_threads, worker_job_done, &w);
    w.dead_letters = deadletter_new(w.loop, w.source);
    w.config_thread = tpool_new(w.loop, 1, "config");
    reload_handler_t rh = {worker_swap_script, worker_sample_shard};
    w.reload = reload_new(w.loop, cfg, w.scripts, &rh, &w);
    if (!w.pool || !w.dead_letters || !w.reload || !w.config_thread) {
        log_error("worker_exit", "worker=%s status=1 error=\"cannot start threads\"", w.id);
        fprintf(stderr, "shardrun: cannot start the worker's threads\n");
        worker_close(&w);
        return 1;
    }
    w.budget.max = (size_t)cfg->max_buffered_mb * 1024 * 1024;
    shard_env_t env = {.sched = w.sched, .source = w.source, .dead_letters = w.dead_letters, .budget = &w.budget,
                       .metrics = w.metrics,
                       .outputs = w.dests.dests, .output_names = w.dests.names, .noutputs = w.dests.n,
                       .worker_id = w.id, .lua_path = cfg->lua_path, .nlua_path = cfg->nlua_path,
                       .min_poll_interval_ms = backend_min_poll_interval_ms(cfg),
                       .rollback_after_failures = cfg->reload_rollback_after_failures};
    shardset_host_t host = {.submit = worker_submit, .halt_worker = worker_halt, .tripped = worker_tripped,
                            .closed = worker_shard_closed, .scanned = worker_scanned, .describe = worker_describe,
                            .store_unusable = worker_cannot_start};
    shardset_init(&w.set, cfg, w.scripts, w.breakers, &env, &host, &w);
    shardset_attach(&w.set, w.coord, w.sync);
    worker_init_watchers(&w);
    notify_start(&w.notify, w.loop);
    faults_start(w.loop); /* the test build's hooks; nothing in production */
    if (worker_start_metrics(&w)) {
        worker_close(&w);
        return 1;
    }
    log_info("worker_started", "worker=%s application=%s streams=%zu threads=%lld drain=%d", w.id,
             cfg->application, cfg->nstreams, (long long)cfg->processor_threads, opt->drain);
    shardsync_run(w.sync);
    lease_coord_start(w.coord);
    ev_run(w.loop, 0);
    worker_check_clean_stop(&w);
    log_info("worker_stopped", "worker=%s status=%d", w.id, w.exit_code);
    int code = w.exit_code;
    worker_close(&w);
    return code;
}
