/* lease_metrics: what the lease coordinator counts, as Prometheus series
 * (base/metrics.h): leases owned, taken, stolen, handed off and lost, and
 * the lease store's answers by operation (renew, checkpoint, release,
 * handoff, take, scan): their latency and errors. The operation is a label
 * with values fixed here; no lease key is a label (the shard's own series
 * carry the shard). Loop thread only; nothing when the registry is NULL. */
#ifndef SHARDRUN_LEASE_METRICS_H
#define SHARDRUN_LEASE_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "base/metrics.h"
#include "lease.h"

#define LEASE_METRICS_OPS 6 /* renew, checkpoint, release, handoff, take, scan */

typedef struct lease_metrics {
    metrics_t *registry;
    const size_t *owned; /* the coordinator's count, read at each rendering */
    metric_t *owned_g, *taken, *stolen, *handed_off, *lost;
    metric_t *latency[LEASE_METRICS_OPS], *errors[LEASE_METRICS_OPS];
} lease_metrics_t;

/* owned: the coordinator's count of owned leases; it outlives lm. */
void lease_metrics_init(lease_metrics_t *lm, metrics_t *registry, const size_t *owned);
void lease_metrics_clear(lease_metrics_t *lm);

/* stolen: taken from an owner that is alive (a steal, or a handoff it gave). */
static inline void lease_metrics_taken(lease_metrics_t *lm, int stolen)
{
    metric_add(stolen ? lm->stolen : lm->taken, 1);
}
static inline void lease_metrics_lost(lease_metrics_t *lm)
{
    metric_add(lm->lost, 1);
}
/* A store call `op` (renew, checkpoint, release, handoff, take or scan;
 * others are not counted) answered st after elapsed_ms. LEASE_CONFLICT is
 * an answer (the row moved), not an error. A handoff answered LEASE_OK is a
 * lease handed off. */
void lease_metrics_store(lease_metrics_t *lm, const char *op, int64_t elapsed_ms, lease_status_t st);

#endif
