#include "shard_metrics.h"

#include <string.h>

static const char *const stream_shard[] = {"stream", "shard", NULL};
static const char *const stream_shard_kind[] = {"stream", "shard", "kind", NULL};
static const char *const stream_only[] = {"stream", NULL};
static const char *const stream_result[] = {"stream", "result", NULL};

/* Processing a batch: 1 ms to 5 min. */
static const double batch_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                      0.5,   1,      2.5,   5,    10,    30,   60,  300};
/* Put to processed: 10 ms to a day (a backlog being read). The same in
 * milliseconds: records are bucketed by integer compares in their loop. */
static const double age_bounds[] = {0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400};
static const int64_t age_bounds_ms[] = {10,    50,    100,   250,    500,    1000,    2500,     5000,
                                        10000, 30000, 60000, 300000, 900000, 3600000, 21600000, 86400000};
#define AGE_BUCKETS (sizeof age_bounds_ms / sizeof *age_bounds_ms + 1)

#define NBOUNDS(a) (sizeof(a) / sizeof *(a))
_Static_assert(NBOUNDS(age_bounds) + 1 == AGE_BUCKETS, "age_bounds and age_bounds_ms must be the same bounds");

static const char *const fail_kinds[SHARD_FAIL_KINDS] = {"error", "timeout", "memory", "invalid_decision"};

typedef struct shard_family {
    metric_type_t type;
    const char *name, *help;
    const char *const *labels;
    const double *bounds;
    size_t nbounds;
    int keep; /* the stream's series: kept for the worker's life */
} shard_family_t;

enum {
    F_RECORDS,
    F_BYTES,
    F_BATCHES,
    F_FAILURES,
    F_RETRIES,
    F_SKIPPED,
    F_DEAD,
    F_CHECKPOINTS,
    F_BEHIND,
    F_LUA,
    F_HALTED,
    F_READS,
    F_READ_ERRORS,
    F_EXPIRED,
    F_BATCH_SECONDS,
    F_AGE,
    F_TRIPS,
    F_ROLLED_BACK,
    F_COUNT
};

static const shard_family_t shard_families[F_COUNT] = {
    [F_RECORDS] = {METRIC_COUNTER, "shardrun_records_processed_total",
                   "Records processRecords finished without a failure.", stream_shard, NULL, 0, 0},
    [F_BYTES] = {METRIC_COUNTER, "shardrun_bytes_processed_total", "Data bytes of the records processed.", stream_shard,
                 NULL, 0, 0},
    [F_BATCHES] = {METRIC_COUNTER, "shardrun_batches_total", "processRecords calls, whatever they returned.",
                   stream_shard, NULL, 0, 0},
    [F_FAILURES] = {METRIC_COUNTER, "shardrun_batch_failures_total",
                    "Failed processRecords calls, by kind: error, timeout, memory, invalid_decision.",
                    stream_shard_kind, NULL, 0, 0},
    [F_RETRIES] = {METRIC_COUNTER, "shardrun_retries_total", "Failed records given to processRecords again.",
                   stream_shard, NULL, 0, 0},
    [F_SKIPPED] = {METRIC_COUNTER, "shardrun_records_skipped_total", "Records the error policy skipped.", stream_shard,
                   NULL, 0, 0},
    [F_DEAD] = {METRIC_COUNTER, "shardrun_records_dead_lettered_total",
                "Records the error policy wrote to the dead-letter destination.", stream_shard, NULL, 0, 0},
    [F_CHECKPOINTS] = {METRIC_COUNTER, "shardrun_checkpoints_total", "Checkpoints written to the lease store.",
                       stream_shard, NULL, 0, 0},
    [F_BEHIND] = {METRIC_GAUGE, "shardrun_millis_behind_latest",
                  "How far the last read was behind the tip of the shard, in milliseconds (-1: unknown yet).",
                  stream_shard, NULL, 0, 0},
    [F_LUA] = {METRIC_GAUGE, "shardrun_lua_memory_bytes", "Memory of the shard's Lua state after its last call.",
               stream_shard, NULL, 0, 0},
    [F_HALTED] = {METRIC_GAUGE, "shardrun_shard_halted",
                  "1 while the shard is halted on an error (lease kept, nothing processed).", stream_shard, NULL, 0, 0},
    [F_READS] = {METRIC_COUNTER, "shardrun_get_records_total", "Reads of the shard (GetRecords calls) answered.",
                 stream_shard, NULL, 0, 0},
    [F_READ_ERRORS] = {METRIC_COUNTER, "shardrun_get_records_errors_total",
                       "Reads of the shard that failed after the client's own retries.", stream_shard, NULL, 0, 0},
    [F_EXPIRED] = {METRIC_COUNTER, "shardrun_iterator_expired_total", "Shard iterators that expired.", stream_shard,
                   NULL, 0, 0},
    [F_BATCH_SECONDS] = {METRIC_HISTOGRAM, "shardrun_batch_duration_seconds",
                         "Time processRecords took, in the processor thread.", stream_only, batch_bounds,
                         NBOUNDS(batch_bounds), 1},
    [F_AGE] = {METRIC_HISTOGRAM, "shardrun_record_age_seconds",
               "Put to processed: now - approximateArrivalTimestamp when processRecords returned.", stream_only,
               age_bounds, NBOUNDS(age_bounds), 1},
    [F_TRIPS] = {METRIC_COUNTER, "shardrun_breaker_trips_total",
                 "Times the stream's poison-rate breaker stopped skips and dead letters.", stream_only, NULL, 0, 1},
    [F_ROLLED_BACK] = {METRIC_COUNTER, SHARD_METRICS_RELOADS, SHARD_METRICS_RELOADS_HELP, stream_result, NULL, 0, 1},
};

static metric_family_t *shard_family(metrics_t *m, int i)
{
    const shard_family_t *d = &shard_families[i];
    metric_family_t *f = metrics_family(m, d->type, d->name, d->help, d->labels, d->bounds, d->nbounds);
    if (d->keep) metrics_family_keep(f);
    return f;
}

void shard_metrics_declare(metrics_t *m)
{
    for (int i = 0; i < F_COUNT; i++)
        shard_family(m, i);
}

void shard_metrics_init(shard_metrics_t *sm, metrics_t *m, const char *stream, const char *shard)
{
    memset(sm, 0, sizeof *sm);
    if (!m) return;
    metric_t **per_shard[] = {
        [F_RECORDS] = &sm->records,         [F_BYTES] = &sm->bytes,          [F_BATCHES] = &sm->batches,
        [F_RETRIES] = &sm->retries,         [F_SKIPPED] = &sm->skipped,      [F_DEAD] = &sm->dead_lettered,
        [F_CHECKPOINTS] = &sm->checkpoints, [F_BEHIND] = &sm->millis_behind, [F_LUA] = &sm->lua_bytes,
        [F_HALTED] = &sm->halted,           [F_READS] = &sm->reads,          [F_READ_ERRORS] = &sm->read_errors,
        [F_EXPIRED] = &sm->expired};
    for (int i = 0; i < (int)NBOUNDS(per_shard); i++)
        if (per_shard[i]) *per_shard[i] = metrics_series(shard_family(m, i), stream, shard, NULL);
    for (int k = 0; k < SHARD_FAIL_KINDS; k++)
        sm->failures[k] = metrics_series(shard_family(m, F_FAILURES), stream, shard, fail_kinds[k]);
    sm->batch_seconds = metrics_series(shard_family(m, F_BATCH_SECONDS), stream, NULL, NULL);
    sm->record_age = metrics_series(shard_family(m, F_AGE), stream, NULL, NULL);
    sm->breaker_trips = metrics_series(shard_family(m, F_TRIPS), stream, NULL, NULL);
    sm->rolled_back = metrics_series(shard_family(m, F_ROLLED_BACK), stream, "rolled_back", NULL);
    metric_set(sm->millis_behind, -1);
}

void shard_metrics_clear(shard_metrics_t *sm)
{
    metric_t *all[] = {sm->records,       sm->bytes,       sm->batches,       sm->retries,       sm->skipped,
                       sm->dead_lettered, sm->checkpoints, sm->millis_behind, sm->lua_bytes,     sm->halted,
                       sm->reads,         sm->read_errors, sm->expired,       sm->batch_seconds, sm->record_age,
                       sm->breaker_trips, sm->rolled_back};
    for (size_t i = 0; i < NBOUNDS(all); i++)
        metric_put(all[i]);
    for (int k = 0; k < SHARD_FAIL_KINDS; k++)
        metric_put(sm->failures[k]);
    memset(sm, 0, sizeof *sm);
}

void shard_metrics_job(shard_metrics_t *sm, const proc_job_t *job)
{
    metric_add(sm->batches, 1);
    metric_observe(sm->batch_seconds, (double)job->elapsed_us / 1e6);
    if (job->lua_bytes >= 0) metric_set(sm->lua_bytes, (double)job->lua_bytes);
}

void shard_metrics_job_failed(shard_metrics_t *sm, const proc_job_t *job)
{
    shard_fail_kind_t kind = job->timed_out          ? SHARD_FAIL_TIMEOUT
                             : job->out_of_memory    ? SHARD_FAIL_MEMORY
                             : job->invalid_decision ? SHARD_FAIL_INVALID
                                                     : SHARD_FAIL_ERROR;
    metric_add(sm->failures[kind], 1);
}

void shard_metrics_records(shard_metrics_t *sm, const batch_t *b, size_t done, int64_t now_ms)
{
    if (!sm->records) return; /* metrics off: not even the pass over the records */
    /* One pass, no call per record: ages in a batch are close to each other,
     * so the bucket moves little from one record to the next. */
    uint64_t bytes = 0, counts[AGE_BUCKETS] = {0};
    int64_t sum_ms = 0;
    size_t k = sm->age_hint < AGE_BUCKETS ? sm->age_hint : 0;
    for (size_t i = 0; i < done; i++) {
        int64_t age = now_ms - b->recs[i].arrival_ms;
        bytes += b->recs[i].data_len;
        sum_ms += age;
        while (k > 0 && age <= age_bounds_ms[k - 1])
            k--;
        while (k < AGE_BUCKETS - 1 && age > age_bounds_ms[k])
            k++;
        counts[k]++;
    }
    sm->age_hint = k;
    metric_observe_counted(sm->record_age, counts, AGE_BUCKETS, (double)sum_ms / 1000.0);
    metric_add(sm->records, (double)done);
    metric_add(sm->bytes, (double)bytes);
}

void shard_metrics_read(shard_metrics_t *sm, shard_read_t what, int64_t millis_behind)
{
    if (!sm) return;
    metric_add(sm->reads, 1);
    if (what == SHARD_READ_ERROR)
        metric_add(sm->read_errors, 1);
    else if (what == SHARD_READ_EXPIRED)
        metric_add(sm->expired, 1);
    else if (millis_behind >= 0)
        metric_set(sm->millis_behind, (double)millis_behind);
}
