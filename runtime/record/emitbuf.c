#include "emitbuf.h"

#include <string.h>

#include "base/xalloc.h"

/* Appends n bytes and a NUL; returns their offset. */
static uint64_t emitbuf_put(emitbuf_t *e, const void *p, size_t n)
{
    uint64_t off = e->arena.len;
    if (buf_append(&e->arena, p, n) || buf_append_char(&e->arena, '\0')) xalloc_oom(n);
    return off;
}

void emitbuf_add(emitbuf_t *e, uint32_t output, const void *data, size_t data_len, const char *pkey,
                 size_t pkey_len, const char *hash_key, size_t hash_key_len)
{
    if (e->count == e->cap) {
        e->cap = e->cap ? e->cap * 2 : 64;
        e->recs = xrealloc(e->recs, e->cap * sizeof *e->recs); /* owned by e */
    }
    emit_record_t *r = &e->recs[e->count++];
    memset(r, 0, sizeof *r);
    r->output = output;
    r->data_len = (uint32_t)data_len;
    r->pkey_len = (uint32_t)pkey_len;
    r->data_off = emitbuf_put(e, data, data_len);
    r->pkey_off = emitbuf_put(e, pkey, pkey_len);
    if (hash_key) {
        r->has_hash_key = 1;
        r->hash_key_off = emitbuf_put(e, hash_key, hash_key_len);
    }
    e->bytes += data_len + pkey_len + hash_key_len;
}

void emitbuf_clear(emitbuf_t *e)
{
    free(e->recs);
    buf_free(&e->arena);
    *e = (emitbuf_t)EMITBUF_INIT;
}

void emitbuf_move(emitbuf_t *dst, emitbuf_t *src)
{
    *dst = *src;
    *src = (emitbuf_t)EMITBUF_INIT;
}
