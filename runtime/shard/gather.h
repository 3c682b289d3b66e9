/* gather: the batching window (max_batching_window_ms, min_batch_records).
 *
 * As Lambda's MaximumBatchingWindowInSeconds: a shard may gather the records
 * of several reads into one processRecords call, so a processor that writes
 * downstream writes fewer, larger batches. Records wait until min_batch_records
 * are there or the window, counted from when the oldest of them was read,
 * has passed, whichever is first. Records being retried never wait, and
 * nothing waits at the end of a closed shard. Pure: the shard asks, with its
 * clock; the answer is how long to wait. */
#ifndef SHARDRUN_GATHER_H
#define SHARDRUN_GATHER_H

#include <stddef.h>
#include <stdint.h>

typedef struct gather_view {
    int64_t window_ms;        /* 0: no gathering */
    size_t min_records;
    size_t records;           /* fresh records waiting at the head, in order */
    int64_t oldest_ms;        /* when the first of them was read (monotonic) */
    int retrying;             /* the head is a retry of records that failed */
    int ended;                /* the shard is read to its end: nothing more will come */
    int64_t now_ms;
} gather_view_t;

/* 0: process what is there now; > 0: wait that long (ms) unless more
 * records come first. */
int64_t gather_wait_ms(const gather_view_t *v);

#endif
