/* fetch: reading one shard ahead of its processing.
 *
 * A fetcher keeps one read in flight at most: a shard iterator first (from
 * the checkpoint, the last record fetched, or the stream's initial
 * position), then GetRecords-style reads, rate-limited per shard, polling
 * every idle_ms once caught up. Records at or before the position it resumed
 * from are dropped (a resume reads AT the checkpoint's sequence number so a
 * KPL aggregate can continue at its next sub-record). What it reads goes to
 * its owner; it reads again when the owner says there is room.
 *
 * Where the source can wake readers (source_watch: the local source), a
 * wake-up ends the idle wait at once, and one that comes while a read is in
 * flight makes the fetcher read again as soon as that read is answered (the
 * read may have missed the new records), so a put is read within a loop
 * turn. The idle poll stays: wake-ups may be missed.
 *
 * Memory: all fetchers of a worker share one budget (max_buffered_mb),
 * counted in batch bytes as they sit in memory, KPL aggregates expanded. A
 * read starts only when the bytes held by every shard, plus what the reads in
 * flight may bring, stay within it. A read asks for no more records than the
 * room left allows at the shard's recent bytes per source record (an
 * aggregate counts as the records it expands into), at most 10 MiB worth,
 * and the source is told the byte limit where it can keep it (the local
 * source). So the bound holds unless a read's records are larger than that
 * shard's earlier ones; then no read starts until the bytes are back under.
 * A shard's first read from a source that cannot keep a byte limit, with no
 * history yet, asks for at most 10 records.
 *
 * A push source (Kinesis enhanced fan-out) answers a read when the service
 * pushes records, however long that takes: the fetcher reads again at once,
 * without pacing, reserves nothing for the waiting read (a read starts while
 * the budget has room; the source holds the service back when no read
 * waits), and stopping or restarting releases the waiting read at once.
 *
 * Loop thread only; timers from the shard's scheduler. */
#ifndef SHARDRUN_FETCH_H
#define SHARDRUN_FETCH_H

#include <stddef.h>
#include <stdint.h>

#include "base/sched.h"
#include "shard_metrics.h"
#include "source/source.h"

/* One worker's memory bound for prefetched records. */
typedef struct fetch_budget {
    size_t max;            /* bytes; 0 = no bound */
    size_t held;           /* batches owned by shards */
    size_t reserved;       /* reads in flight */
} fetch_budget_t;

/* A batch the owner now holds (a slice it made) / no longer holds. */
void fetch_budget_hold(fetch_budget_t *b, size_t bytes);
void fetch_budget_release(fetch_budget_t *b, size_t bytes);

typedef struct fetch_handler {
    /* Records read (count > 0); the owner owns the batch and its bytes are
     * held on the budget until the owner releases them. */
    void (*records)(void *ud, batch_t *b);
    /* The shard is closed and every record was read. */
    void (*ended)(void *ud);
    /* Reading failed for good (why names the shard and the cause). */
    void (*failed)(void *ud, const char *why);
    /* May the fetcher read more now (prefetch room)? */
    int (*room)(void *ud);
    /* The request that was out when the owner stopped the fetcher answered
     * (the answer is dropped): nothing is in flight now, so an owner waiting
     * for fetch_busy() to turn 0 may free the fetcher from here. */
    void (*settled)(void *ud);
} fetch_handler_t;

typedef enum {
    FETCH_IDLE,        /* nothing in flight; reads when there is room */
    FETCH_WAITING,     /* the timer decides the next read (rate limit, idle poll, retry) */
    FETCH_ITERATOR,    /* asking for an iterator */
    FETCH_READING,     /* a read in flight */
    FETCH_ENDED,       /* read to the end of a closed shard */
    FETCH_STOPPED,     /* stopped by the owner, or failed */
} fetch_state_t;

typedef struct fetch_options {
    size_t max_records;
    int64_t idle_ms;          /* between reads once caught up */
    int64_t min_interval_ms;  /* between reads always (the source's per-shard limit) */
    int64_t retry_ms;         /* after a transient error */
    source_pos_kind_t initial;/* for a lease with no checkpoint */
    int64_t initial_timestamp_ms;
} fetch_options_t;

typedef struct fetcher {
    sched_t *sched;
    source_t *source;
    fetch_budget_t *budget;
    fetch_handler_t h;
    void *ud;
    char *stream, *shard;
    fetch_options_t opt;
    fetch_state_t state;
    int in_flight;            /* a request is out (also after fetch_stop: its answer is dropped) */
    int discard;              /* the request out belongs to before a restart: drop its answer */
    char *iterator;           /* NULL until one is obtained, or after it expired */
    char *from;               /* where a new iterator starts: a sequence number or a sentinel */
    int64_t from_sub;
    char *skip_to;            /* resume filter: drop records at or before (skip_to, skip_sub) */
    int64_t skip_sub;
    int64_t next_read_ms;     /* rate limit */
    size_t reservation;       /* on the budget while a read is in flight */
    size_t asked;             /* records the read in flight asked for */
    double bytes_per_record;  /* per source record (an aggregate whole) in the last read; 0: unknown */
    int caught_up;            /* the last read found nothing more to read now */
    char *backoff_error;      /* set while waiting after a transient read error (throttled, network): why */
    int idle_wait;            /* WAITING only because caught up: a wake-up may end it */
    int woken;                /* a wake-up came while a request was out: read again after it */
    source_watch_t watch;     /* the source's wake-ups for this shard, where it has them */
    int64_t millis_behind;    /* as the source reported it last (-1: unknown) */
    sched_timer_t timer;
    shard_metrics_t *metrics;  /* the owner's, set after fetch_init (NULL: none) */
} fetcher_t;

/* checkpoint: where processing resumes (a sequence number, a sentinel or
 * NULL); strings are copied. The fetcher does nothing until fetch_poke. */
void fetch_init(fetcher_t *f, sched_t *sched, source_t *source, fetch_budget_t *budget, const char *stream,
                const char *shard, const char *checkpoint, int64_t checkpoint_sub, const fetch_options_t *opt,
                const fetch_handler_t *h, void *ud);
void fetch_clear(fetcher_t *f);   /* only when fetch_busy() is 0 */

/* Reads now if it may (room, budget, rate limit), else arranges to. */
void fetch_poke(fetcher_t *f);
/* No more reads; a request in flight still answers (then is dropped). */
void fetch_stop(fetcher_t *f);
/* Reads again from after (seq, sub) (a sequence number, or a sentinel: the
 * checkpoint), with a new iterator; a request in flight is dropped when it
 * answers. For a shard resumed after a halt. */
void fetch_restart(fetcher_t *f, const char *seq, int64_t sub);
/* A request is in flight: the owner must not free the fetcher. */
static inline int fetch_busy(const fetcher_t *f) { return f->in_flight; }
/* Nothing read is on its way: no request out, or only a push source's read
 * waiting for the service with nothing to hand over. */
static inline int fetch_nothing_coming(const fetcher_t *f)
{
    return !f->in_flight ||
           (f->source->ops->waiting && f->source->ops->waiting(f->source, f->stream, f->shard));
}
/* Caught up: the last read brought everything there was. */
static inline int fetch_caught_up(const fetcher_t *f) { return f->caught_up; }
static inline int fetch_ended(const fetcher_t *f) { return f->state == FETCH_ENDED; }
static inline int64_t fetch_millis_behind(const fetcher_t *f) { return f->millis_behind; }
/* While reading waits after a transient error (throttling, the network): its message, else NULL. */
static inline const char *fetch_backoff_error(const fetcher_t *f) { return f->backoff_error; }
void fetch_set_options(fetcher_t *f, const fetch_options_t *opt);

#endif
