#include "tpool.h"

#include <ev.h>
#include <pthread.h>
#include <stdlib.h>

#include "log.h"
#include "xalloc.h"

struct tpool {
    struct ev_loop *loop;
    pthread_t *threads;
    int nthreads;
    pthread_mutex_t mu;          /* guards both queues and stop */
    pthread_cond_t cond;
    tpool_job_t *head, *tail;    /* submitted, not yet started */
    tpool_job_t *done_head, *done_tail;
    int stop;
    size_t busy;                 /* loop thread only */
    ev_async async;
};

static void tpool_push(tpool_job_t **head, tpool_job_t **tail, tpool_job_t *job)
{
    job->next = NULL;
    if (*tail) (*tail)->next = job;
    else *head = job;
    *tail = job;
}

static void *tpool_thread(void *arg)
{
    tpool_t *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->head && !p->stop) pthread_cond_wait(&p->cond, &p->mu);
        if (!p->head) break;
        tpool_job_t *job = p->head;
        p->head = job->next;
        if (!p->head) p->tail = NULL;
        pthread_mutex_unlock(&p->mu);
        job->run(job);
        pthread_mutex_lock(&p->mu);
        tpool_push(&p->done_head, &p->done_tail, job);
        ev_async_send(p->loop, &p->async);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void tpool_on_async(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)loop;
    (void)revents;
    tpool_t *p = w->data;
    pthread_mutex_lock(&p->mu);
    tpool_job_t *job = p->done_head;
    p->done_head = p->done_tail = NULL;
    pthread_mutex_unlock(&p->mu);
    while (job) {
        tpool_job_t *next = job->next; /* done may resubmit or free the job */
        job->next = NULL;
        p->busy--;
        job->done(job);
        job = next;
    }
}

tpool_t *tpool_new(struct ev_loop *loop, int nthreads, const char *name)
{
    tpool_t *p = xcalloc(1, sizeof *p); /* owned by the caller: tpool_free */
    p->loop = loop;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cond, NULL);
    ev_async_init(&p->async, tpool_on_async);
    p->async.data = p;
    ev_async_start(loop, &p->async);
    ev_unref(loop); /* a pool alone must not keep the loop running */
    p->threads = xcalloc((size_t)(nthreads > 0 ? nthreads : 1), sizeof *p->threads);
    for (int i = 0; i < nthreads; i++) {
        if (pthread_create(&p->threads[i], NULL, tpool_thread, p) != 0) {
            log_error("thread_create_failed", "pool=%s thread=%d", name, i);
            break;
        }
        p->nthreads++;
    }
    if (!p->nthreads) {
        tpool_free(p);
        return NULL;
    }
    return p;
}

void tpool_free(tpool_t *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nthreads; i++) pthread_join(p->threads[i], NULL);
    ev_ref(p->loop);
    ev_async_stop(p->loop, &p->async);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cond);
    free(p->threads);
    free(p);
}

void tpool_submit(tpool_t *p, tpool_job_t *job)
{
    p->busy++;
    pthread_mutex_lock(&p->mu);
    tpool_push(&p->head, &p->tail, job);
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->mu);
}

size_t tpool_busy(const tpool_t *p)
{
    return p->busy;
}
