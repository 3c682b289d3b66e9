#include "preflight.h"

#include <ev.h>
#include <stdio.h>

#include "base/log.h"

typedef struct preflight {
    int done;
    source_err_t err;
    char msg[1024];
    size_t shards;
} preflight_t;

static void preflight_listed(void *ud, source_err_t err, const char *message, source_shard_list_t *shards)
{
    preflight_t *p = ud;
    p->done = 1;
    p->err = err;
    p->shards = shards ? shards->count : 0;
    snprintf(p->msg, sizeof p->msg, "%s", message ? message : source_err_name(err));
    source_shard_list_free(shards);
}

static void preflight_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)t;
    (void)revents;
}

/* Runs the loop for `s` seconds, or until *flag. */
static void preflight_run(struct ev_loop *loop, const int *flag, double s)
{
    ev_timer t;
    ev_timer_init(&t, preflight_tick, s, 0.0);
    ev_timer_start(loop, &t);
    while ((!flag || !*flag) && ev_is_active(&t)) ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &t);
}

source_err_t preflight_stream(struct ev_loop *loop, source_t *src, const char *stream, char *msg, size_t n,
                              size_t *shards)
{
    ev_tstamp start = ev_time();
    preflight_t p = {0};
    for (int attempt = 1;; attempt++) {
        p = (preflight_t){0};
        source_list_shards(src, stream, preflight_listed, &p);
        preflight_run(loop, &p.done, PREFLIGHT_MAX_S);
        if (!p.done) {
            snprintf(msg, n, "no answer to ListShards within %.0f s", PREFLIGHT_MAX_S);
            return SOURCE_ERETRY;
        }
        if (p.err != SOURCE_ERETRY || attempt == PREFLIGHT_TRIES || ev_time() - start > PREFLIGHT_MAX_S) break;
        char q[1100];
        log_warn("preflight_retry", "stream=%s attempt=%d max_attempts=%d error=%s", stream, attempt,
                 PREFLIGHT_TRIES, log_quote(p.msg, q, sizeof q));
        preflight_run(loop, NULL, PREFLIGHT_PAUSE_S);
    }
    snprintf(msg, n, "%s", p.msg);
    if (shards) *shards = p.shards;
    return p.err;
}

int preflight_streams(struct ev_loop *loop, source_t *src, const config_t *cfg, errbuf_t *err)
{
    for (size_t i = 0; i < cfg->nstreams; i++) {
        const char *name = cfg->streams[i].name;
        char msg[1024];
        size_t shards = 0;
        source_err_t e = preflight_stream(loop, src, name, msg, sizeof msg, &shards);
        if (e == SOURCE_ENOTFOUND)
            return errbuf_set(err, "stream %s does not exist: %s (create it, or fix streams[%zu].name)", name, msg,
                              i + 1);
        if (e == SOURCE_ERETRY)
            return errbuf_set(err, "stream %s cannot be read at start (%d tries): %s", name, PREFLIGHT_TRIES, msg);
        if (e != SOURCE_OK) return errbuf_set(err, "stream %s cannot be read: %s", name, msg);
        log_info("stream_found", "stream=%s shards=%zu", name, shards);
    }
    return 0;
}
