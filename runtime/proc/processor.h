/* processor: the Lua side of shardrun. One lua_State per shard, run by a pool
 * of processor threads; the loop thread submits jobs and gets them back
 * through one queue + ev_async.
 *
 * Threads: a proc_state_t is touched by at most one job at a time (the shard
 * state machine never submits a second job before the first came back), so a
 * Lua state needs no lock. The loop thread only reads a job after it is
 * returned. The one exception is the timeout interrupt (proc_interrupt),
 * which uses lua_sethook, the one Lua call that may come from another thread. */
#ifndef SHARDRUN_PROCESSOR_H
#define SHARDRUN_PROCESSOR_H

#include <stddef.h>
#include <stdint.h>

#include "record/batch.h"
#include "record/emitbuf.h"
#include "base/errbuf.h"
#include "base/tpool.h"
#include "proc_script.h"

struct ev_loop;

typedef enum {
    JOB_INIT,            /* create the state, load the script, call initialize */
    JOB_PROCESS,         /* processRecords on a batch */
    JOB_SHARD_ENDED,     /* shardEnded: must return "checkpoint" */
    JOB_SHUTDOWN,        /* shutdownRequested */
    JOB_LEASE_LOST,      /* leaseLost: no checkpoint possible */
    JOB_CLOSE,           /* lua_close */
    JOB_TIMER,           /* onTimer(shard, now_ms) */
} proc_job_kind_t;

typedef enum {
    DEC_NONE,            /* nil: processed, no checkpoint yet */
    DEC_ALL,             /* "checkpoint": after the last record */
    DEC_AT,              /* checkpoint at record `index` */
    DEC_FAILED,          /* records before `index` done, the rest failed */
    DEC_ERROR,           /* error raised, invalid decision, timeout, memory cap */
} proc_decision_t;

typedef struct proc_state proc_state_t;

typedef struct proc_limits {
    int64_t timeout_ms;       /* 0 = none */
    int64_t memory_limit_mb;  /* 0 = none */
    int64_t emit_limit_bytes; /* what one call may emit (shard.emit raises past it); 0 = none */
} proc_limits_t;

/* Caller (loop thread) owns the state; it is freed by a JOB_CLOSE job
 * followed by proc_state_free() on the loop thread. */
proc_state_t *proc_state_new(proc_script_t *script, const proc_shard_info_t *info, const proc_limits_t *limits,
                             char *const *lua_path, size_t nlua_path);
void proc_state_free(proc_state_t *ps);
/* Swaps to `script` at the next job (hot reload); shard.state carries over. */
void proc_state_set_script(proc_state_t *ps, proc_script_t *script);
proc_script_t *proc_state_script(proc_state_t *ps);   /* the version running now */
void proc_state_set_limits(proc_state_t *ps, const proc_limits_t *limits);
/* The outputs shard.emit may name (the config's, in order: an emitted
 * record carries its output's index). Copied; set before the first job.
 * Without outputs, shard.emit raises "no outputs configured". */
void proc_state_set_outputs(proc_state_t *ps, char *const *names, size_t n);

typedef struct proc_job {
    tpool_job_t tp;           /* first: the pool's handle on the job */
    proc_job_kind_t kind;
    proc_state_t *ps;
    const batch_t *batch;     /* JOB_PROCESS: borrowed until the job returns */
    int64_t now_ms;           /* JOB_TIMER: the wall clock the timer fired at */
    void *ud;                 /* the submitter's */
    /* results, written by the processor thread */
    proc_decision_t decision;
    size_t index;
    /* JOB_TIMER with DEC_AT: the position onTimer named (not checked
     * against what the shard processed: the shard does that) */
    char *cp_seq;             /* owned by the job */
    int64_t cp_sub;
    /* records the call emitted (processRecords, onTimer, shardEnded,
     * shutdownRequested, initialize), in emit order; the submitter takes
     * them (emitbuf_move) or proc_job_reset frees them. A call that ends in
     * DEC_ERROR keeps what it emitted before the error: the submitter
     * decides. */
    emitbuf_t emits;
    char *error;              /* owned by the job; proc_job_reset frees it */
    char *traceback;
    int timed_out;
    int out_of_memory;
    int invalid_decision;     /* DEC_ERROR because the script returned something that is not a decision */
    int64_t lua_bytes;        /* the state's memory after the call (-1: no state) */
    int64_t started_us;       /* monotonic, set when a thread picks the job */
    int64_t elapsed_us;
    struct proc_pool *pool;   /* the pool it was submitted to */
} proc_job_t;

void proc_job_reset(proc_job_t *job);   /* frees results (and emits), keeps kind/ps/ud */

typedef struct proc_pool proc_pool_t;
typedef void (*proc_done_cb)(void *ud, proc_job_t *job);

/* Starts n threads. done runs on the loop thread for each finished job.
 * Caller owns the pool: proc_pool_free() joins the threads. */
proc_pool_t *proc_pool_new(struct ev_loop *loop, int nthreads, proc_done_cb done, void *ud);
void proc_pool_free(proc_pool_t *p);
void proc_pool_submit(proc_pool_t *p, proc_job_t *job);
size_t proc_pool_busy(proc_pool_t *p);   /* jobs submitted and not yet returned */

/* Interrupts the job running on ps (timeout): the script gets an error it
 * cannot catch with pcall. Safe to call from the loop thread at any time. */
void proc_interrupt(proc_state_t *ps);

#endif
