#include "ticker.h"

static void ticker_on_timer(sched_timer_t *st)
{
    ticker_t *t = st->data;
    t->due = 1;
    sched_timer_start(t->sched, &t->timer, t->interval_ms);
    t->tick(t->ud);
}

void ticker_init(ticker_t *t, sched_t *sched, int64_t interval_ms, void (*tick)(void *ud), void *ud)
{
    t->sched = sched;
    t->interval_ms = 0;
    t->due = 0;
    t->tick = tick;
    t->ud = ud;
    sched_timer_init(&t->timer, ticker_on_timer, t);
    ticker_set_interval(t, interval_ms);
}

void ticker_set_interval(ticker_t *t, int64_t interval_ms)
{
    if (interval_ms == t->interval_ms) return;
    t->interval_ms = interval_ms;
    sched_timer_stop(t->sched, &t->timer);
    if (interval_ms > 0) sched_timer_start(t->sched, &t->timer, interval_ms);
    else t->due = 0;
}

void ticker_stop(ticker_t *t)
{
    sched_timer_stop(t->sched, &t->timer);
    t->interval_ms = 0;
    t->due = 0;
}
