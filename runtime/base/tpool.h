/* tpool: threads that run blocking work for the loop thread, and hand each
 * job back on the loop through one queue + ev_async (the libev way to wake a
 * loop from another thread).
 *
 * A job is embedded in its owner's struct: `run` happens on a pool thread,
 * `done` on the loop thread afterwards. The pool never frees a job. Jobs run
 * in submission order when the pool has one thread. */
#ifndef SHARDRUN_TPOOL_H
#define SHARDRUN_TPOOL_H

#include <stddef.h>

struct ev_loop;

typedef struct tpool_job {
    void (*run)(struct tpool_job *job);    /* pool thread */
    void (*done)(struct tpool_job *job);   /* loop thread, after run */
    struct tpool_job *next;                /* the pool's */
} tpool_job_t;

typedef struct tpool tpool_t;

/* Starts nthreads threads (at least one must start, else NULL). `name`
 * tells the log which pool. Caller owns the pool: tpool_free(). The pool's
 * watcher does not keep the loop running by itself. */
tpool_t *tpool_new(struct ev_loop *loop, int nthreads, const char *name);

/* Lets the threads finish the queued jobs, joins them and frees the pool.
 * `done` is not called for jobs finished after the loop last ran. */
void tpool_free(tpool_t *p);

void tpool_submit(tpool_t *p, tpool_job_t *job);   /* loop thread */
size_t tpool_busy(const tpool_t *p);               /* submitted, not yet handed back */

#endif
