/* worker_metrics: the worker's own series, beside the shards' (shard/
 * shard_metrics.h): prefetched bytes against max_buffered_mb, shards
 * running, the script version loaded per stream and its reloads. Loop
 * thread only; does nothing when the registry is NULL (metrics off). */
#ifndef SHARDRUN_WORKER_METRICS_H
#define SHARDRUN_WORKER_METRICS_H

#include <stddef.h>

#include "base/metrics.h"
#include "config/config.h"
#include "reload.h"
#include "shard/fetch.h"

typedef struct worker_metrics {
    metrics_t *registry;
    const config_t *cfg;
    const fetch_budget_t *budget;
    const size_t *nshards;
    reload_t *const *reload; /* the worker's pointer: set once its checker thread runs */
    metric_t *prefetched, *prefetch_limit, *shards;
    metric_t **script_info; /* per stream: shardrun_script_info{stream, version} */
    metric_t **reloads_ok, **reloads_failed, **rolled_back;
} worker_metrics_t;

/* Declares every family (the shards' too), so a scrape shows them all
 * before the first shard is owned. budget, nshards and *reload are read at
 * each rendering; they outlive wm. */
void worker_metrics_init(worker_metrics_t *wm, metrics_t *registry, const config_t *cfg, const fetch_budget_t *budget,
                         const size_t *nshards, reload_t *const *reload);
void worker_metrics_clear(worker_metrics_t *wm);

/* Stream idx runs version `hash` from now on. */
void worker_metrics_script(worker_metrics_t *wm, size_t idx, const char *hash);
/* A hot reload of stream idx loaded a new version. */
void worker_metrics_reloaded(worker_metrics_t *wm, size_t idx);
/* The stream's breaker brought the previous version back. */
void worker_metrics_rolled_back(worker_metrics_t *wm, size_t idx);

#endif
