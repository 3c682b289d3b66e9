#include "local_lag.h"

#include <ev.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/tpool.h"
#include "base/xalloc.h"
#include "source/streamdb.h"

typedef struct lag_item {
    char *stream, *shard, *checkpoint;
    int64_t behind; /* the thread's answer; -1: unknown */
} lag_item_t;

typedef struct lag_job {
    tpool_job_t job; /* first: the pool's handle */
    local_lag_t *ll;
    lag_item_t *items;
    size_t n;
    int64_t took_us; /* the counts, on the thread */
} lag_job_t;

/* A gauge per shard that has had an answer. */
typedef struct lag_gauge {
    char *stream, *shard;
    metric_t *g;
    int seen; /* in the last answer */
} lag_gauge_t;

struct local_lag {
    struct ev_loop *loop;
    metric_family_t *family;
    char *path;
    local_lag_list_fn list;
    void *ud;
    tpool_t *thread;
    streamdb_t *db; /* the thread's own connection (opened there, on first use) */
    ev_timer timer;
    lag_job_t job;
    int busy;
    lag_gauge_t *gauges;
    size_t ngauges;
};

static void lag_items_free(lag_item_t *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(items[i].stream);
        free(items[i].shard);
        free(items[i].checkpoint);
    }
    free(items);
}

/* Pool thread: the counts. */
static void lag_run(tpool_job_t *job)
{
    lag_job_t *j = (lag_job_t *)job;
    local_lag_t *ll = j->ll;
    j->took_us = 0;
    if (!ll->db) {
        errbuf_t err;
        if (streamdb_open(ll->path, 0, &ll->db, &err)) {
            char q[2 * sizeof err.msg + 3];
            log_warn("records_behind_unavailable", "error=%s action=\"tried again in %.0f s\"",
                     log_quote(err.msg, q, sizeof q), LOCAL_LAG_INTERVAL_S);
            return;
        }
    }
    int64_t t0 = clock_mono_us();
    for (size_t i = 0; i < j->n; i++)
        j->items[i].behind =
            streamdb_records_behind(ll->db, j->items[i].stream, j->items[i].shard, j->items[i].checkpoint);
    j->took_us = clock_mono_us() - t0;
}

static lag_gauge_t *lag_gauge(local_lag_t *ll, const char *stream, const char *shard)
{
    for (size_t i = 0; i < ll->ngauges; i++)
        if (!strcmp(ll->gauges[i].stream, stream) && !strcmp(ll->gauges[i].shard, shard)) return &ll->gauges[i];
    ll->gauges = xrealloc(ll->gauges, (ll->ngauges + 1) * sizeof *ll->gauges); /* owned by ll */
    lag_gauge_t *g = &ll->gauges[ll->ngauges++];
    g->stream = xstrdup(stream);
    g->shard = xstrdup(shard);
    g->g = metrics_series(ll->family, stream, shard, NULL);
    return g;
}

static void lag_gauge_drop(lag_gauge_t *g)
{
    metric_put(g->g);
    free(g->stream);
    free(g->shard);
}

/* Loop thread: the answers become gauges; shards gone lose theirs. */
static void lag_done(tpool_job_t *job)
{
    lag_job_t *j = (lag_job_t *)job;
    local_lag_t *ll = j->ll;
    ll->busy = 0;
    /* the next count waits in proportion to this one: a deep backlog is counted less often */
    double next = (double)j->took_us / 1e6 * LOCAL_LAG_PACE;
    ev_timer_set(&ll->timer, next > LOCAL_LAG_INTERVAL_S ? next : LOCAL_LAG_INTERVAL_S, 0.0);
    ev_timer_start(ll->loop, &ll->timer);
    for (size_t i = 0; i < ll->ngauges; i++)
        ll->gauges[i].seen = 0;
    for (size_t i = 0; i < j->n; i++) {
        if (j->items[i].behind < 0) continue;
        lag_gauge_t *g = lag_gauge(ll, j->items[i].stream, j->items[i].shard);
        metric_set(g->g, (double)j->items[i].behind);
        g->seen = 1;
    }
    size_t kept = 0;
    for (size_t i = 0; i < ll->ngauges; i++) {
        if (ll->gauges[i].seen)
            ll->gauges[kept++] = ll->gauges[i];
        else
            lag_gauge_drop(&ll->gauges[i]);
    }
    ll->ngauges = kept;
    lag_items_free(j->items, j->n);
    j->items = NULL;
    j->n = 0;
}

static void lag_on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    local_lag_t *ll = t->data;
    if (ll->busy) return; /* the last count is still going: skip this turn */
    size_t n = ll->list(ll->ud, NULL, 0), max = n;
    local_lag_shard_t *now = xcalloc(max ? max : 1, sizeof *now); /* freed below */
    n = ll->list(ll->ud, now, max);
    if (n > max) n = max;
    ll->job.items = xcalloc(n ? n : 1, sizeof *ll->job.items); /* freed in lag_done */
    ll->job.n = n;
    for (size_t i = 0; i < n; i++) {
        ll->job.items[i] = (lag_item_t){xstrdup(now[i].stream), xstrdup(now[i].shard), xstrdup(now[i].checkpoint), -1};
    }
    free(now);
    ll->job.job = (tpool_job_t){.run = lag_run, .done = lag_done};
    ll->busy = 1;
    tpool_submit(ll->thread, &ll->job.job);
}

local_lag_t *local_lag_new(struct ev_loop *loop, metrics_t *registry, const char *path, local_lag_list_fn list,
                           void *ud)
{
    static const char *const labels[] = {"stream", "shard", NULL};
    tpool_t *thread = tpool_new(loop, 1, "records-behind");
    if (!thread) return NULL;
    local_lag_t *ll = xcalloc(1, sizeof *ll); /* owned by the caller: local_lag_free */
    ll->loop = loop;
    ll->family = metrics_family(registry, METRIC_GAUGE, "shardrun_records_behind",
                                "Records after the shard's checkpoint (local source; counted every few seconds).",
                                labels, NULL, 0);
    ll->path = xstrdup(path);
    ll->list = list;
    ll->ud = ud;
    ll->thread = thread;
    ll->job.ll = ll;
    ev_timer_init(&ll->timer, lag_on_timer, LOCAL_LAG_INTERVAL_S, 0.0); /* restarted when each count is done */
    ll->timer.data = ll;
    ev_timer_start(loop, &ll->timer);
    return ll;
}

void local_lag_free(local_lag_t *ll)
{
    if (!ll) return;
    ev_timer_stop(ll->loop, &ll->timer);
    tpool_free(ll->thread); /* waits for a count in progress; its done is not called */
    streamdb_close(ll->db); /* the thread is gone: no one else uses it */
    lag_items_free(ll->job.items, ll->job.n);
    for (size_t i = 0; i < ll->ngauges; i++)
        lag_gauge_drop(&ll->gauges[i]);
    free(ll->gauges);
    free(ll->path);
    free(ll);
}
