#include "batch.h"

#include <string.h>

#include "base/xalloc.h"

static size_t batch_header_size(size_t cap)
{
    return sizeof(batch_t) + cap * sizeof(batch_record_t);
}

batch_t *batch_new(size_t cap, size_t arena_hint)
{
    if (arena_hint < 256) arena_hint = 256;
    size_t total = batch_header_size(cap) + arena_hint;
    batch_t *b = xmalloc(total); /* owned by the caller, freed by batch_free */
    memset(b, 0, sizeof *b);
    b->cap = cap;
    b->arena_cap = arena_hint;
    b->bytes = total;
    return b;
}

void batch_free(batch_t *b)
{
    free(b);
}

static void batch_grow_arena(batch_t **bp, size_t need)
{
    batch_t *b = *bp;
    size_t cap = b->arena_cap;
    while (cap - b->arena_len < need) cap *= 2;
    size_t total = batch_header_size(b->cap) + cap;
    b = xrealloc(b, total);
    b->arena_cap = cap;
    b->bytes = total;
    *bp = b;
}

/* Copies n bytes plus a NUL into the arena; returns their offset. */
static uint64_t batch_put(batch_t **bp, const void *p, size_t n)
{
    if ((*bp)->arena_cap - (*bp)->arena_len < n + 1) batch_grow_arena(bp, n + 1);
    batch_t *b = *bp;
    char *dst = (char *)batch_arena(b) + b->arena_len;
    if (n) memcpy(dst, p, n);
    dst[n] = '\0'; /* sequence numbers and keys are usable as C strings */
    uint64_t off = b->arena_len;
    b->arena_len += n + 1;
    return off;
}

/* The hot path of every source (a local read adds each record with it):
 * room for the three strings is made once, then they are copied. */
int batch_add(batch_t **bp, const void *data, size_t data_len, const void *pkey, size_t pkey_len,
              const char *seq, size_t seq_len, int64_t sub_seq, int64_t arrival_ms)
{
    if ((*bp)->count >= (*bp)->cap) return -1;
    size_t need = data_len + pkey_len + seq_len + 3;
    if ((*bp)->arena_cap - (*bp)->arena_len < need) batch_grow_arena(bp, need);
    batch_t *b = *bp;
    char *base = (char *)batch_arena(b), *dst = base + b->arena_len;
    batch_record_t *r = &b->recs[b->count++];
    r->data_off = b->arena_len;
    if (data_len) memcpy(dst, data, data_len);
    dst[data_len] = '\0';
    dst += data_len + 1;
    r->pkey_off = (uint64_t)(dst - base);
    if (pkey_len) memcpy(dst, pkey, pkey_len);
    dst[pkey_len] = '\0'; /* sequence numbers and keys are usable as C strings */
    dst += pkey_len + 1;
    r->seq_off = (uint64_t)(dst - base);
    memcpy(dst, seq, seq_len);
    dst[seq_len] = '\0';
    b->arena_len += need;
    r->data_len = (uint32_t)data_len;
    r->pkey_len = (uint32_t)pkey_len;
    r->seq_len = (uint32_t)seq_len;
    r->reserved = 0;
    r->sub_seq = sub_seq;
    r->arrival_ms = arrival_ms;
    return 0;
}

char *batch_add_begin(batch_t **bp, size_t data_max)
{
    if ((*bp)->count >= (*bp)->cap) return NULL;
    if ((*bp)->arena_cap - (*bp)->arena_len < data_max + 1) batch_grow_arena(bp, data_max + 1);
    return (char *)batch_arena(*bp) + (*bp)->arena_len;
}

void batch_add_end(batch_t **bp, size_t data_len, const void *pkey, size_t pkey_len, const char *seq,
                   size_t seq_len, int64_t sub_seq, int64_t arrival_ms)
{
    batch_t *b = *bp;
    batch_record_t r = {0};
    r.data_off = b->arena_len;
    ((char *)batch_arena(b))[b->arena_len + data_len] = '\0';
    b->arena_len += data_len + 1;
    r.pkey_off = batch_put(bp, pkey, pkey_len);
    r.seq_off = batch_put(bp, seq, seq_len);
    r.data_len = (uint32_t)data_len;
    r.pkey_len = (uint32_t)pkey_len;
    r.seq_len = (uint32_t)seq_len;
    r.sub_seq = sub_seq;
    r.arrival_ms = arrival_ms;
    b = *bp;
    b->recs[b->count++] = r;
}

batch_t *batch_slice(const batch_t *b, size_t from, size_t to)
{
    if (to > b->count) to = b->count;
    if (from > to) from = to;
    size_t arena = 0;
    for (size_t i = from; i < to; i++)
        arena += b->recs[i].data_len + b->recs[i].pkey_len + b->recs[i].seq_len + 3;
    batch_t *s = batch_new(to - from, arena); /* owned by the caller */
    for (size_t i = from; i < to; i++) {
        const batch_record_t *r = &b->recs[i];
        batch_add(&s, batch_data(b, i), r->data_len, batch_pkey(b, i), r->pkey_len, batch_seq(b, i),
                  r->seq_len, r->sub_seq, r->arrival_ms);
    }
    s->aggregated = b->aggregated;
    return s;
}

batch_t *batch_join(batch_t *const *parts, size_t n)
{
    size_t count = 0, arena = 0;
    for (size_t i = 0; i < n; i++) {
        count += parts[i]->count;
        arena += parts[i]->arena_len;
    }
    batch_t *b = batch_new(count, arena); /* owned by the caller */
    char *dst = (char *)batch_arena(b);
    for (size_t i = 0; i < n; i++) {
        const batch_t *p = parts[i];
        memcpy(dst + b->arena_len, batch_arena(p), p->arena_len);
        for (size_t k = 0; k < p->count; k++) {
            batch_record_t r = p->recs[k];
            r.data_off += b->arena_len;
            r.pkey_off += b->arena_len;
            r.seq_off += b->arena_len;
            b->recs[b->count++] = r;
        }
        b->arena_len += p->arena_len;
        b->aggregated |= p->aggregated;
    }
    return b;
}

void batch_compact(batch_t **bp)
{
    batch_t *b = *bp;
    size_t used = batch_header_size(b->count) + b->arena_len;
    if (b->bytes <= 2 * used + 65536) return; /* not worth a copy */
    size_t arena_cap = b->arena_len ? b->arena_len : 1;
    /* the arena follows the descriptors: slide it down to the last one used */
    memmove(b->recs + b->count, batch_arena(b), b->arena_len);
    b->cap = b->count;
    b->arena_cap = arena_cap;
    b->bytes = batch_header_size(b->cap) + arena_cap;
    *bp = xrealloc(b, b->bytes);
}
