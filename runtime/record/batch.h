/* batch: the records of one GetRecords call, in one allocation.
 *
 * Layout: header | record descriptors [cap] | arena (data, partition keys,
 * sequence numbers). Descriptors hold offsets into the arena, not pointers, so
 * the block can grow with realloc while it is filled, and the Lua side (see
 * lua/shardrun/records.lua, whose ffi.cdef mirrors batch_record_t) reads
 * fields straight from the block without copying. */
#ifndef SHARDRUN_BATCH_H
#define SHARDRUN_BATCH_H

#include <stddef.h>
#include <stdint.h>

/* Mirrored by ffi.cdef in lua/shardrun/records.lua: keep both in step. */
typedef struct batch_record {
    uint64_t data_off;
    uint64_t pkey_off;
    uint64_t seq_off;
    uint32_t data_len;
    uint32_t pkey_len;
    uint32_t seq_len;
    uint32_t reserved;
    int64_t sub_seq;     /* KPL sub-sequence number, 0 for plain records */
    int64_t arrival_ms;  /* approximate arrival timestamp, ms since epoch */
} batch_record_t;

typedef struct batch {
    size_t count;        /* records filled */
    size_t cap;          /* descriptor slots */
    size_t arena_len;    /* arena bytes used */
    size_t arena_cap;    /* arena bytes allocated */
    size_t bytes;        /* total allocation, for memory accounting */
    int aggregated;      /* 1 if any record came from a KPL aggregate */
    batch_record_t recs[];   /* followed by the arena */
} batch_t;

/* New empty batch with room for `cap` records and `arena_hint` bytes.
 * Caller owns the result; free with batch_free(). */
batch_t *batch_new(size_t cap, size_t arena_hint);
void batch_free(batch_t *b);

/* Appends a record; may move the batch (hence **). Returns 0, or -1 if the
 * descriptor slots are full. Strings are copied into the arena. */
int batch_add(batch_t **bp, const void *data, size_t data_len, const void *pkey, size_t pkey_len,
              const char *seq, size_t seq_len, int64_t sub_seq, int64_t arrival_ms);

/* Two-step append for data the caller writes in place (e.g. decodes from
 * base64 straight into the arena, without a copy): batch_add_begin returns
 * room for `data_max` bytes, valid until the next call on the batch, or NULL
 * if the descriptor slots are full; batch_add_end then records `data_len`
 * (<= data_max) bytes of it with the other fields (copied). Calling begin
 * again without end simply abandons the first reservation. */
char *batch_add_begin(batch_t **bp, size_t data_max);
void batch_add_end(batch_t **bp, size_t data_len, const void *pkey, size_t pkey_len, const char *seq,
                   size_t seq_len, int64_t sub_seq, int64_t arrival_ms);

/* Start of the arena (offsets in batch_record_t are relative to it). */
static inline const char *batch_arena(const batch_t *b)
{
    return (const char *)(b->recs + b->cap);
}

static inline const char *batch_data(const batch_t *b, size_t i) { return batch_arena(b) + b->recs[i].data_off; }
static inline const char *batch_seq(const batch_t *b, size_t i) { return batch_arena(b) + b->recs[i].seq_off; }
static inline const char *batch_pkey(const batch_t *b, size_t i) { return batch_arena(b) + b->recs[i].pkey_off; }

/* A new batch holding the records of parts[0..n), in that order (records a
 * shard gathered over several reads). Caller owns the result. */
batch_t *batch_join(batch_t *const *parts, size_t n);

/* Gives back what a batch reserved and did not fill (descriptor slots, arena),
 * when that is much more than it holds, so its `bytes` (what memory
 * accounting counts) is what it uses. May move the batch. */
void batch_compact(batch_t **bp);

/* A new batch holding records [from, to) of b (for retries of a part).
 * Caller owns the result. */
batch_t *batch_slice(const batch_t *b, size_t from, size_t to);

#endif
