/* pieces: the records a shard has fetched and not yet finished, in order.
 *
 * A piece is records of one fetched batch (or of a part of one, cut off by
 * a {failed = r} decision or by isolation), with how many calls on exactly
 * these records failed. The queue keeps them in stream order; pieces that
 * come back (a retry, the halves of a failing piece) go back to its front,
 * so order is kept. Every batch a piece holds counts on the worker's fetch
 * budget until the piece is freed. Loop thread only.
 *
 * With a batching window (gather.h) the fresh pieces at the front (read,
 * never tried) are joined into one before they are processed: pieces_fresh
 * counts their records, pieces_pop_joined takes them as one piece. */
#ifndef SHARDRUN_PIECES_H
#define SHARDRUN_PIECES_H

#include <stddef.h>
#include <stdint.h>

#include "fetch.h"
#include "record/batch.h"

typedef struct piece {
    batch_t *batch;
    int64_t failures;            /* failed calls of exactly these records */
    int64_t fetched_ms;          /* monotonic, when it was read (0: a part made later); the batching window counts from it */
    struct piece *next;
} piece_t;

typedef struct pieces {
    fetch_budget_t *budget;      /* the worker's: pieces' bytes are held on it */
    piece_t *head, *tail;
    size_t count;
    size_t records;              /* in all the pieces queued */
} pieces_t;

void pieces_init(pieces_t *q, fetch_budget_t *budget);

/* A piece of a batch already held on the budget (a fetched batch). The
 * queue's owner owns the piece until pieces_free. */
piece_t *pieces_new(batch_t *b, int64_t failures);
/* A piece holding records [from, to) of p's batch, held on the budget. */
piece_t *pieces_slice(pieces_t *q, const piece_t *p, size_t from, size_t to, int64_t failures);
/* Frees p and gives its bytes back to the budget. NULL: nothing. */
void pieces_free(pieces_t *q, piece_t *p);

void pieces_push_back(pieces_t *q, piece_t *p);
void pieces_push_front(pieces_t *q, piece_t *p);   /* back to the front: retries, halves */
piece_t *pieces_pop(pieces_t *q);                  /* the first, or NULL */
void pieces_drop_all(pieces_t *q);                 /* frees every piece queued */
/* Records in the fresh pieces (failures 0) at the front, up to the first
 * piece being retried. */
size_t pieces_fresh(const pieces_t *q);
/* The first piece; when it is fresh, joined with the fresh pieces after it
 * (in order) until it holds `want` records or more, at most 64 pieces. */
piece_t *pieces_pop_joined(pieces_t *q, size_t want);

static inline const char *piece_first(const piece_t *p) { return batch_seq(p->batch, 0); }
static inline const char *piece_last(const piece_t *p) { return batch_seq(p->batch, p->batch->count - 1); }

#endif
