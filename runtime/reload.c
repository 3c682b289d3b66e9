#include "reload.h"

#include <ev.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "xalloc.h"

typedef struct watched {
    ev_stat stat;
    struct reload_stream *owner;
} watched_t;

typedef struct reload_stream {
    struct reload *r;
    size_t idx;
    char hash[17];         /* of the version running */
    watched_t *files;      /* the script, then its modules */
    size_t nfiles;
    ev_timer debounce;
    char *error;
    int64_t failures;
} reload_stream_t;

struct reload {
    struct ev_loop *loop;
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

void reload_check(reload_t *r, size_t idx)
{
    reload_stream_t *rs = &r->streams[idx];
    const config_stream_t *cs = &r->cfg->streams[idx];
    proc_shard_info_t sample = {cs->name, "shardId-000000000000", "TRIM_HORIZON", "reload-check"};
    proc_shard_info_t real;
    const proc_shard_info_t *check = r->h.sample_shard(r->ud, idx, &real) ? &real : &sample;
    errbuf_t err;
    proc_script_t *s = proc_script_load(cs->processor, r->cfg->lua_path, r->cfg->nlua_path, check, &err);
    if (!s) {
        char q[2048];
        rs->failures++;
        reload_set_error(rs, err.msg);
        log_error("reload_failed", "stream=%s script=%s failures=%lld error=%s action=kept_previous", cs->name,
                  cs->processor, (long long)rs->failures, log_quote(err.msg, q, sizeof q));
        return;
    }
    reload_set_error(rs, NULL);
    if (!strcmp(s->hash, rs->hash)) {
        proc_script_unref(s); /* touched, not changed */
        return;
    }
    log_info("reload_validated", "stream=%s script=%s version=%s previous=%s modules=%zu", cs->name, cs->processor,
             s->hash, rs->hash, s->ndeps);
    snprintf(rs->hash, sizeof rs->hash, "%s", s->hash);
    reload_watch(rs, s);
    r->h.swap(r->ud, idx, s);
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
    for (size_t i = 0; i < r->cfg->nstreams; i++) {
        reload_stream_t *rs = &r->streams[i];
        reload_unwatch(rs);
        ev_timer_stop(r->loop, &rs->debounce);
        free(rs->error);
    }
    free(r->streams);
    free(r);
}

const char *reload_error(const reload_t *r, size_t idx)
{
    return r->streams[idx].error;
}
