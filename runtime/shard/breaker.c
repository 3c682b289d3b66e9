#include "breaker.h"

#include <stdlib.h>
#include <string.h>

#include "base/xalloc.h"

void breaker_init(breaker_t *b, size_t window, double threshold)
{
    memset(b, 0, sizeof *b);
    b->window = window;
    b->threshold = threshold;
    if (window) b->ring = xcalloc(window, 1); /* owned by b: breaker_clear */
}

void breaker_clear(breaker_t *b)
{
    free(b->ring);
    memset(b, 0, sizeof *b);
}

void breaker_reset(breaker_t *b)
{
    if (b->ring) memset(b->ring, 0, b->window);
    b->pos = b->filled = b->failing = 0;
}

static void breaker_push(breaker_t *b, uint8_t failed)
{
    if (b->filled == b->window) b->failing -= b->ring[b->pos];
    else b->filled++;
    b->ring[b->pos] = failed;
    b->failing += failed;
    b->pos = (b->pos + 1) % b->window;
}

void breaker_processed(breaker_t *b, size_t n)
{
    if (!b->window) return;
    if (n > b->window) n = b->window; /* older ones fall out anyway */
    for (size_t i = 0; i < n; i++) breaker_push(b, 0);
}

int breaker_give_up(breaker_t *b, size_t n)
{
    if (!b->window) return 0;
    /* the window as it would be with these n records failed */
    size_t take = n < b->window ? n : b->window, keep = b->window - take;
    size_t kept = b->filled < keep ? b->filled : keep, kept_failing = 0;
    for (size_t i = 1; i <= kept; i++) kept_failing += b->ring[(b->pos + b->window - i) % b->window];
    size_t filled = kept + take, failing = kept_failing + take;
    if (filled >= b->window && (double)failing > b->threshold * (double)filled) {
        b->trips++;
        return 1;
    }
    for (size_t i = 0; i < take; i++) breaker_push(b, 1);
    return 0;
}

double breaker_share(const breaker_t *b)
{
    return b->filled ? (double)b->failing / (double)b->filled : 0.0;
}
