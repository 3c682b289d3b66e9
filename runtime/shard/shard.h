/* shard: the life of one owned shard on the loop thread.
 *
 *   INIT      initialize() runs while the first iterator is fetched
 *   RUNNING   fetch (prefetch bounded) -> processRecords -> checkpoint, in order
 *   ENDING    the shard is closed and drained: shardEnded() must checkpoint
 *   STOPPING  graceful shutdown: in-flight batch, shutdownRequested(), checkpoint, release
 *   LOST      the lease is gone: leaseLost(), never another checkpoint
 *   HALTED    an error stopped it (policy halt): lease kept, nothing processed
 *   CLOSING   the Lua state is being closed; then the worker frees the shard
 *
 * A shard has at most one job in a processor thread at a time, so its
 * records are processed in order. Every decision is checked against the
 * batch before a checkpoint is written, and a checkpoint never moves past a
 * record the processor did not finish. */
#ifndef SHARDRUN_SHARD_H
#define SHARDRUN_SHARD_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "lease/lease.h"
#include "lease/lease_coord.h"
#include "proc/processor.h"
#include "source/source.h"

struct ev_loop;
struct deadletter_writer;
typedef struct shard shard_t;

/* What a shard needs from its worker. Owned by the worker, outlives shards. */
typedef struct shard_env {
    struct ev_loop *loop;
    source_t *source;
    lease_coord_t *coord;
    proc_pool_t *pool;
    struct deadletter_writer *dead_letters;   /* the dead-letter file writer */
    const char *worker_id;
    char *const *lua_path;
    size_t nlua_path;
    size_t buffered_bytes;        /* all shards' prefetched batches */
    int64_t records;              /* processed by all shards, ever (for the drained report) */
    int64_t first_batch_us;       /* monotonic time the first batch was submitted (0: none yet) */
    size_t max_buffered_bytes;
    int64_t min_poll_interval_ms; /* per-shard GetRecords rate limit of the source */
    int64_t rollback_after_failures; /* reload.rollback_after_failures (0 = never) */
    void *ud;
    void (*closed)(void *ud, shard_t *s);        /* the shard can be freed now */
    void (*ended)(void *ud, shard_t *s);         /* SHARD_END checkpointed: sync children */
    void (*halt_worker)(void *ud, shard_t *s);   /* policy halt_worker: exit non-zero */
} shard_env_t;

typedef enum {
    SHARD_INIT, SHARD_RUNNING, SHARD_ENDING, SHARD_STOPPING, SHARD_LOST, SHARD_HALTED, SHARD_CLOSING,
} shard_phase_t;

/* Caller (the worker) owns the shard; it frees it with shard_free() after
 * the closed callback. stream_cfg and script must outlive the shard. */
shard_t *shard_new(shard_env_t *env, const config_stream_t *stream_cfg, proc_script_t *script, const lease_t *lease);
void shard_free(shard_t *s);

void shard_start(shard_t *s);
void shard_lost(shard_t *s);        /* the coordinator lost the lease */
void shard_shutdown(shard_t *s);    /* graceful: ends with the lease released */
void shard_handoff(shard_t *s);     /* graceful: ends with the lease handed to the worker that asked */
void shard_job_done(shard_t *s, proc_job_t *job);   /* from the processor pool */

const char *shard_key(const shard_t *s);
const char *shard_id(const shard_t *s);
const char *shard_stream(const shard_t *s);
shard_phase_t shard_phase(const shard_t *s);
const char *shard_phase_name(shard_phase_t p);
/* Nothing left to read or process right now, and every checkpoint written.
 * A coalesced checkpoint still waiting for its interval is written now. */
int shard_caught_up(shard_t *s);
proc_state_t *shard_proc(shard_t *s);
/* JSON facts for `status` (phase, halt error, counters, script version and
 * load time, the stream's last reload error). Caller frees. */
char *shard_describe(const shard_t *s, const char *reload_error);
/* Hot reload: the shard runs `script` from its next batch on. */
void shard_set_script(shard_t *s, proc_script_t *script);

typedef struct shard_stats {
    int64_t records;          /* processed successfully */
    int64_t millis_behind;
    int64_t batches_failed;   /* error policy counters */
    int64_t retries;
    int64_t skipped;
    int64_t dead_lettered;
    int64_t timeouts;
    int64_t memory_cap_hits;
} shard_stats_t;

#endif
