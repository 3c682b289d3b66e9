#include "worker_metrics.h"

#include <string.h>

#include "aws/aws_metrics.h"
#include "base/xalloc.h"
#include "shard/shard_metrics.h"

static const char *const stream_version[] = {"stream", "version", NULL};
static const char *const stream_result[] = {"stream", "result", NULL};

static metric_family_t *worker_metrics_info(metrics_t *registry)
{
    return metrics_family(registry, METRIC_GAUGE, "shardrun_script_info",
                          "1 for the script version (a hash of its code) each stream runs.", stream_version, NULL, 0);
}

static void worker_metrics_collect(void *ud)
{
    worker_metrics_t *wm = ud;
    metric_set(wm->prefetched, (double)(wm->budget->held + wm->budget->reserved));
    metric_set(wm->prefetch_limit, (double)wm->budget->max);
    metric_set(wm->shards, (double)*wm->nshards);
    for (size_t i = 0; *wm->reload && i < wm->cfg->nstreams; i++)
        metric_set(wm->reloads_failed[i], (double)reload_failures(*wm->reload, i));
}

void worker_metrics_init(worker_metrics_t *wm, metrics_t *registry, const config_t *cfg, const fetch_budget_t *budget,
                         const size_t *nshards, reload_t *const *reload)
{
    memset(wm, 0, sizeof *wm);
    if (!registry) return;
    wm->registry = registry;
    wm->cfg = cfg;
    wm->budget = budget;
    wm->nshards = nshards;
    wm->reload = reload;
    wm->prefetched = metrics_series(
        metrics_family(registry, METRIC_GAUGE, "shardrun_prefetched_bytes",
                       "Records read ahead of processing, in memory, over every shard (reads in flight included).",
                       NULL, NULL, 0),
        NULL, NULL, NULL);
    wm->prefetch_limit = metrics_series(metrics_family(registry, METRIC_GAUGE, "shardrun_prefetch_limit_bytes",
                                                       "max_buffered_mb, in bytes.", NULL, NULL, 0),
                                        NULL, NULL, NULL);
    wm->shards = metrics_series(metrics_family(registry, METRIC_GAUGE, "shardrun_shards",
                                               "Shards this worker runs (one per lease it owns).", NULL, NULL, 0),
                                NULL, NULL, NULL);
    worker_metrics_info(registry);
    metric_family_t *reloads = metrics_family(registry, METRIC_COUNTER, SHARD_METRICS_RELOADS,
                                              SHARD_METRICS_RELOADS_HELP, stream_result, NULL, 0);
    metrics_family_keep(reloads);
    shard_metrics_declare(registry);
    aws_metrics_declare(registry);
    wm->script_info = xcalloc(cfg->nstreams, sizeof *wm->script_info); /* owned: worker_metrics_clear */
    wm->reloads_ok = xcalloc(cfg->nstreams, sizeof *wm->reloads_ok);
    wm->reloads_failed = xcalloc(cfg->nstreams, sizeof *wm->reloads_failed);
    wm->rolled_back = xcalloc(cfg->nstreams, sizeof *wm->rolled_back);
    for (size_t i = 0; i < cfg->nstreams; i++) {
        wm->reloads_ok[i] = metrics_series(reloads, cfg->streams[i].name, "ok", NULL);
        wm->reloads_failed[i] = metrics_series(reloads, cfg->streams[i].name, "failed", NULL);
        wm->rolled_back[i] = metrics_series(reloads, cfg->streams[i].name, "rolled_back", NULL);
    }
    metrics_on_render(registry, worker_metrics_collect, wm);
}

void worker_metrics_clear(worker_metrics_t *wm)
{
    if (!wm->registry) return;
    metrics_off_render(wm->registry, worker_metrics_collect, wm);
    metric_put(wm->prefetched);
    metric_put(wm->prefetch_limit);
    metric_put(wm->shards);
    for (size_t i = 0; i < wm->cfg->nstreams; i++) {
        metric_put(wm->script_info[i]);
        metric_put(wm->reloads_ok[i]);
        metric_put(wm->reloads_failed[i]);
        metric_put(wm->rolled_back[i]);
    }
    free(wm->script_info);
    free(wm->reloads_ok);
    free(wm->reloads_failed);
    free(wm->rolled_back);
    memset(wm, 0, sizeof *wm);
}

void worker_metrics_script(worker_metrics_t *wm, size_t idx, const char *hash)
{
    if (!wm->registry) return;
    /* one series per stream: the old version's goes as the new one comes */
    metric_put(wm->script_info[idx]);
    wm->script_info[idx] = metrics_series(worker_metrics_info(wm->registry), wm->cfg->streams[idx].name, hash, NULL);
    metric_set(wm->script_info[idx], 1);
}

void worker_metrics_reloaded(worker_metrics_t *wm, size_t idx)
{
    if (wm->registry) metric_add(wm->reloads_ok[idx], 1);
}

void worker_metrics_rolled_back(worker_metrics_t *wm, size_t idx)
{
    if (wm->registry) metric_add(wm->rolled_back[idx], 1);
}
