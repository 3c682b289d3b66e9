#include "reload.h"

#include <ev.h>
#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "base/tpool.h"
#include "base/xalloc.h"

typedef struct watched {
    ev_stat stat;
    struct reload_stream *owner;
} watched_t;

/* One validation, run on the checker thread. Everything it reads is its
 * own copy: shards and the config's strings may change meanwhile. */
typedef struct check_job {
    tpool_job_t job;       /* first: the pool's handle */
    struct reload_stream *rs;
    char *path;
    char *stream, *shard, *position, *worker;
    proc_script_t *result; /* NULL: invalid, see err */
    errbuf_t err;
} check_job_t;

typedef struct reload_stream {
    struct reload *r;
    size_t idx;
    check_job_t check;
    int checking;          /* check is on the checker thread */
    int again;             /* another change came meanwhile: check again after */
    char hash[17];         /* of the version running */
    watched_t *files;      /* the script, then its modules */
    size_t nfiles;
    ev_timer debounce;
    char *error;
    int64_t failures;
} reload_stream_t;

struct reload {
    struct ev_loop *loop;
    tpool_t *checker;      /* validations: a script's initialize may block or loop */
    const config_t *cfg;
    reload_handler_t h;
    void *ud;
    reload_stream_t *streams;
};

static void reload_on_stat(struct ev_loop *loop, ev_stat *w, int revents)
{
    reload_stream_t *rs = ((watched_t *)w->data)->owner;
    /* editors write in several steps: wait for the burst to end */
    ev_timer_stop(loop, &rs->debounce);
    ev_timer_set(&rs->debounce, RELOAD_DEBOUNCE_S, 0.0);
    ev_timer_start(loop, &rs->debounce);
}

static void reload_unwatch(reload_stream_t *rs)
{
    for (size_t i = 0; i < rs->nfiles; i++) {
        ev_ref(rs->r->loop); /* balances the ev_unref in reload_watch */
        ev_stat_stop(rs->r->loop, &rs->files[i].stat);
        free((char *)rs->files[i].stat.path);
    }
    free(rs->files);
    rs->files = NULL;
    rs->nfiles = 0;
}

/* Watches the script and the modules the running version loaded. */
static void reload_watch(reload_stream_t *rs, const proc_script_t *s)
{
    reload_unwatch(rs);
    rs->nfiles = 1 + s->ndeps;
    rs->files = xcalloc(rs->nfiles, sizeof *rs->files); /* owned by rs */
    for (size_t i = 0; i < rs->nfiles; i++) {
        watched_t *w = &rs->files[i];
        w->owner = rs;
        ev_stat_init(&w->stat, reload_on_stat, xstrdup(i == 0 ? s->path : s->deps[i - 1]), RELOAD_POLL_S);
        w->stat.data = w;
        ev_stat_start(rs->r->loop, &w->stat);
        ev_unref(rs->r->loop); /* watching alone does not keep the worker running */
    }
}

static void reload_set_error(reload_stream_t *rs, const char *msg)
{
    free(rs->error);
    rs->error = msg ? xstrdup(msg) : NULL;
}

static void check_job_clear(check_job_t *j)
{
    free(j->path);
    free(j->stream);
    free(j->shard);
    free(j->position);
    free(j->worker);
    proc_script_unref(j->result);
    memset(j, 0, sizeof *j);
}

static void reload_check_run(tpool_job_t *job)
{
    check_job_t *j = (check_job_t *)job;
    const config_t *cfg = j->rs->r->cfg;
    proc_shard_info_t check = {j->stream, j->shard, j->position, j->worker};
    j->result = proc_script_load(j->path, cfg->lua_path, cfg->nlua_path, &check, &j->err);
}

static void reload_check_done(tpool_job_t *job)
{
    check_job_t *j = (check_job_t *)job;
    reload_stream_t *rs = j->rs;
    const char *stream = rs->r->cfg->streams[rs->idx].name;
    proc_script_t *s = j->result;
    j->result = NULL;
    rs->checking = 0;
    if (!s) {
        char q[2048];
        rs->failures++;
        reload_set_error(rs, j->err.msg);
        log_error("reload_failed", "stream=%s script=%s failures=%lld error=%s action=kept_previous", stream, j->path,
                  (long long)rs->failures, log_quote(j->err.msg, q, sizeof q));
    } else if (!strcmp(s->hash, rs->hash)) {
        reload_set_error(rs, NULL);
        proc_script_unref(s); /* touched, not changed */
    } else {
        reload_set_error(rs, NULL); /* the swap handler logs the one reload_applied line */
        snprintf(rs->hash, sizeof rs->hash, "%s", s->hash);
        reload_watch(rs, s);
        rs->r->h.swap(rs->r->ud, rs->idx, s);
    }
    check_job_clear(j);
    if (rs->again) {
        rs->again = 0;
        reload_check(rs->r, rs->idx);
    }
}

int64_t reload_failures(const reload_t *r, size_t idx)
{
    return r->streams[idx].failures;
}

void reload_check(reload_t *r, size_t idx)
{
    reload_stream_t *rs = &r->streams[idx];
    if (rs->checking) {
        rs->again = 1;
        return;
    }
    const config_stream_t *cs = &r->cfg->streams[idx];
    proc_shard_info_t sample = {cs->name, "shardId-000000000000", "TRIM_HORIZON", "reload-check"};
    proc_shard_info_t real;
    const proc_shard_info_t *info = r->h.sample_shard(r->ud, idx, &real) ? &real : &sample;
    check_job_t *j = &rs->check;
    j->rs = rs;
    j->path = xstrdup(cs->processor); /* the job's copies: freed by check_job_clear */
    j->stream = xstrdup(info->stream);
    j->shard = xstrdup(info->shard);
    j->position = xstrdup(info->position);
    j->worker = xstrdup(info->worker);
    j->job = (tpool_job_t){.run = reload_check_run, .done = reload_check_done};
    rs->checking = 1;
    tpool_submit(r->checker, &j->job);
}

size_t reload_busy(const reload_t *r)
{
    return tpool_busy(r->checker);
}

static void reload_on_debounce(struct ev_loop *loop, ev_timer *t, int revents)
{
    reload_stream_t *rs = t->data;
    reload_check(rs->r, rs->idx);
}

reload_t *reload_new(struct ev_loop *loop, const config_t *cfg, proc_script_t *const *scripts,
                     const reload_handler_t *h, void *ud)
{
    reload_t *r = xcalloc(1, sizeof *r); /* owned by the caller: reload_free */
    r->loop = loop;
    r->cfg = cfg;
    r->h = *h;
    r->ud = ud;
    r->streams = xcalloc(cfg->nstreams, sizeof *r->streams);
    r->checker = tpool_new(loop, 1, "reload");
    if (!r->checker) {
        free(r->streams);
        free(r);
        return NULL;
    }
    for (size_t i = 0; i < cfg->nstreams; i++) {
        reload_stream_t *rs = &r->streams[i];
        rs->r = r;
        rs->idx = i;
        snprintf(rs->hash, sizeof rs->hash, "%s", scripts[i]->hash);
        ev_timer_init(&rs->debounce, reload_on_debounce, 0.0, 0.0);
        rs->debounce.data = rs;
        reload_watch(rs, scripts[i]);
    }
    return r;
}

void reload_free(reload_t *r)
{
    if (!r) return;
    tpool_free(r->checker); /* a check still queued or running finishes first; its answer is dropped */
    for (size_t i = 0; i < r->cfg->nstreams; i++) {
        reload_stream_t *rs = &r->streams[i];
        reload_unwatch(rs);
        ev_timer_stop(r->loop, &rs->debounce);
        check_job_clear(&rs->check);
        free(rs->error);
    }
    free(r->streams);
    free(r);
}

const char *reload_error(const reload_t *r, size_t idx)
{
    return r->streams[idx].error;
}
