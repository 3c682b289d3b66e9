/* shard: the life of one owned shard on the loop thread.
 *
 * One state, with the transitions in one place (shard.c, shard_transition):
 *
 *   STARTING   initialize() runs (or waits for its retry); the first records are fetched meanwhile
 *   RUNNING    pieces of records in order: processRecords, then a checkpoint as the script decided
 *   HALTED     stopped on an error (policy halt): lease kept, nothing processed until resumed
 *   ENDING     read to the end of a closed shard and all processed: shardEnded() must checkpoint
 *   STOPPING   graceful: the call in flight finishes, then shutdownRequested()
 *   RELEASING  the last checkpoints are written, then the lease is released or handed over
 *   LOST       the lease is gone: leaseLost(), never another checkpoint
 *   CLOSING    the Lua state closes; the worker frees the shard once nothing can call back
 *
 *   STARTING -> RUNNING | HALTED | STOPPING | LOST
 *   RUNNING  -> HALTED | ENDING | STOPPING | LOST
 *   HALTED   -> RUNNING (resume) | STOPPING | LOST
 *   ENDING   -> RELEASING | STOPPING | LOST
 *   STOPPING -> RELEASING | LOST
 *   RELEASING -> CLOSING | LOST
 *   LOST     -> CLOSING
 *
 * Beside the state, a shard has operations out: at most one job in a
 * processor thread (so its records are processed in order), one fetch, one
 * checkpoint write, one dead-letter send, and the puts of the records its
 * processor emitted (output.h; one per output). A checkpoint waits for the
 * outputs emitted before it (checkpoint.h); unacknowledged outputs over
 * max_emit_buffer_mb hold the next batch; onTimer runs every
 * timer_interval_ms between batches; max_batching_window_ms gathers reads
 * into one batch. Every event (a job, a fetch, a
 * write, a send or a timer answering) records its result and calls one
 * function, shard_step, which decides the next action from the state: there
 * is no other place that starts work. The shard is freed only in CLOSING
 * with nothing out, so no callback can reach freed memory.
 *
 * Safety: a checkpoint never moves past a record the processor did not
 * finish (nor past records it processed without asking for a checkpoint),
 * and never backwards; a lost lease writes no checkpoint; no batch is
 * dispatched once the lease may have expired by this worker's clock. */
#ifndef SHARDRUN_SHARD_H
#define SHARDRUN_SHARD_H

#include <stddef.h>
#include <stdint.h>

#include "base/metrics.h"
#include "base/sched.h"
#include "breaker.h"
#include "config/config.h"
#include "deadletter.h"
#include "fetch.h"
#include "lease/lease.h"
#include "lease/lease_coord.h"
#include "output.h"
#include "proc/processor.h"
#include "source/source.h"

typedef struct shard shard_t;

/* What a shard needs from its worker. Owned by the worker, outlives shards. */
typedef struct shard_env {
    sched_t *sched;
    source_t *source;
    lease_coord_t *coord;
    deadletter_t *dead_letters;
    const output_dest_t *outputs;   /* the config's outputs, in its order (shard.emit's names) */
    char *const *output_names;
    size_t noutputs;
    fetch_budget_t *budget;      /* all shards' prefetched records (max_buffered_mb) */
    metrics_t *metrics;          /* the worker's registry (NULL: metrics off) */
    const char *worker_id;
    char *const *lua_path;
    size_t nlua_path;
    int64_t records;             /* processed by all shards, ever (for the drained report) */
    int64_t first_batch_us;      /* monotonic time the first batch was submitted (0: none yet) */
    int64_t min_poll_interval_ms;    /* per-shard read rate limit of the source */
    int64_t rollback_after_failures; /* reload.rollback_after_failures (0 = never) */
    void *ud;
    /* Runs a job in a processor thread; shard_job_done gets it back on the loop. */
    void (*submit)(void *ud, proc_job_t *job);
    /* May the shard start another batch? 0 once the lease may have expired by
     * this worker's clock (the coordinator's judgement). */
    int (*may_dispatch)(void *ud, const char *key);
    void (*closed)(void *ud, shard_t *s);        /* nothing can call back into s: free it now */
    void (*ended)(void *ud, shard_t *s);         /* SHARD_END checkpointed: sync children */
    void (*halt_worker)(void *ud, shard_t *s);   /* policy halt_worker, or a stuck processor thread */
    /* The stream's poison-rate breaker tripped on this shard's records (why
     * says how many failed): the records were not given up on, they wait at
     * the head of the shard. The worker rolls back or halts the stream. */
    void (*tripped)(void *ud, shard_t *s, const char *why);
} shard_env_t;

typedef enum {
    SHARD_STARTING,
    SHARD_RUNNING,
    SHARD_HALTED,
    SHARD_ENDING,
    SHARD_STOPPING,
    SHARD_RELEASING,
    SHARD_LOST,
    SHARD_CLOSING,
} shard_state_t;

/* Caller (the worker) owns the shard; it frees it with shard_free() after
 * the closed callback. stream_cfg, script and the stream's breaker must
 * outlive the shard. */
shard_t *shard_new(shard_env_t *env, const config_stream_t *stream_cfg, proc_script_t *script, breaker_t *breaker,
                   const lease_t *lease);
void shard_free(shard_t *s);

void shard_start(shard_t *s);
void shard_lost(shard_t *s);        /* the coordinator lost the lease */
void shard_shutdown(shard_t *s);    /* graceful: ends with the lease released */
void shard_handoff(shard_t *s);     /* graceful: ends with the lease handed to the worker that asked */
void shard_job_done(shard_t *s, proc_job_t *job);   /* from the processor pool */
/* A halted shard goes on from its last finished record (a new script version
 * loaded, or `shardrun resume`); skip: the records it halted at are skipped
 * first (counted, logged). Returns 1 if it was halted. */
int shard_resume(shard_t *s, const char *why, int skip);
/* The lease row's shardrunControl as scanned: a request (`shardrun resume`)
 * is acted on once; the same text again, or one there before the take, is not. */
void shard_control(shard_t *s, const char *control);
/* Stops processing the shard (lease kept), loudly, until it is resumed. */
void shard_halt(shard_t *s, const char *why);
/* The stream's settings changed (SIGHUP): limits, fetch and checkpoint settings apply now. */
void shard_settings_changed(shard_t *s);

const char *shard_key(const shard_t *s);
const char *shard_id(const shard_t *s);
const char *shard_stream(const shard_t *s);
shard_state_t shard_state(const shard_t *s);
const char *shard_state_name(shard_state_t st);
/* Nothing left to read or process right now, and every checkpoint written.
 * A coalesced checkpoint still waiting for its interval is written now. */
int shard_caught_up(shard_t *s);
proc_state_t *shard_proc(shard_t *s);
/* A put of emitted records is in flight (it reads the shard's memory). */
int shard_outputs_busy(const shard_t *s);
/* JSON facts for `status` (state, halt error, retry, counters, script version
 * and load time, the stream's last reload error). Caller frees. */
char *shard_describe(const shard_t *s, const char *reload_error);
/* Hot reload: the shard runs `script` from its next batch on. */
void shard_set_script(shard_t *s, proc_script_t *script);

typedef struct shard_stats {
    int64_t records;          /* processed successfully */
    int64_t batches_failed;   /* error policy counters */
    int64_t retries;
    int64_t skipped;
    int64_t dead_lettered;
    int64_t dead_letter_data_omitted;
    int64_t timeouts;
    int64_t memory_cap_hits;
    int64_t breaker_trips;    /* the stream's breaker tripped on this shard's records */
    int64_t timer_failures;   /* onTimer raised or returned an invalid decision */
} shard_stats_t;

const shard_stats_t *shard_stats(const shard_t *s);

#endif
