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

void checkpoint_clear(checkpoint_t *c)
{
    sched_timer_stop(c->sched, &c->timer);
    free(c->written);
    free(c->wanted);
    free(c->sending);
    c->written = c->wanted = c->sending = NULL;
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
    if (c->wanted) {
        if (sub) *sub = c->wanted_sub;
        return c->wanted;
    }
    if (c->sending) {
        if (sub) *sub = c->sending_sub;
        return c->sending;
    }
    return checkpoint_written(c, sub);
}

int checkpoint_idle(const checkpoint_t *c)
{
    return !c->wanted && !c->sending;
}

static void checkpoint_send(checkpoint_t *c)
{
    if (c->sending || !c->wanted || c->refused) return;
    sched_timer_stop(c->sched, &c->timer);
    c->sending = c->wanted;
    c->sending_sub = c->wanted_sub;
    c->wanted = NULL;
    c->write(c->ud, c->sending, c->sending_sub);
}

void checkpoint_request(checkpoint_t *c, const char *seq, int64_t sub)
{
    if (c->refused) return;
    int64_t latest_sub;
    const char *latest = checkpoint_latest(c, &latest_sub);
    if (checkpoint_cmp(seq, sub, latest, latest_sub) <= 0) return; /* never backwards, never twice */
    char *copy = xstrdup(seq); /* owned by c */
    free(c->wanted);
    c->wanted = copy;
    c->wanted_sub = sub;
    if (c->interval_ms <= 0 || !strcmp(seq, SEQNUM_SHARD_END)) {
        checkpoint_send(c);
        return;
    }
    if (!sched_timer_active(&c->timer)) sched_timer_start(c->sched, &c->timer, c->interval_ms);
}

static void checkpoint_on_timer(sched_timer_t *t)
{
    checkpoint_send(t->data);
}

void checkpoint_flush(checkpoint_t *c)
{
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
    if (c->wanted && (c->interval_ms <= 0 || !sched_timer_active(&c->timer))) checkpoint_send(c);
}

void checkpoint_drop(checkpoint_t *c)
{
    sched_timer_stop(c->sched, &c->timer);
    free(c->wanted);
    c->wanted = NULL;
}

void checkpoint_set_interval(checkpoint_t *c, int64_t interval_ms)
{
    c->interval_ms = interval_ms;
}
