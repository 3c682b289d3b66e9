/* defer: run a function on a later turn of the loop.
 *
 * The asynchronous interfaces (source, lease store) promise that a callback
 * never runs inside the call that started the request; the local backends
 * finish their work at once and use defer to deliver the result. Deferred
 * calls run in the order they were queued. */
#ifndef SHARDRUN_DEFER_H
#define SHARDRUN_DEFER_H

struct ev_loop;

typedef void (*defer_fn)(void *arg);
typedef struct defer_queue defer_queue_t;

/* Caller owns the queue; free with defer_queue_free (pending calls are dropped
 * after `drop` is called for each arg, if non-NULL). */
defer_queue_t *defer_queue_new(struct ev_loop *loop);
void defer_queue_free(defer_queue_t *q, defer_fn drop);
void defer_call(defer_queue_t *q, defer_fn fn, void *arg);

#endif
