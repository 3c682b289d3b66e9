/* shard_internal: what shard.c and shard_policy.c share. Not for other
 * modules: they see shard.h only. */
#ifndef SHARDRUN_SHARD_INTERNAL_H
#define SHARDRUN_SHARD_INTERNAL_H

#include <ev.h>

#include "shard.h"

typedef struct queued {
    batch_t *batch;
    int bisected;                /* a piece of a bisected batch: no retries of its own */
    struct queued *next;
} queued_t;

struct shard {
    shard_env_t *env;
    const config_stream_t *cfg;
    char *key, *stream, *id;
    shard_phase_t phase;
    proc_state_t *ps;
    proc_job_t job;
    int job_busy;
    int initialized;
    ev_timer job_timer;          /* process_timeout_ms */
    int64_t interrupted_ms;      /* when the running job was interrupted (0: not) */
    /* fetching */
    char *iterator;              /* NULL: none yet, or the shard has ended */
    int iterator_wanted;
    int fetch_busy;              /* a get_records or get_iterator is in flight */
    int lua_closed;              /* JOB_CLOSE done: freed once no callback can still reach s */
    int fetch_ended;             /* no more records: the shard is closed and read to the end */
    int caught_up;               /* the last read found nothing more to read */
    int64_t next_fetch_ms;       /* monotonic: rate limit */
    ev_timer fetch_timer;
    queued_t *head, *tail;
    size_t queued;
    char *start_seq;             /* the checkpoint we resumed from: skip (seq, sub <= start_sub) */
    int64_t start_sub;
    char *last_fetched;          /* to get a new iterator after an expired one */
    int64_t last_fetched_sub;
    /* processing and checkpoints */
    batch_t *current;
    int current_bisected;
    int64_t attempts;            /* retries made of `current` (error policy) */
    batch_t *retry;              /* records waiting for retry_timer to run again */
    int retry_bisected;
    batch_t *final;              /* records whose dead-letter write is pending or must be retried */
    int dl_busy;                 /* a dead-letter write (file or stream) is in flight */
    char *dl_lines;              /* its JSON lines (the put's records point into them) */
    source_put_record_t *dl_recs;
    char *final_error, *final_tb;
    ev_timer retry_timer;
    unsigned seed;
    proc_script_t *script;       /* the version this shard should run */
    proc_script_t *previous;     /* the one before a hot reload (rollback) */
    int64_t fails_since_swap;    /* failed batches in a row since the swap */
    char *done_seq;              /* the last record processed (for shutdownRequested's checkpoint) */
    int64_t done_sub;
    char *checkpointed;          /* as last written */
    int cp_busy;                 /* checkpoint writes in flight */
    int64_t cp_wanted_ms;        /* coalescing: when the interval allows the next write */
    char *cp_seq;                /* coalesced checkpoint waiting for cp_timer */
    int64_t cp_sub;
    ev_timer cp_timer;
    int releasing;
    int handoff;                 /* stopping to hand the lease to the worker that asked */
    ev_timer halt_timer;
    char *halt_error;
    shard_stats_t stats;
};

/* shard.c */
void shard_maybe_free(shard_t *s);
void shard_set_str(char **dst, const char *v);
void shard_account(shard_t *s, batch_t *b);                 /* a batch the shard now holds */
void shard_push_front(shard_t *s, batch_t *b, int bisected);
void shard_release_batch(shard_t *s, batch_t *b);
void shard_checkpoint(shard_t *s, const char *seq, int64_t sub);
void shard_remember_done(shard_t *s, const batch_t *b, size_t i);
void shard_halt(shard_t *s, const char *why);
void shard_dispatch(shard_t *s);
void shard_submit(shard_t *s, proc_job_kind_t kind);

/* shard_policy.c: the error policy's steps */
void shard_batch_failed(shard_t *s, proc_job_t *job);
void shard_retry_later(shard_t *s, int64_t delay_ms);
void shard_on_retry_timer(struct ev_loop *loop, ev_timer *t, int revents);
void shard_maybe_rollback(shard_t *s);

#endif
