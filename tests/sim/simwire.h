/* simwire: the requests on their way between the workers' handles and one
 * simulated service (the lease store, the stream), either direction.
 *
 * A request goes out on a world timer, the service answers it there, and
 * the answer comes back on a timer of the sender's worker. A handle that is
 * destroyed meanwhile (a worker stopped or crashed) leaves its requests on
 * the wire: those still on their way out reach the service with no sender
 * (simwire_req_t.sender NULL: each service says what it does with them),
 * the answers already on their way back are dropped.
 *
 * A service's request type embeds a simwire_req_t as its first member, so
 * the wire can free what it drops (simwire_t.free_req). */
#ifndef SHARDRUN_SIMWIRE_H
#define SHARDRUN_SIMWIRE_H

#include <stddef.h>
#include <stdint.h>

#include "base/sched.h"

typedef struct simwire_req {
    sched_timer_t timer; /* out to the service, then back to the sender */
    void *sender;        /* the handle that sent it; NULL once that is gone */
    int answered;        /* the answer is on its way back */
    struct simwire_req *prev, *next;
} simwire_req_t;

typedef struct simwire {
    simwire_req_t *reqs; /* every request not answered yet, of every handle */
    size_t n;
    void (*free_req)(simwire_req_t *r); /* frees the whole request (the service's type) */
} simwire_t;

/* Puts r (the service's fields set) on the wire from sender: arrive(t) runs
 * with t->data == r after delay_ms on the world's scheduler. */
void simwire_send(simwire_t *w, simwire_req_t *r, void *sender, sched_t *world, int64_t delay_ms, sched_cb arrive);
/* The service answered r: deliver(t) runs with t->data == r after delay_ms
 * on the sender's scheduler (back). */
void simwire_answer(simwire_req_t *r, sched_t *back, int64_t delay_ms, sched_cb deliver);
/* Takes r off the wire (delivered, or dropped); the caller frees it. */
void simwire_unlink(simwire_t *w, simwire_req_t *r);
/* sender is destroyed: its answers on their way back (on back, its
 * scheduler) are dropped and freed; its requests on their way out go on
 * without a sender. */
void simwire_forget(simwire_t *w, const void *sender, sched_t *back);
/* The run is over: frees every request left (the schedulers are dropped
 * with the run, their timers are not stopped). */
void simwire_free(simwire_t *w);

#endif
