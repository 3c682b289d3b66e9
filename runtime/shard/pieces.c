#include "pieces.h"

#include <stdlib.h>

#include "base/xalloc.h"

void pieces_init(pieces_t *q, fetch_budget_t *budget)
{
    q->budget = budget;
    q->head = q->tail = NULL;
    q->count = 0;
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
}

void pieces_push_front(pieces_t *q, piece_t *p)
{
    p->next = q->head;
    q->head = p;
    if (!q->tail) q->tail = p;
    q->count++;
}

piece_t *pieces_pop(pieces_t *q)
{
    piece_t *p = q->head;
    if (!p) return NULL;
    q->head = p->next;
    if (!q->head) q->tail = NULL;
    q->count--;
    p->next = NULL;
    return p;
}

void pieces_drop_all(pieces_t *q)
{
    piece_t *p;
    while ((p = pieces_pop(q))) pieces_free(q, p);
}
