#include "defer.h"

#include <ev.h>
#include <stdlib.h>

#include "xalloc.h"

typedef struct defer_item {
    defer_fn fn;
    void *arg;
    struct defer_item *next;
} defer_item_t;

struct defer_queue {
    struct ev_loop *loop;
    ev_idle idle;    /* active while items wait: keeps the loop from blocking */
    ev_check check;  /* runs the items once per loop iteration */
    defer_item_t *head, *tail;
};

static void defer_run(defer_queue_t *q)
{
    /* Take the whole list: calls queued while running wait for the next turn,
     * so a callback that re-queues itself cannot starve the loop. */
    defer_item_t *it = q->head;
    q->head = q->tail = NULL;
    ev_idle_stop(q->loop, &q->idle);
    while (it) {
        defer_item_t *next = it->next;
        it->fn(it->arg);
        free(it);
        it = next;
    }
}

static void defer_on_check(struct ev_loop *loop, ev_check *w, int revents)
{
    defer_queue_t *q = w->data;
    if (q->head) defer_run(q);
}

static void defer_on_idle(struct ev_loop *loop, ev_idle *w, int revents)
{
    /* nothing: the idle watcher only keeps the loop from blocking in poll */
}

defer_queue_t *defer_queue_new(struct ev_loop *loop)
{
    defer_queue_t *q = xcalloc(1, sizeof *q); /* owned by the caller */
    q->loop = loop;
    ev_idle_init(&q->idle, defer_on_idle);
    ev_check_init(&q->check, defer_on_check);
    q->check.data = q;
    ev_check_start(loop, &q->check);
    ev_unref(loop); /* the check watcher alone must not keep the loop alive */
    return q;
}

void defer_queue_free(defer_queue_t *q, defer_fn drop)
{
    if (!q) return;
    ev_ref(q->loop);
    ev_check_stop(q->loop, &q->check);
    ev_idle_stop(q->loop, &q->idle);
    for (defer_item_t *it = q->head; it;) {
        defer_item_t *next = it->next;
        if (drop) drop(it->arg);
        free(it);
        it = next;
    }
    free(q);
}

void defer_call(defer_queue_t *q, defer_fn fn, void *arg)
{
    defer_item_t *it = xmalloc(sizeof *it); /* freed after it runs */
    it->fn = fn;
    it->arg = arg;
    it->next = NULL;
    if (q->tail) q->tail->next = it;
    else q->head = it;
    q->tail = it;
    ev_idle_start(q->loop, &q->idle);
}
