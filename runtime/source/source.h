/* source: the stream source interface (local SQLite file, Kinesis).
 *
 * Reads are asynchronous: a call starts the request and its callback runs
 * later on the loop thread (never inside the call itself), because the
 * Kinesis implementation is a network call. Administrative calls used by the
 * CLI (create, put, split, merge, list) are synchronous. */
#ifndef SHARDRUN_SOURCE_H
#define SHARDRUN_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "record/batch.h"

struct ev_loop;

typedef enum {
    SOURCE_OK = 0,
    SOURCE_ERETRY,     /* transient (throttled, busy, network): try again later */
    SOURCE_EEXPIRED,   /* iterator expired: get a new one after the last record */
    SOURCE_ENOTFOUND,  /* stream or shard does not exist */
    SOURCE_EFATAL,     /* anything else: reported, shard stops */
} source_err_t;

typedef enum {
    POS_TRIM_HORIZON,
    POS_LATEST,
    POS_AT_TIMESTAMP,
    POS_AT_SEQUENCE,
    POS_AFTER_SEQUENCE,
} source_pos_kind_t;

typedef struct source_position {
    source_pos_kind_t kind;
    const char *seq;         /* AT_/AFTER_SEQUENCE */
    int64_t sub_seq;         /* with AFTER_SEQUENCE: skip KPL sub-records up to this one */
    int64_t timestamp_ms;    /* AT_TIMESTAMP */
} source_position_t;

typedef struct source_shard {
    char *id;
    char *parent;            /* NULL when none */
    char *adjacent_parent;   /* second parent of a merge, NULL when none */
    char *start_hash, *end_hash;   /* decimal, inclusive */
    char *start_seq, *end_seq;     /* end_seq NULL while the shard is open */
} source_shard_t;

typedef struct source_shard_list {
    size_t count;
    source_shard_t *shards;  /* owned by the list */
} source_shard_list_t;

void source_shard_clear(source_shard_t *s);   /* frees the fields, not s itself */
void source_shard_list_free(source_shard_list_t *l);
const source_shard_t *source_shard_find(const source_shard_list_t *l, const char *id);

typedef struct source_records {
    source_err_t error;
    const char *message;     /* with an error; valid during the callback */
    batch_t *batch;          /* records (possibly empty); the callee takes ownership */
    char *next_iterator;     /* NULL at shard end; the callee takes ownership */
    int64_t millis_behind;   /* -1 when unknown */
    size_t bytes;            /* payload bytes read, for the 2 MB/s limit */
} source_records_t;

typedef void (*source_shards_cb)(void *ud, source_err_t err, const char *message,
                                 source_shard_list_t *shards /* callee owns */);
typedef void (*source_iterator_cb)(void *ud, source_err_t err, const char *message,
                                   char *iterator /* callee owns */);
typedef void (*source_records_cb)(void *ud, source_records_t *res);

/* One record to put (dead letters, emitted records); the caller keeps the
 * bytes alive until the callback. */
typedef struct source_put_record {
    const void *data;
    size_t data_len;
    const char *pkey;
    const char *hash_key;    /* explicit hash key (decimal, as Kinesis's ExplicitHashKey); NULL: MD5 of pkey */
} source_put_record_t;

/* What a put did. SOURCE_OK: all n records were written. Otherwise `failed`
 * tells which were not: n flags (1 = not written, send it again), or NULL
 * when the source cannot tell (any may be unwritten: send them all again;
 * some may then be written twice, at-least-once). A source that makes more
 * than one call for a put stops at the first call with a failure and flags
 * every record after it too, so what a retry sends again is always a run of
 * the records in their order, never behind records put after them. */
typedef struct source_put_result {
    source_err_t error;
    const char *message;           /* with an error: names the stream and the cause; valid during the callback */
    const unsigned char *failed;   /* NULL, or n flags; valid during the callback */
    int throttled;                 /* the stream answered and refused the flagged records for now (throughput
                                      exceeded): not a failure of the put, send them again after a pause */
} source_put_result_t;

typedef void (*source_put_cb)(void *ud, const source_put_result_t *r);

typedef struct source source_t;

/* A reader's request to be woken when its shard may have new records (or
 * may have ended), so a caught-up reader need not poll. Embedded in its
 * owner (no allocation); the source links it while it watches. The callback
 * runs on the loop thread, never inside source_watch(). A wake-up may be
 * spurious, and one may be missed (see doorbell.h for the local source), so
 * readers keep polling as well: wake-ups make them quick, polls make them
 * sure. */
typedef struct source_watch source_watch_t;
struct source_watch {
    void (*cb)(source_watch_t *w);
    void *data;                  /* the owner's */
    /* private to the source */
    int64_t key;
    source_watch_t *next, *prev;
    int active;
};

typedef struct source_ops {
    const char *name;
    int keeps_max_bytes;     /* 1: get_records never returns more than max_bytes (but one record) */
    void (*list_shards)(source_t *s, const char *stream, source_shards_cb cb, void *ud);
    void (*get_iterator)(source_t *s, const char *stream, const char *shard,
                         const source_position_t *pos, source_iterator_cb cb, void *ud);
    /* max_bytes: a hint the source keeps where it can (local: stops before
     * passing it, but returns at least one record); Kinesis cannot. */
    void (*get_records)(source_t *s, const char *stream, const char *shard, const char *iterator,
                        size_t max_records, size_t max_bytes, source_records_cb cb, void *ud);
    /* Appends records to `stream` (routed by partition key as a producer would). */
    void (*put)(source_t *s, const char *stream, const source_put_record_t *recs, size_t n, source_put_cb cb,
                void *ud);
    /* Optional (NULL: the source cannot wake readers). Starts waking w for
     * the shard: 0, or -1 when it cannot (the reader only polls). */
    int (*watch)(source_t *s, const char *stream, const char *shard, source_watch_t *w);
    void (*unwatch)(source_t *s, source_watch_t *w);   /* no-op when w is not watching */
    /* Records behind `checkpoint` in the shard, or -1 if unknown (status). */
    int64_t (*records_behind)(source_t *s, const char *stream, const char *shard, const char *checkpoint);
    void (*destroy)(source_t *s);

    /* Push sources (Kinesis enhanced fan-out): the service pushes records and
     * get_records answers when some came (or at the shard's end), without a
     * time limit; max_records still bounds one answer. The reader then reads
     * again at once (no polling interval), and uses the two functions below.
     * NULL / 0 for sources that are polled. */
    int push;
    /* The shard is no longer read here (stopped, moved, restarted elsewhere
     * in it): a read or iterator request in flight is abandoned (its callback
     * never runs) and the source lets go of what it holds for the shard. */
    void (*release)(source_t *s, const char *stream, const char *shard);
    /* 1 while the shard's read waits for the service with nothing to hand over. */
    int (*waiting)(source_t *s, const char *stream, const char *shard);
} source_ops_t;

struct source {
    const source_ops_t *ops;
    struct ev_loop *loop;
};

static inline void source_list_shards(source_t *s, const char *stream, source_shards_cb cb, void *ud)
{
    s->ops->list_shards(s, stream, cb, ud);
}
static inline void source_get_iterator(source_t *s, const char *stream, const char *shard,
                                       const source_position_t *pos, source_iterator_cb cb, void *ud)
{
    s->ops->get_iterator(s, stream, shard, pos, cb, ud);
}
static inline void source_get_records(source_t *s, const char *stream, const char *shard, const char *it,
                                      size_t max, size_t max_bytes, source_records_cb cb, void *ud)
{
    s->ops->get_records(s, stream, shard, it, max, max_bytes, cb, ud);
}
static inline int source_watch(source_t *s, const char *stream, const char *shard, source_watch_t *w)
{
    return s->ops->watch ? s->ops->watch(s, stream, shard, w) : -1;
}
static inline void source_unwatch(source_t *s, source_watch_t *w)
{
    if (w->active && s->ops->unwatch) s->ops->unwatch(s, w);
}
static inline void source_destroy(source_t *s)
{
    if (s) s->ops->destroy(s);
}

const char *source_pos_name(source_pos_kind_t k);
const char *source_err_name(source_err_t e);

#endif
