#include "pieces.h"

#include <stdlib.h>

#include "base/xalloc.h"

void pieces_init(pieces_t *q, fetch_budget_t *budget)
{
    q->budget = budget;
    q->head = q->tail = NULL;
    q->count = 0;
    q->records = 0;
}

piece_t *pieces_new(batch_t *b, int64_t failures)
{
    piece_t *p = xcalloc(1, sizeof *p); /* owned by the queue's owner until pieces_free */
    p->batch = b;
    p->failures = failures;
    return p;
}

piece_t *pieces_slice(pieces_t *q, const piece_t *p, size_t from, size_t to, int64_t failures)
{
    batch_t *b = batch_slice(p->batch, from, to);
    fetch_budget_hold(q->budget, b->bytes);
    return pieces_new(b, failures);
}

void pieces_free(pieces_t *q, piece_t *p)
{
    if (!p) return;
    fetch_budget_release(q->budget, p->batch->bytes);
    batch_free(p->batch);
    free(p);
}

void pieces_push_back(pieces_t *q, piece_t *p)
{
    p->next = NULL;
    if (q->tail) q->tail->next = p;
    else q->head = p;
    q->tail = p;
    q->count++;
    q->records += p->batch->count;
}

void pieces_push_front(pieces_t *q, piece_t *p)
{
    p->next = q->head;
    q->head = p;
    if (!q->tail) q->tail = p;
    q->count++;
    q->records += p->batch->count;
}

piece_t *pieces_pop(pieces_t *q)
{
    piece_t *p = q->head;
    if (!p) return NULL;
    q->head = p->next;
    if (!q->head) q->tail = NULL;
    q->count--;
    q->records -= p->batch->count;
    p->next = NULL;
    return p;
}

void pieces_drop_all(pieces_t *q)
{
    piece_t *p;
    while ((p = pieces_pop(q))) pieces_free(q, p);
}

size_t pieces_fresh(const pieces_t *q)
{
    size_t n = 0;
    for (const piece_t *p = q->head; p && p->failures == 0; p = p->next) n += p->batch->count;
    return n;
}

#define PIECES_JOIN_MAX 64

piece_t *pieces_pop_joined(pieces_t *q, size_t want)
{
    piece_t *p = pieces_pop(q);
    if (!p || p->failures > 0) return p;
    piece_t *parts[PIECES_JOIN_MAX] = {p};
    size_t n = 1, count = p->batch->count;
    while (n < PIECES_JOIN_MAX && count < want && q->head && q->head->failures == 0) {
        parts[n] = pieces_pop(q);
        count += parts[n++]->batch->count;
    }
    if (n == 1) return p;
    batch_t *batches[PIECES_JOIN_MAX];
    for (size_t i = 0; i < n; i++) batches[i] = parts[i]->batch;
    batch_t *b = batch_join(batches, n);
    fetch_budget_hold(q->budget, b->bytes);
    piece_t *joined = pieces_new(b, 0);
    joined->fetched_ms = p->fetched_ms;
    for (size_t i = 0; i < n; i++) pieces_free(q, parts[i]);
    return joined;
}
