#include "output.h"

#include <stdio.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/xalloc.h"
#include "policy.h"

/* The records one call emitted, freed with the last of them. */
struct output_chunk {
    emitbuf_t e;
    size_t refs;              /* records not yet acknowledged or dropped */
    char *from;               /* the input position the call had reached */
};

static void output_on_timer(sched_timer_t *t);

void outputs_init(outputs_t *o, sched_t *sched, deadletter_t *dead_letters, const output_dest_t *dests, size_t n,
                  const config_stream_t *cfg, const char *stream, const char *shard, const char *worker,
                  void (*progress)(void *ud), void *ud)
{
    memset(o, 0, sizeof *o);
    o->sched = sched;
    o->dead_letters = dead_letters;
    o->cfg = cfg;
    o->stream = stream;
    o->shard = shard;
    o->worker = worker;
    o->progress = progress;
    o->ud = ud;
    o->seed = (unsigned)clock_mono_us() ^ (unsigned)(uintptr_t)o;
    o->nq = n;
    o->q = n ? xcalloc(n, sizeof *o->q) : NULL; /* owned by o */
    for (size_t i = 0; i < n; i++) {
        o->q[i].o = o;
        o->q[i].dest = &dests[i];
        sched_timer_init(&o->q[i].timer, output_on_timer, &o->q[i]);
    }
}

/* ---- entries ------------------------------------------------------------------ */

static size_t output_record_bytes(const output_chunk_t *c, uint32_t i)
{
    const emit_record_t *r = &c->e.recs[i];
    const char *hk = emitbuf_hash_key(&c->e, i);
    return r->data_len + r->pkey_len + (hk ? strlen(hk) : 0);
}

/* The entry is done with (acknowledged, given up on, or dropped). */
static void output_release(outputs_t *o, const output_entry_t *en)
{
    output_chunk_t *c = en->chunk;
    o->bytes -= output_record_bytes(c, en->idx);
    if (--c->refs > 0) return;
    emitbuf_clear(&c->e);
    free(c->from);
    free(c);
}

static void output_push(output_queue_t *q, output_chunk_t *c, uint32_t idx, uint64_t seq)
{
    if (q->head + q->len == q->cap) {
        if (q->head > 0) {
            memmove(q->ents, q->ents + q->head, q->len * sizeof *q->ents);
            q->head = 0;
        } else {
            q->cap = q->cap ? q->cap * 2 : 256;
            q->ents = xrealloc(q->ents, q->cap * sizeof *q->ents); /* owned by the queue */
        }
    }
    q->ents[q->head + q->len++] = (output_entry_t){c, idx, seq};
}

/* Releases the first k entries. */
static void output_release_front(output_queue_t *q, size_t k)
{
    for (size_t i = 0; i < k; i++) output_release(q->o, &q->ents[q->head + i]);
    q->head += k;
    q->len -= k;
    if (!q->len) q->head = 0;
}

/* Of the first `sending` entries, releases those not flagged (written) and
 * keeps the flagged ones at the front, in their order. Returns how many
 * were kept. */
static size_t output_keep_flagged(output_queue_t *q, const unsigned char *flags)
{
    size_t n = q->sending, w = q->head + n;
    for (size_t i = n; i-- > 0;) {
        output_entry_t en = q->ents[q->head + i];
        if (flags[i]) {
            q->ents[--w] = en;
        } else {
            output_release(q->o, &en);
            q->o->stats.written++;
        }
    }
    size_t kept = q->head + n - w;
    q->len -= w - q->head;
    q->head = w;
    return kept;
}

void outputs_add(outputs_t *o, emitbuf_t *e, const char *from)
{
    if (!e->count) {
        emitbuf_clear(e);
        return;
    }
    output_chunk_t *c = xcalloc(1, sizeof *c); /* freed with its last record (output_release) */
    emitbuf_move(&c->e, e);
    c->refs = c->e.count;
    c->from = xstrdup(from ? from : "");
    for (size_t i = 0; i < c->e.count; i++) {
        uint32_t out = c->e.recs[i].output;
        if (out >= o->nq) {
            log_error("internal_error", "stream=%s shard=%s what=\"emitted record names output %u of %zu\"",
                      o->stream, o->shard, out, o->nq);
            abort();
        }
        o->bytes += output_record_bytes(c, (uint32_t)i);
        output_push(&o->q[out], c, (uint32_t)i, o->next_seq++);
    }
    o->stats.emitted += (int64_t)c->e.count;
}

uint64_t outputs_acked(const outputs_t *o)
{
    uint64_t acked = o->next_seq;
    for (size_t i = 0; i < o->nq; i++) {
        const output_queue_t *q = &o->q[i];
        if (q->len && q->ents[q->head].seq < acked) acked = q->ents[q->head].seq;
    }
    return acked;
}

int outputs_busy(const outputs_t *o)
{
    for (size_t i = 0; i < o->nq; i++)
        if (o->q[i].state == OUTQ_PUTTING || o->q[i].state == OUTQ_DEAD_LETTERING) return 1;
    return 0;
}

const char *outputs_last_error(const outputs_t *o)
{
    const output_queue_t *oldest = NULL;
    for (size_t i = 0; i < o->nq; i++) {
        const output_queue_t *q = &o->q[i];
        if (q->len && q->error && (!oldest || q->ents[q->head].seq < oldest->ents[oldest->head].seq)) oldest = q;
    }
    return oldest ? oldest->error : NULL;
}

/* ---- failures ------------------------------------------------------------------- */

static void output_set_error(output_queue_t *q, const char *why)
{
    char *copy = xstrdup(why); /* owned by the queue */
    free(q->error);
    q->error = copy;
}

static void output_wait(output_queue_t *q, int64_t delay_ms)
{
    q->state = OUTQ_WAITING;
    sched_timer_start(q->o->sched, &q->timer, delay_ms);
}

static void output_on_timer(sched_timer_t *t)
{
    output_queue_t *q = t->data;
    if (q->state == OUTQ_WAITING) q->state = OUTQ_IDLE;
    q->o->progress(q->o->ud);
}

static const char *output_from(const output_queue_t *q)
{
    return q->len ? q->ents[q->head].chunk->from : "";
}

/* The policy's `final` for the first `sending` records of q. */
static void output_final(output_queue_t *q, const char *why)
{
    outputs_t *o = q->o;
    const policy_config_t *p = &o->cfg->policy;
    char qw[1200];
    size_t n = q->sending;
    if (p->final == FINAL_SKIP) {
        log_warn("outputs_skipped", "stream=%s shard=%s output=%s destination=%s count=%zu from=%s attempts=%lld "
                 "error=%s", o->stream, o->shard, q->dest->name, q->dest->stream, n, output_from(q),
                 (long long)q->failures, log_quote(why, qw, sizeof qw));
        o->stats.skipped += (int64_t)n;
        output_release_front(q, n);
        q->sending = 0;
        q->failures = 0;
        q->state = OUTQ_IDLE;
        return;
    }
    if (p->final == FINAL_DEAD_LETTER) {
        q->dead_letter_next = 1; /* outputs_poke sends them */
        q->state = OUTQ_IDLE;
        return;
    }
    log_error("output_failed", "stream=%s shard=%s output=%s destination=%s count=%zu from=%s attempts=%lld "
              "error=%s action=\"halt: no checkpoint past these inputs\"", o->stream, o->shard, q->dest->name,
              q->dest->stream, n, output_from(q), (long long)q->failures, log_quote(why, qw, sizeof qw));
    q->state = OUTQ_FAILED;
    if (!o->failed) o->failed = q;
}

/* A put that failed as a whole (the first `sending` records). */
static void output_put_failed(output_queue_t *q, const source_put_result_t *r)
{
    outputs_t *o = q->o;
    const policy_config_t *p = &o->cfg->policy;
    char why[1400], qw[1500];
    snprintf(why, sizeof why, "output %s (stream %s): %s (%s)", q->dest->name, q->dest->stream,
             r->message ? r->message : "put failed", source_err_name(r->error));
    output_set_error(q, why);
    q->failures++;
    /* retries = -1 ("retry"): forever, whatever the failure; otherwise a
     * refusal for good goes to `final` at once, a failure for now after
     * the retries */
    int transient = r->error == SOURCE_ERETRY;
    int again = p->retries < 0 || (transient && q->failures <= p->retries);
    if (!again) {
        output_final(q, why);
        return;
    }
    int64_t delay = policy_backoff_ms(p, q->failures, &o->seed);
    log_warn("output_put_failed", "stream=%s shard=%s output=%s destination=%s count=%zu from=%s attempt=%lld "
             "retry_in_ms=%lld error=%s action=\"no checkpoint past these inputs\"", o->stream, o->shard,
             q->dest->name, q->dest->stream, q->sending, output_from(q), (long long)q->failures, (long long)delay,
             log_quote(why, qw, sizeof qw));
    q->retry_only = q->sending;
    q->sending = 0;
    output_wait(q, delay);
}

/* ---- puts ------------------------------------------------------------------------- */

static void output_put_done(void *ud, const source_put_result_t *r)
{
    output_queue_t *q = ud;
    outputs_t *o = q->o;
    free(q->put);
    q->put = NULL;
    if (q->discard) { /* dropped meanwhile: nothing waits for these */
        output_release_front(q, q->sending);
        q->sending = 0;
        q->discard = 0;
        q->state = OUTQ_IDLE;
    } else if (r->error == SOURCE_OK) {
        o->stats.written += (int64_t)q->sending;
        output_release_front(q, q->sending);
        q->sending = q->retry_only = 0;
        q->failures = q->refusals = 0;
        q->state = OUTQ_IDLE;
    } else {
        size_t n = q->sending;
        if (r->failed) q->sending = output_keep_flagged(q, r->failed);
        if (r->throttled) {
            /* capacity, not failure: the refused records alone go again,
             * before any later record, after a pause that grows */
            q->refusals++;
            o->stats.refused += (int64_t)q->sending;
            int64_t delay = policy_backoff_ms(&o->cfg->policy, q->refusals, &o->seed);
            log_info("output_throttled", "stream=%s shard=%s output=%s destination=%s refused=%zu of=%zu "
                     "retry_in_ms=%lld", o->stream, o->shard, q->dest->name, q->dest->stream, q->sending, n,
                     (long long)delay);
            q->retry_only = q->sending;
            q->sending = 0;
            output_wait(q, delay);
        } else {
            output_put_failed(q, r);
        }
    }
    o->progress(o->ud);
}

/* How many of the first records one put takes. */
static size_t output_fit(const output_queue_t *q)
{
    if (q->retry_only) return q->retry_only;
    size_t n = 0, bytes = 0;
    while (n < q->len && n < q->dest->max_records) {
        const output_entry_t *en = &q->ents[q->head + n];
        size_t sz = output_record_bytes(en->chunk, en->idx);
        if (n && bytes + sz > q->dest->max_bytes) break;
        bytes += sz;
        n++;
    }
    return n;
}

static void output_put(output_queue_t *q)
{
    size_t n = output_fit(q);
    q->put = xcalloc(n, sizeof *q->put); /* owned by the queue until the answer */
    for (size_t i = 0; i < n; i++) {
        const output_entry_t *en = &q->ents[q->head + i];
        const emitbuf_t *e = &en->chunk->e;
        q->put[i] = (source_put_record_t){emitbuf_data(e, en->idx), e->recs[en->idx].data_len,
                                          emitbuf_pkey(e, en->idx), emitbuf_hash_key(e, en->idx)};
    }
    q->sending = n;
    q->state = OUTQ_PUTTING;
    q->dest->source->ops->put(q->dest->source, q->dest->stream, q->put, n, output_put_done, q);
}

/* ---- dead letters ------------------------------------------------------------------ */

static void output_dead_letter_done(void *ud, const deadletter_result_t *r)
{
    output_queue_t *q = ud;
    outputs_t *o = q->o;
    batch_free(q->dl_batch);
    q->dl_batch = NULL;
    char qw[1200];
    if (q->discard) { /* dropped meanwhile */
        output_release_front(q, q->sending);
        q->sending = 0;
        q->discard = 0;
        q->state = OUTQ_IDLE;
    } else if (r->status == DEADLETTER_SENT) {
        log_warn("outputs_dead_lettered", "stream=%s shard=%s output=%s count=%zu from=%s destination=%s error=%s",
                 o->stream, o->shard, q->dest->name, q->sending, output_from(q), r->destination,
                 log_quote(q->error, qw, sizeof qw));
        o->stats.dead_lettered += (int64_t)q->sending;
        output_release_front(q, q->sending);
        q->sending = 0;
        q->dead_letter_next = 0;
        q->failures = 0;
        q->state = OUTQ_IDLE;
    } else if (r->status == DEADLETTER_ERETRY) {
        q->failures++;
        int64_t delay = policy_backoff_ms(&o->cfg->policy, q->failures, &o->seed);
        log_error("dead_letter_failed", "stream=%s shard=%s output=%s count=%zu destination=%s retry_in_ms=%lld "
                  "error=%s action=\"no checkpoint past these inputs\"", o->stream, o->shard, q->dest->name,
                  q->sending, r->destination, (long long)delay, log_quote(r->message, qw, sizeof qw));
        output_wait(q, delay);
    } else {
        char why[1200];
        snprintf(why, sizeof why, "dead-lettering the records of output %s failed: %s", q->dest->name,
                 r->message ? r->message : "failed");
        output_set_error(q, why);
        log_error("output_failed", "stream=%s shard=%s output=%s count=%zu error=%s action=\"halt: no checkpoint "
                  "past these inputs\"", o->stream, o->shard, q->dest->name, q->sending,
                  log_quote(why, qw, sizeof qw));
        q->state = OUTQ_FAILED;
        if (!o->failed) o->failed = q;
    }
    o->progress(o->ud);
}

static void output_dead_letter(output_queue_t *q)
{
    outputs_t *o = q->o;
    size_t n = q->sending, bytes = 0;
    for (size_t i = 0; i < n; i++) bytes += output_record_bytes(q->ents[q->head + i].chunk, q->ents[q->head + i].idx);
    batch_t *b = batch_new(n, bytes + n * 64); /* owned by the queue until the answer */
    int64_t now = clock_wall_ms();
    for (size_t i = 0; i < n; i++) {
        const output_entry_t *en = &q->ents[q->head + i];
        const emitbuf_t *e = &en->chunk->e;
        const char *from = en->chunk->from;
        batch_add(&b, emitbuf_data(e, en->idx), e->recs[en->idx].data_len, emitbuf_pkey(e, en->idx),
                  e->recs[en->idx].pkey_len, from, strlen(from), 0, now);
    }
    q->dl_batch = b;
    q->state = OUTQ_DEAD_LETTERING;
    deadletter_info_t info = {o->stream, o->shard, o->worker, q->error ? q->error : "output failed", "",
                              q->failures};
    deadletter_send(o->dead_letters, &o->cfg->policy, &info, b, output_dead_letter_done, q);
}

/* ---- the owner's calls ------------------------------------------------------------- */

void outputs_poke(outputs_t *o)
{
    for (size_t i = 0; i < o->nq; i++) {
        output_queue_t *q = &o->q[i];
        if (q->state != OUTQ_IDLE || !q->len || q->discard) continue;
        if (q->dead_letter_next) output_dead_letter(q);
        else output_put(q);
    }
}

const char *outputs_failed(const outputs_t *o, uint64_t *first)
{
    const output_queue_t *q = o->failed;
    if (!q) return NULL;
    if (first) *first = q->len ? q->ents[q->head].seq : o->next_seq;
    return q->error ? q->error : "output failed";
}

/* Forgets q's records not in flight; a put or send in flight is answered
 * later and its records then released. */
static void output_forget(output_queue_t *q)
{
    sched_timer_stop(q->o->sched, &q->timer);
    int in_flight = q->state == OUTQ_PUTTING || q->state == OUTQ_DEAD_LETTERING;
    size_t keep = in_flight ? q->sending : 0;
    for (size_t i = keep; i < q->len; i++) output_release(q->o, &q->ents[q->head + i]);
    q->len = keep;
    if (in_flight) {
        q->discard = 1; /* the answer releases the rest */
    } else {
        q->head = 0;
        q->sending = 0;
        q->state = OUTQ_IDLE;
    }
    q->retry_only = 0;
    q->dead_letter_next = 0;
    q->failures = q->refusals = 0;
}

void outputs_abandon(outputs_t *o)
{
    if (!o->failed) return;
    output_forget(o->failed);
    o->failed = NULL;
}

void outputs_drop(outputs_t *o)
{
    for (size_t i = 0; i < o->nq; i++) output_forget(&o->q[i]);
    o->failed = NULL;
}

void outputs_clear(outputs_t *o)
{
    for (size_t i = 0; i < o->nq; i++) {
        output_queue_t *q = &o->q[i];
        sched_timer_stop(o->sched, &q->timer);
        output_release_front(q, q->len);
        free(q->ents);
        free(q->put);
        batch_free(q->dl_batch);
        free(q->error);
    }
    free(o->q);
    o->q = NULL;
    o->nq = 0;
}
