/* emitbuf: the records a processor emitted (shard.emit) in one call.
 *
 * Filled on the processor thread while the call runs, read on the loop
 * thread once the job is back: the buffer travels with the job, so no state
 * is shared between the threads. Data, partition keys and explicit hash keys
 * are copied into one arena as they are emitted (the Lua strings may be
 * collected at once); descriptors hold offsets into it, so the arena can
 * grow. Keys are NUL-terminated, usable as C strings. */
#ifndef SHARDRUN_EMITBUF_H
#define SHARDRUN_EMITBUF_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

typedef struct emit_record {
    uint64_t data_off, pkey_off, hash_key_off;
    uint32_t data_len;
    uint32_t pkey_len;
    uint32_t output;          /* index of the output in the config's outputs */
    int has_hash_key;
} emit_record_t;

typedef struct emitbuf {
    emit_record_t *recs;      /* owned */
    size_t count, cap;
    buf_t arena;
    size_t bytes;             /* data and keys emitted: what the emit bounds count */
} emitbuf_t;

#define EMITBUF_INIT {NULL, 0, 0, BUF_INIT, 0}

/* Copies one record in. pkey and hash_key must hold no NUL (hash_key may be
 * NULL). Never fails (out of memory is fatal). */
void emitbuf_add(emitbuf_t *e, uint32_t output, const void *data, size_t data_len, const char *pkey,
                 size_t pkey_len, const char *hash_key, size_t hash_key_len);
/* Frees what e holds; e is empty and reusable afterwards. */
void emitbuf_clear(emitbuf_t *e);
/* Moves src's records to *dst (which must be empty); src becomes empty. */
void emitbuf_move(emitbuf_t *dst, emitbuf_t *src);

static inline const char *emitbuf_data(const emitbuf_t *e, size_t i) { return e->arena.data + e->recs[i].data_off; }
static inline const char *emitbuf_pkey(const emitbuf_t *e, size_t i) { return e->arena.data + e->recs[i].pkey_off; }
static inline const char *emitbuf_hash_key(const emitbuf_t *e, size_t i)
{
    return e->recs[i].has_hash_key ? e->arena.data + e->recs[i].hash_key_off : NULL;
}

#endif
