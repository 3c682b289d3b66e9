/* shard_metrics: what one owned shard counts, as Prometheus series.
 *
 * A shard holds one shard_metrics_t from shard_new to shard_free: its
 * per-shard series (labels stream, shard) are removed with it, so a shard
 * that moves to another worker is counted there from then on. The stream's
 * series (label stream: histograms, breaker trips, reloads) stay for the
 * life of the worker. Every call is one line at the place the event
 * happens, on the loop thread, and does nothing when metrics are off (the
 * registry is NULL: every series is NULL).
 *
 * Names follow Prometheus's conventions: shardrun_ prefix, _total counters,
 * base units (seconds, bytes). Label values are stream names and shard ids,
 * plus kind (error | timeout | memory | invalid_decision) on failures:
 * nothing that grows with the records. */
#ifndef SHARDRUN_SHARD_METRICS_H
#define SHARDRUN_SHARD_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "base/metrics.h"
#include "proc/processor.h"
#include "record/batch.h"

typedef enum {
    SHARD_FAIL_ERROR,   /* raised, or {failed = record} */
    SHARD_FAIL_TIMEOUT, /* process_timeout_ms */
    SHARD_FAIL_MEMORY,  /* memory_limit_mb */
    SHARD_FAIL_INVALID, /* an invalid decision */
    SHARD_FAIL_KINDS,
} shard_fail_kind_t;

typedef struct shard_metrics {
    /* per shard */
    metric_t *records, *bytes, *batches, *failures[SHARD_FAIL_KINDS], *retries, *skipped, *dead_lettered, *checkpoints,
        *millis_behind, *lua_bytes, *halted, *reads, *read_errors, *expired;
    /* the stream's, shared by its shards */
    metric_t *batch_seconds, *record_age, *breaker_trips, *rolled_back;
    size_t age_hint; /* the age bucket of the last record: the next batch's scan starts there */
} shard_metrics_t;

/* m NULL (metrics off): every series NULL. */
void shard_metrics_init(shard_metrics_t *sm, metrics_t *m, const char *stream, const char *shard);
void shard_metrics_clear(shard_metrics_t *sm);

/* A processRecords job came back: one call, its time in the processor
 * thread, the Lua state's memory after it. */
void shard_metrics_job(shard_metrics_t *sm, const proc_job_t *job);
/* It failed: counted by kind (timeout, memory, invalid decision, error). */
void shard_metrics_job_failed(shard_metrics_t *sm, const proc_job_t *job);
/* The first `done` records of b are processed (now_ms: wall clock): their
 * count, data bytes and ages (now - approximateArrivalTimestamp). */
void shard_metrics_records(shard_metrics_t *sm, const batch_t *b, size_t done, int64_t now_ms);

/* The stream's poison-rate breaker and hot-reload rollbacks. */
static inline void shard_metrics_breaker_trip(shard_metrics_t *sm)
{
    metric_add(sm->breaker_trips, 1);
}
static inline void shard_metrics_rolled_back(shard_metrics_t *sm)
{
    metric_add(sm->rolled_back, 1);
}

static inline void shard_metrics_retry(shard_metrics_t *sm)
{
    metric_add(sm->retries, 1);
}
static inline void shard_metrics_skipped(shard_metrics_t *sm, size_t n)
{
    metric_add(sm->skipped, (double)n);
}
static inline void shard_metrics_dead_lettered(shard_metrics_t *sm, size_t n)
{
    metric_add(sm->dead_lettered, (double)n);
}
static inline void shard_metrics_checkpoint(shard_metrics_t *sm)
{
    metric_add(sm->checkpoints, 1);
}
static inline void shard_metrics_halted(shard_metrics_t *sm, int halted)
{
    metric_set(sm->halted, halted);
}

/* A read answered: lag (millis_behind < 0: unknown), or an error (its
 * retries inside the AWS client, throttles among them, are counted there,
 * by API). sm may be NULL (a fetcher without an owner's metrics). */
typedef enum { SHARD_READ_OK, SHARD_READ_ERROR, SHARD_READ_EXPIRED } shard_read_t;
void shard_metrics_read(shard_metrics_t *sm, shard_read_t what, int64_t millis_behind);

/* Hot reloads by stream and result (ok, failed, rolled_back): the worker
 * counts versions loaded and refused, a shard its rollbacks. */
#define SHARD_METRICS_RELOADS "shardrun_reloads_total"
#define SHARD_METRICS_RELOADS_HELP                                                                                     \
    "Script versions by result: ok (loaded), failed (refused by the checks), rolled_back (a shard, or the breaker, "   \
    "went back to the previous version)."

/* Declares the families of this module (and of the worker's stream-level
 * series) so they show, with HELP and TYPE, before any shard is owned. */
void shard_metrics_declare(metrics_t *m);

#endif
