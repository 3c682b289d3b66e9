#include "simsource.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/xalloc.h"
#include "simwire.h"
#include "simworker.h"

#define SIMSOURCE_STREAM "sim"
#define SIMSOURCE_HASH_MAX ((uint64_t)0xffffffff)    /* hash keys 0..2^32-1 (decimal strings like Kinesis) */
#define SIMSOURCE_ITERATOR_TTL_MS 300000     /* Kinesis: an iterator expires after 5 minutes */
#define SIMSOURCE_SEQ_BASE ((uint64_t)1000000000)

typedef enum { REQ_LIST, REQ_ITERATOR, REQ_RECORDS } req_kind_t;

typedef struct simsource_req simsource_req_t;
typedef struct simsource_handle simsource_handle_t;

struct simsource {
    sim_t *sim;
    simshard_t *shards;
    size_t n, cap;
    uint64_t next_seq;
    simwire_t wire;              /* the requests on their way, of every handle */
};

struct simsource_handle {
    source_t base;               /* first */
    simsource_t *src;
    simworker_t *w;
};

/* One request: to the stream on a world timer, answered there, the answer
 * back on a timer of the worker's. */
struct simsource_req {
    simwire_req_t wire;          /* first; wire.sender: the simsource_handle_t, NULL once it is gone
                                    (dropped when it reaches the stream) */
    simsource_t *src;
    req_kind_t kind;
    void *cb, *ud;
    char *shard;                 /* ITERATOR */
    source_position_t pos;
    char *pos_seq;
    char *iterator;              /* RECORDS */
    size_t max_records, max_bytes;
    int64_t back_ms;             /* the answer's way back */
    /* the answer */
    source_err_t err;
    const char *msg;
    source_shard_list_t *list;
    char *it_out;
    source_records_t res;
};

_Static_assert(offsetof(simsource_req_t, wire) == 0, "the wire frees a simsource_req_t by its simwire_req_t");

static void simsource_req_free(simwire_req_t *wr);

/* ---- the stream ------------------------------------------------------------- */

static simshard_t *simsource_add_shard(simsource_t *src, int parent, int adjacent, uint64_t lo, uint64_t hi)
{
    if (src->n == src->cap) {
        src->cap = src->cap ? src->cap * 2 : 16;
        src->shards = xrealloc(src->shards, src->cap * sizeof *src->shards);
    }
    simshard_t *sh = &src->shards[src->n];
    memset(sh, 0, sizeof *sh);
    snprintf(sh->id, sizeof sh->id, "shardId-%012zu", src->n);
    sh->parent = parent;
    sh->adjacent = adjacent;
    sh->start_hash = lo;
    sh->end_hash = hi;
    src->n++;
    return sh;
}

simsource_t *simsource_new(sim_t *sim, int nshards)
{
    simsource_t *src = xcalloc(1, sizeof *src); /* the run's: simsource_free */
    src->sim = sim;
    src->next_seq = SIMSOURCE_SEQ_BASE;
    src->wire.free_req = simsource_req_free;
    uint64_t width = (SIMSOURCE_HASH_MAX + 1) / (uint64_t)nshards;
    for (int i = 0; i < nshards; i++) {
        uint64_t lo = width * (uint64_t)i, hi = i == nshards - 1 ? SIMSOURCE_HASH_MAX : lo + width - 1;
        simsource_add_shard(src, -1, -1, lo, hi);
    }
    return src;
}

size_t simsource_count(const simsource_t *src) { return src->n; }
simshard_t *simsource_shard(simsource_t *src, size_t i) { return &src->shards[i]; }

simshard_t *simsource_find(simsource_t *src, const char *id, size_t *idx)
{
    for (size_t i = 0; i < src->n; i++) {
        if (strcmp(src->shards[i].id, id)) continue;
        if (idx) *idx = i;
        return &src->shards[i];
    }
    return NULL;
}

static void simsource_append(simshard_t *sh, uint64_t seq, int64_t nsub)
{
    for (int64_t k = 0; k < nsub; k++) {
        if (sh->n == sh->cap) {
            sh->cap = sh->cap ? sh->cap * 2 : 64;
            sh->recs = xrealloc(sh->recs, sh->cap * sizeof *sh->recs);
        }
        sh->recs[sh->n++] = (simrec_t){seq, k, nsub, 0};
    }
}

void simsource_put(simsource_t *src, int n)
{
    sim_t *sim = src->sim;
    for (int i = 0; i < n;) {
        uint64_t key = (uint64_t)sim_range(sim, 0, (int64_t)SIMSOURCE_HASH_MAX);
        simshard_t *sh = NULL;
        for (size_t k = 0; k < src->n && !sh; k++)
            if (!src->shards[k].closed && src->shards[k].start_hash <= key && key <= src->shards[k].end_hash)
                sh = &src->shards[k];
        if (!sh) abort(); /* the open shards cover every hash key */
        int64_t nsub = sim_chance(sim, 0.2) ? sim_range(sim, 2, 5) : 1; /* a KPL aggregate */
        simsource_append(sh, src->next_seq++, nsub);
        i += (int)nsub;
    }
}

static void simsource_close(simsource_t *src, size_t i)
{
    src->shards[i].closed = 1;
    sim_trace(src->sim, "shard_closed shard=%s records=%zu", src->shards[i].id, src->shards[i].n);
}

int simsource_split(simsource_t *src)
{
    size_t open[256], k = 0;
    for (size_t i = 0; i < src->n && k < 256; i++)
        if (!src->shards[i].closed && src->shards[i].end_hash > src->shards[i].start_hash) open[k++] = i;
    if (!k) return -1;
    size_t p = open[sim_range(src->sim, 0, (int64_t)k - 1)];
    uint64_t lo = src->shards[p].start_hash, hi = src->shards[p].end_hash, mid = lo + (hi - lo) / 2;
    simsource_close(src, p);
    simsource_add_shard(src, (int)p, -1, lo, mid);
    simsource_add_shard(src, (int)p, -1, mid + 1, hi);
    src->sim->stats.splits++;
    sim_trace(src->sim, "split parent=%s children=%s,%s", src->shards[p].id, src->shards[src->n - 2].id,
              src->shards[src->n - 1].id);
    return 0;
}

int simsource_merge(simsource_t *src)
{
    size_t pairs[256][2], k = 0;
    for (size_t i = 0; i < src->n; i++) {
        if (src->shards[i].closed || src->shards[i].end_hash == SIMSOURCE_HASH_MAX) continue;
        for (size_t j = 0; j < src->n && k < 256; j++)
            if (!src->shards[j].closed && src->shards[j].start_hash == src->shards[i].end_hash + 1) {
                pairs[k][0] = i;
                pairs[k++][1] = j;
            }
    }
    if (!k) return -1;
    size_t pick = (size_t)sim_range(src->sim, 0, (int64_t)k - 1), a = pairs[pick][0], b = pairs[pick][1];
    simsource_close(src, a);
    simsource_close(src, b);
    simsource_add_shard(src, (int)a, (int)b, src->shards[a].start_hash, src->shards[b].end_hash);
    src->sim->stats.merges++;
    sim_trace(src->sim, "merge parents=%s,%s child=%s", src->shards[a].id, src->shards[b].id,
              src->shards[src->n - 1].id);
    return 0;
}

int64_t simsource_record_index(const simshard_t *sh, const char *seq, int64_t sub)
{
    char *end;
    uint64_t v = strtoull(seq, &end, 10);
    if (!*seq || *end) return -1;
    size_t lo = 0, hi = sh->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const simrec_t *r = &sh->recs[mid];
        if (r->seq == v && r->sub == sub) return (int64_t)mid;
        if (r->seq < v || (r->seq == v && r->sub < sub)) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

int simsource_processed(simsource_t *src, const char *id, const batch_t *b, size_t n)
{
    simshard_t *sh = simsource_find(src, id, NULL);
    if (!sh) {
        sim_fail(src->sim, "a batch of shard %s, which the stream does not have, was processed", id);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        int64_t k = simsource_record_index(sh, batch_seq(b, i), b->recs[i].sub_seq);
        if (k < 0) {
            sim_fail(src->sim, "shard %s: a batch holds record (%s, %" PRId64 "), which the shard does not have", id,
                     batch_seq(b, i), b->recs[i].sub_seq);
            return -1;
        }
        sh->recs[k].processed++;
    }
    while (sh->prefix < sh->n && sh->recs[sh->prefix].processed) sh->prefix++;
    return 0;
}

int simsource_all_processed(const simsource_t *src)
{
    for (size_t i = 0; i < src->n; i++)
        if (src->shards[i].prefix < src->shards[i].n) return 0;
    return 1;
}

size_t simsource_records(const simsource_t *src)
{
    size_t n = 0;
    for (size_t i = 0; i < src->n; i++) n += src->shards[i].n;
    return n;
}

/* ---- reading ------------------------------------------------------------------ */

static char *simsource_iterator(size_t shard, size_t idx, int64_t now)
{
    char buf[96];
    snprintf(buf, sizeof buf, "it:%zu:%zu:%" PRId64, shard, idx, now);
    return xstrdup(buf);
}

static int simsource_parse_iterator(const char *it, size_t *shard, size_t *idx, int64_t *issued)
{
    return sscanf(it, "it:%zu:%zu:%" SCNd64, shard, idx, issued) == 3 ? 0 : -1;
}

/* The first record at or after (or after) a sequence number, at the start of its aggregate. */
static size_t simsource_seek(const simshard_t *sh, const char *seq, int after)
{
    uint64_t v = strtoull(seq, NULL, 10);
    size_t i = 0;
    while (i < sh->n && (after ? sh->recs[i].seq <= v : sh->recs[i].seq < v)) i++;
    return i;
}

static void simsource_answer_list(simsource_t *src, simsource_req_t *r)
{
    source_shard_list_t *l = xcalloc(1, sizeof *l); /* the caller's */
    l->count = src->n;
    l->shards = xcalloc(src->n ? src->n : 1, sizeof *l->shards);
    for (size_t i = 0; i < src->n; i++) {
        const simshard_t *sh = &src->shards[i];
        source_shard_t *o = &l->shards[i];
        char buf[32];
        o->id = xstrdup(sh->id);
        o->parent = sh->parent >= 0 ? xstrdup(src->shards[sh->parent].id) : NULL;
        o->adjacent_parent = sh->adjacent >= 0 ? xstrdup(src->shards[sh->adjacent].id) : NULL;
        snprintf(buf, sizeof buf, "%" PRIu64, sh->start_hash);
        o->start_hash = xstrdup(buf);
        snprintf(buf, sizeof buf, "%" PRIu64, sh->end_hash);
        o->end_hash = xstrdup(buf);
        snprintf(buf, sizeof buf, "%" PRIu64, sh->n ? sh->recs[0].seq : SIMSOURCE_SEQ_BASE);
        o->start_seq = xstrdup(buf);
        if (sh->closed) {
            snprintf(buf, sizeof buf, "%" PRIu64, sh->n ? sh->recs[sh->n - 1].seq : SIMSOURCE_SEQ_BASE);
            o->end_seq = xstrdup(buf);
        }
    }
    r->list = l;
}

static void simsource_answer_iterator(simsource_t *src, simsource_req_t *r)
{
    size_t idx;
    simshard_t *sh = simsource_find(src, r->shard, &idx);
    if (!sh) {
        r->err = SOURCE_ENOTFOUND;
        r->msg = "no such shard";
        return;
    }
    size_t at = 0;
    if (r->pos.kind == POS_AT_SEQUENCE) at = simsource_seek(sh, r->pos_seq, 0);
    else if (r->pos.kind == POS_AFTER_SEQUENCE) at = simsource_seek(sh, r->pos_seq, 1);
    else if (r->pos.kind == POS_LATEST) at = sh->n;
    r->it_out = simsource_iterator(idx, at, src->sim->now);
}

static void simsource_answer_records(simsource_t *src, simsource_req_t *r)
{
    sim_t *sim = src->sim;
    size_t idx, at;
    int64_t issued;
    if (simsource_parse_iterator(r->iterator, &idx, &at, &issued) || idx >= src->n) {
        r->res.error = SOURCE_EFATAL;
        r->msg = "invalid iterator";
        return;
    }
    if (sim->now - issued > SIMSOURCE_ITERATOR_TTL_MS || sim_fault(sim, 0.01)) {
        sim->stats.iterators_expired++;
        r->res.error = SOURCE_EEXPIRED;
        r->msg = "Iterator expired";
        return;
    }
    const simshard_t *sh = &src->shards[idx];
    size_t end = at, sources = 0, bytes = 0;
    while (end < sh->n && sources < r->max_records) {
        size_t next = end + (size_t)sh->recs[end].nsub;
        size_t add = (next - end) * 24;
        if (sources > 0 && bytes + add > r->max_bytes) break; /* the byte limit kept, one record at least */
        bytes += add;
        end = next;
        sources++;
    }
    batch_t *b = batch_new(end - at ? end - at : 1, (end - at) * 48 + 16);
    for (size_t i = at; i < end; i++) {
        char seq[32], data[64];
        int sl = snprintf(seq, sizeof seq, "%" PRIu64, sh->recs[i].seq);
        int dl = snprintf(data, sizeof data, "%s/%" PRIu64 "/%" PRId64, sh->id, sh->recs[i].seq, sh->recs[i].sub);
        if (batch_add(&b, data, (size_t)dl, "k", 1, seq, (size_t)sl, sh->recs[i].sub, sim->now)) abort();
        if (sh->recs[i].nsub > 1) b->aggregated = 1;
    }
    r->res.batch = b;
    r->res.bytes = bytes;
    r->res.millis_behind = end < sh->n ? 1000 : 0;
    /* At the end of a closed shard: no next iterator. Kinesis may also
     * hand the last records with an iterator, and end on the next read. */
    int last = sh->closed && end == sh->n;
    r->res.next_iterator = last && (at == end || sim_chance(sim, 0.5)) ? NULL : simsource_iterator(idx, end, sim->now);
}

static void simsource_req_free(simwire_req_t *wr)
{
    simsource_req_t *r = (simsource_req_t *)wr;
    free(r->shard);
    free(r->pos_seq);
    free(r->iterator);
    source_shard_list_free(r->list);
    free(r->it_out);
    batch_free(r->res.batch);
    free(r->res.next_iterator);
    free(r);
}

/* The answer reaches the worker. */
static void simsource_deliver(sched_timer_t *t)
{
    simsource_req_t *r = t->data;
    simwire_unlink(&r->src->wire, &r->wire);
    switch (r->kind) {
    case REQ_LIST: {
        source_shard_list_t *l = r->list;
        r->list = NULL;
        ((source_shards_cb)r->cb)(r->ud, r->err, r->msg, r->err ? NULL : l);
        if (r->err) source_shard_list_free(l);
        break;
    }
    case REQ_ITERATOR: {
        char *it = r->it_out;
        r->it_out = NULL;
        ((source_iterator_cb)r->cb)(r->ud, r->err, r->msg, it);
        break;
    }
    case REQ_RECORDS: {
        source_records_t res = r->res;
        res.message = r->msg;
        if (res.error) {
            batch_free(res.batch);
            res.batch = batch_new(1, 16);
        }
        memset(&r->res, 0, sizeof r->res); /* the callee owns batch and iterator now */
        ((source_records_cb)r->cb)(r->ud, &res);
        break;
    }
    }
    simsource_req_free(&r->wire);
}

/* The request reaches the stream: answered now, the answer sent back. */
static void simsource_arrive(sched_timer_t *t)
{
    simsource_req_t *r = t->data;
    simsource_t *src = r->src;
    sim_t *sim = src->sim;
    simsource_handle_t *h = r->wire.sender;
    if (!h) {
        simwire_unlink(&src->wire, &r->wire); /* its worker is gone */
        simsource_req_free(&r->wire);
        return;
    }
    if (sim_fault(sim, 0.03)) {
        sim->stats.source_errors++;
        r->err = SOURCE_ERETRY;
        r->res.error = SOURCE_ERETRY;
        r->msg = "ProvisionedThroughputExceededException (simulated)";
    } else if (r->kind == REQ_LIST) {
        simsource_answer_list(src, r);
    } else if (r->kind == REQ_ITERATOR) {
        simsource_answer_iterator(src, r);
    } else {
        simsource_answer_records(src, r);
    }
    simwire_answer(&r->wire, &h->w->vs.base, r->back_ms, simsource_deliver);
}

static simsource_req_t *simsource_send(simsource_handle_t *h, req_kind_t kind, void *cb, void *ud)
{
    simsource_t *src = h->src;
    simsource_req_t *r = xcalloc(1, sizeof *r); /* freed when answered or dropped */
    r->src = src;
    r->kind = kind;
    r->cb = cb;
    r->ud = ud;
    r->back_ms = sim_latency(src->sim);
    simwire_send(&src->wire, &r->wire, h, &src->sim->world.base, sim_latency(src->sim), simsource_arrive);
    return r;
}

static void simsource_list_shards(source_t *s, const char *stream, source_shards_cb cb, void *ud)
{
    simsource_send((simsource_handle_t *)s, REQ_LIST, (void *)cb, ud);
}

static void simsource_get_iterator(source_t *s, const char *stream, const char *shard, const source_position_t *pos,
                                   source_iterator_cb cb, void *ud)
{
    simsource_req_t *r = simsource_send((simsource_handle_t *)s, REQ_ITERATOR, (void *)cb, ud);
    r->shard = xstrdup(shard);
    r->pos = *pos;
    r->pos_seq = pos->seq ? xstrdup(pos->seq) : NULL;
    r->pos.seq = NULL;
}

static void simsource_get_records(source_t *s, const char *stream, const char *shard, const char *iterator,
                                  size_t max_records, size_t max_bytes, source_records_cb cb, void *ud)
{
    simsource_req_t *r = simsource_send((simsource_handle_t *)s, REQ_RECORDS, (void *)cb, ud);
    r->iterator = xstrdup(iterator);
    r->max_records = max_records;
    r->max_bytes = max_bytes;
}

static int64_t simsource_records_behind(source_t *s, const char *stream, const char *shard, const char *cp)
{
    return -1;
}

/* The worker is gone: requests on their way to the stream are dropped when
 * they arrive, answers on their way back now. */
static void simsource_destroy(source_t *s)
{
    simsource_handle_t *h = (simsource_handle_t *)s;
    simwire_forget(&h->src->wire, h, &h->w->vs.base);
    free(h);
}

static const source_ops_t simsource_ops = {
    .name = "simulated", .keeps_max_bytes = 1, .list_shards = simsource_list_shards,
    .get_iterator = simsource_get_iterator, .get_records = simsource_get_records,
    .records_behind = simsource_records_behind, .destroy = simsource_destroy,
};

source_t *simsource_connect(simsource_t *src, simworker_t *w)
{
    simsource_handle_t *h = xcalloc(1, sizeof *h); /* the worker's: source_destroy */
    h->base.ops = &simsource_ops;
    h->src = src;
    h->w = w;
    return &h->base;
}

void simsource_free(simsource_t *src)
{
    simwire_free(&src->wire);
    for (size_t i = 0; i < src->n; i++) free(src->shards[i].recs);
    free(src->shards);
    free(src);
}
