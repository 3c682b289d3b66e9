#include "simwire.h"

void simwire_send(simwire_t *w, simwire_req_t *r, void *sender, sched_t *world, int64_t delay_ms, sched_cb arrive)
{
    r->sender = sender;
    r->prev = NULL;
    r->next = w->reqs;
    if (w->reqs) w->reqs->prev = r;
    w->reqs = r;
    w->n++;
    sched_timer_init(&r->timer, arrive, r);
    sched_timer_start(world, &r->timer, delay_ms);
}

void simwire_answer(simwire_req_t *r, sched_t *back, int64_t delay_ms, sched_cb deliver)
{
    r->answered = 1;
    sched_timer_init(&r->timer, deliver, r);
    sched_timer_start(back, &r->timer, delay_ms);
}

void simwire_unlink(simwire_t *w, simwire_req_t *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        w->reqs = r->next;
    if (r->next) r->next->prev = r->prev;
    w->n--;
}

void simwire_forget(simwire_t *w, const void *sender, sched_t *back)
{
    for (simwire_req_t *r = w->reqs, *next; r; r = next) {
        next = r->next;
        if (r->sender != sender) continue;
        if (!r->answered) {
            r->sender = NULL;
            continue;
        }
        sched_timer_stop(back, &r->timer);
        simwire_unlink(w, r);
        w->free_req(r);
    }
}

void simwire_free(simwire_t *w)
{
    while (w->reqs) {
        simwire_req_t *r = w->reqs;
        w->reqs = r->next;
        w->free_req(r);
    }
    w->n = 0;
}
