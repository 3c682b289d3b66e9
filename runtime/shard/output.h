/* output: where one shard's emitted records go, and when they are safe.
 *
 * A processor's shard.emit(output, data, key) copies the record into its
 * job (record/emitbuf); when the job is back on the loop the shard hands
 * the records here (outputs_add). Each configured output has a queue per
 * shard: records wait in emit order and are put in batches, one put in
 * flight per queue (a local transaction, or one PutRecords call of at most
 * 500 records and 5 MiB), so everything one put takes was emitted before
 * everything the next one takes.
 *
 * Records are numbered in emit order over all outputs (0, 1, 2, ...). A
 * record is acknowledged when its stream has it, or when the policy gave it
 * up (skipped, or written to the dead-letter destination). outputs_acked()
 * is how many, counted from the first, are: the shard's checkpoint writer
 * waits for it (checkpoint.h), so no checkpoint passes an input whose
 * outputs may be lost.
 *
 * Failures:
 *   - records a stream refused for throughput (PutRecords' throttled
 *     entries): only those are put again, after a backoff, and before any
 *     later record of the queue, for as long as it takes; what holds for
 *     order is said in README ("Per-key order");
 *   - a put that fails as a whole, for now (unreachable, busy): tried again
 *     after the policy's backoff while its `retries` allow, then the
 *     policy's `final`;
 *   - a put the stream refuses for good (no such stream, a refused record):
 *     the policy's `final` at once (retries = -1, on_error = "retry": tried
 *     again forever, whatever the failure).
 * `final` for emitted records: skip (dropped, logged, counted), dead_letter
 * (written to the stream's dead-letter destination, then acknowledged),
 * halt (the output is given up on: outputs_failed() says why, the shard
 * halts, and its checkpoint is cut back before the lost records; the
 * records after them are emitted again when it resumes).
 *
 * Memory: records are kept in the blocks the processor filled (one per
 * call), freed when their last record is acknowledged; outputs_bytes() is
 * the data and keys not yet acknowledged, which the shard bounds
 * (max_emit_buffer_mb) by holding its next batch.
 *
 * Loop thread only; timers from the shard's scheduler. Every answer (a put,
 * a dead-letter send, a backoff timer) updates the queue and calls
 * `progress`; outputs_poke, called from the shard's step, starts work. */
#ifndef SHARDRUN_OUTPUT_H
#define SHARDRUN_OUTPUT_H

#include <stddef.h>
#include <stdint.h>

#include "base/sched.h"
#include "config/config.h"
#include "deadletter.h"
#include "record/emitbuf.h"
#include "source/source.h"

/* A configured output as the worker opened it. Owned by the worker,
 * outlives every shard. */
typedef struct output_dest {
    const char *name;
    const char *stream;
    source_t *source;         /* the worker's source, or one of the output's own */
    size_t max_records;       /* per put */
    size_t max_bytes;         /* per put: data and partition keys */
} output_dest_t;

typedef struct output_chunk output_chunk_t;

typedef struct output_entry {
    output_chunk_t *chunk;
    uint32_t idx;             /* the record in the chunk */
    uint64_t seq;             /* its emit number */
} output_entry_t;

typedef enum {
    OUTQ_IDLE,                /* puts when it has records */
    OUTQ_PUTTING,             /* a put in flight */
    OUTQ_WAITING,             /* backoff before the next try (a put, or a dead-letter send) */
    OUTQ_DEAD_LETTERING,      /* `final` = dead_letter: a send in flight */
    OUTQ_FAILED,              /* given up on (halt): waits for outputs_abandon */
} output_qstate_t;

typedef struct outputs outputs_t;

typedef struct output_queue {
    outputs_t *o;
    const output_dest_t *dest;
    output_entry_t *ents;     /* ents[head .. head+len): queued, in emit order */
    size_t head, len, cap;
    size_t sending;           /* the first `sending` are in the put or send in flight */
    size_t retry_only;        /* > 0: the next put takes exactly these first records (refused ones) */
    int dead_letter_next;     /* the next try is a dead-letter send of the first `sending` */
    int discard;              /* dropped while a put or send was in flight: its answer only releases */
    source_put_record_t *put; /* the put in flight's records (owned) */
    batch_t *dl_batch;        /* the dead-letter send in flight's records (owned) */
    output_qstate_t state;
    int64_t failures;         /* whole puts failed in a row (the policy's attempts) */
    int64_t refusals;         /* puts in a row with refused (throttled) records: the backoff */
    char *error;              /* the last failure, for logs and status */
    sched_timer_t timer;
} output_queue_t;

typedef struct outputs_stats {
    int64_t emitted;          /* records taken from the processor */
    int64_t written;          /* acknowledged by their stream */
    int64_t refused;          /* refused by a stream for throughput, and put again */
    int64_t skipped;          /* given up on by the policy (final = skip) */
    int64_t dead_lettered;    /* written to the dead-letter destination (final = dead_letter) */
} outputs_stats_t;

struct outputs {
    sched_t *sched;
    deadletter_t *dead_letters;
    const config_stream_t *cfg;   /* the stream's: its policy (live on SIGHUP) */
    const char *stream, *shard, *worker;   /* for logs; outlive the outputs */
    output_queue_t *q;        /* one per configured output */
    size_t nq;
    uint64_t next_seq;        /* records emitted so far */
    size_t bytes;             /* data and keys emitted and not acknowledged */
    output_queue_t *failed;   /* given up on (halt), until outputs_abandon */
    unsigned seed;
    void (*progress)(void *ud);
    void *ud;
    outputs_stats_t stats;
};

/* dests (n of them) and cfg must outlive o; names are for logs. */
void outputs_init(outputs_t *o, sched_t *sched, deadletter_t *dead_letters, const output_dest_t *dests, size_t n,
                  const config_stream_t *cfg, const char *stream, const char *shard, const char *worker,
                  void (*progress)(void *ud), void *ud);
/* Frees everything; only when outputs_busy() is 0 (no answer can come). */
void outputs_clear(outputs_t *o);

/* Takes e's records (e is empty afterwards); `from` names the input
 * position the call that emitted them had reached (for dead-letter lines). */
void outputs_add(outputs_t *o, emitbuf_t *e, const char *from);
/* Starts the puts (and sends) that may start now. */
void outputs_poke(outputs_t *o);
/* Forgets every record not in a put or send in flight (the lease is gone:
 * no checkpoint will wait for them); their answers are then ignored. */
void outputs_drop(outputs_t *o);
/* The output given up on with `final` = halt: why (NULL: none), and in
 * *first the number of its first record that will never be acknowledged. */
const char *outputs_failed(const outputs_t *o, uint64_t *first);
/* Forgets the records of the output given up on (the shard has halted and
 * cut its checkpoint back): it starts afresh with the next records. */
void outputs_abandon(outputs_t *o);

static inline uint64_t outputs_emitted(const outputs_t *o) { return o->next_seq; }
/* Records 0 .. n-1 are acknowledged. */
uint64_t outputs_acked(const outputs_t *o);
static inline size_t outputs_bytes(const outputs_t *o) { return o->bytes; }
/* A put or a dead-letter send is in flight: its answer will call back. */
int outputs_busy(const outputs_t *o);
/* Why the oldest unacknowledged record waits (a failure being retried), or NULL. */
const char *outputs_last_error(const outputs_t *o);

#endif
