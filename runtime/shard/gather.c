#include "gather.h"

int64_t gather_wait_ms(const gather_view_t *v)
{
    if (v->window_ms <= 0 || v->retrying || v->ended || v->records >= v->min_records) return 0;
    int64_t left = v->oldest_ms + v->window_ms - v->now_ms;
    return left > 0 ? left : 0;
}
