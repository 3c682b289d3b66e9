#include "checkpoint.h"

#include <stdlib.h>
#include <string.h>

#include "base/xalloc.h"
#include "record/seqnum.h"

static void checkpoint_on_timer(sched_timer_t *t);

void checkpoint_init(checkpoint_t *c, sched_t *sched, int64_t interval_ms, const char *start, int64_t start_sub,
                     checkpoint_write_fn write, void *ud)
{
    memset(c, 0, sizeof *c);
    c->sched = sched;
    c->interval_ms = interval_ms;
    c->write = write;
    c->ud = ud;
    c->written = xstrdup(start ? start : SEQNUM_TRIM_HORIZON); /* owned by c */
    c->written_sub = start_sub;
    sched_timer_init(&c->timer, checkpoint_on_timer, c);
}

static void checkpoint_req_free(checkpoint_req_t *r)
{
    free(r->seq);
    free(r);
}

/* Drops the oldest waiting request. */
static void checkpoint_pop(checkpoint_t *c)
{
    checkpoint_req_t *r = c->head;
    c->head = r->next;
    if (!c->head) c->tail = NULL;
    checkpoint_req_free(r);
}

void checkpoint_clear(checkpoint_t *c)
{
    sched_timer_stop(c->sched, &c->timer);
    while (c->head) checkpoint_pop(c);
    free(c->written);
    free(c->sending);
    c->written = c->sending = NULL;
}

/* A sentinel's place: -1 before every number, +1 after, 0 for a number. */
static int checkpoint_rank(const char *s)
{
    if (!strcmp(s, SEQNUM_SHARD_END)) return 1;
    return seqnum_valid(s) ? 0 : -1;
}

int checkpoint_cmp(const char *a, int64_t asub, const char *b, int64_t bsub)
{
    int ra = checkpoint_rank(a), rb = checkpoint_rank(b);
    if (ra || rb) return (ra > rb) - (ra < rb);
    return seqnum_cmp_sub(a, asub, b, bsub);
}

const char *checkpoint_written(const checkpoint_t *c, int64_t *sub)
{
    if (sub) *sub = c->written_sub;
    return c->written;
}

const char *checkpoint_latest(const checkpoint_t *c, int64_t *sub)
{
    if (c->tail) {
        if (sub) *sub = c->tail->sub;
        return c->tail->seq;
    }
    if (c->sending) {
        if (sub) *sub = c->sending_sub;
        return c->sending;
    }
    return checkpoint_written(c, sub);
}

int checkpoint_idle(const checkpoint_t *c)
{
    return !c->head && !c->sending;
}

int checkpoint_waiting_outputs(const checkpoint_t *c)
{
    return c->head && c->head->needs > c->acked;
}

/* The newest waiting request whose outputs are all acknowledged, or NULL. */
static checkpoint_req_t *checkpoint_ready(const checkpoint_t *c)
{
    checkpoint_req_t *ready = NULL;
    for (checkpoint_req_t *r = c->head; r && r->needs <= c->acked; r = r->next) ready = r;
    return ready;
}

/* Writes the newest request that may be written (the older ones are
 * covered by it), unless a write is in flight. */
static void checkpoint_send(checkpoint_t *c)
{
    checkpoint_req_t *r = checkpoint_ready(c);
    if (c->sending || !r || c->refused) return;
    sched_timer_stop(c->sched, &c->timer);
    c->due = 0;
    while (c->head != r) checkpoint_pop(c);
    c->sending = r->seq; /* the request's string moves to sending */
    c->sending_sub = r->sub;
    r->seq = NULL;
    checkpoint_pop(c);
    c->write(c->ud, c->sending, c->sending_sub);
}

/* Sends now if the interval allows (or has passed), else arms its timer. */
static void checkpoint_maybe_send(checkpoint_t *c)
{
    if (c->interval_ms <= 0 || c->due) {
        checkpoint_send(c);
        return;
    }
    if (c->head && !sched_timer_active(&c->timer)) sched_timer_start(c->sched, &c->timer, c->interval_ms);
}

void checkpoint_request(checkpoint_t *c, const char *seq, int64_t sub)
{
    if (c->refused) return;
    int64_t latest_sub;
    const char *latest = checkpoint_latest(c, &latest_sub);
    if (checkpoint_cmp(seq, sub, latest, latest_sub) <= 0) return; /* never backwards, never twice */
    checkpoint_req_t *r = xcalloc(1, sizeof *r); /* owned by c */
    r->seq = xstrdup(seq);
    r->sub = sub;
    r->needs = c->emitted;
    /* a waiting request that needs the same outputs is covered by this one */
    if (c->tail && c->tail->needs == r->needs) {
        free(c->tail->seq);
        c->tail->seq = r->seq;
        c->tail->sub = r->sub;
        free(r);
    } else {
        if (c->tail) c->tail->next = r;
        else c->head = r;
        c->tail = r;
    }
    if (!strcmp(seq, SEQNUM_SHARD_END)) c->due = 1; /* the end is written at once */
    checkpoint_maybe_send(c);
}

static void checkpoint_on_timer(sched_timer_t *t)
{
    checkpoint_t *c = t->data;
    c->due = 1; /* if it cannot be written now, it is as soon as it can */
    checkpoint_send(c);
}

void checkpoint_flush(checkpoint_t *c)
{
    if (!c->head) return;
    c->due = 1;
    checkpoint_send(c);
}

void checkpoint_answered(checkpoint_t *c, int ok)
{
    char *sent = c->sending;
    c->sending = NULL;
    if (ok) {
        free(c->written);
        c->written = sent;
        c->written_sub = c->sending_sub;
    } else {
        free(sent);
        c->refused = 1;
        checkpoint_drop(c);
        return;
    }
    /* a newer request waited for this answer: send it now, or at its timer */
    if (c->head && (c->interval_ms <= 0 || c->due)) checkpoint_send(c);
}

void checkpoint_drop(checkpoint_t *c)
{
    sched_timer_stop(c->sched, &c->timer);
    c->due = 0;
    while (c->head) checkpoint_pop(c);
}

void checkpoint_set_interval(checkpoint_t *c, int64_t interval_ms)
{
    c->interval_ms = interval_ms;
}

void checkpoint_emitted(checkpoint_t *c, uint64_t n)
{
    if (n > c->emitted) c->emitted = n;
}

void checkpoint_acked(checkpoint_t *c, uint64_t n)
{
    if (n <= c->acked) return;
    c->acked = n;
    if (c->head && c->head->needs <= n) checkpoint_maybe_send(c);
}

void checkpoint_cut(checkpoint_t *c, uint64_t lost)
{
    /* requests are in `needs` order: those after the last one that does
     * not need `lost` all need it */
    checkpoint_req_t *last = NULL;
    for (checkpoint_req_t *r = c->head; r && r->needs <= lost; r = r->next) last = r;
    checkpoint_req_t *r = last ? last->next : c->head;
    while (r) {
        checkpoint_req_t *next = r->next;
        checkpoint_req_free(r);
        r = next;
    }
    if (last) last->next = NULL;
    else c->head = NULL;
    c->tail = last;
    if (!c->head) {
        sched_timer_stop(c->sched, &c->timer);
        c->due = 0;
    }
}
