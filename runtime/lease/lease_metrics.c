#include "lease_metrics.h"

#include <string.h>

static const char *const op_label[] = {"op", NULL};
static const char *const op_names[LEASE_METRICS_OPS] = {"renew", "checkpoint", "release", "handoff", "take", "scan"};
/* A local store answers in microseconds to milliseconds; DynamoDB in ms to seconds. */
static const double store_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

static void lease_metrics_collect(void *ud)
{
    lease_metrics_t *lm = ud;
    metric_set(lm->owned_g, (double)*lm->owned);
}

static metric_t *lease_metrics_counter(metrics_t *m, const char *name, const char *help)
{
    return metrics_series(metrics_family(m, METRIC_COUNTER, name, help, NULL, NULL, 0), NULL, NULL, NULL);
}

void lease_metrics_init(lease_metrics_t *lm, metrics_t *registry, const size_t *owned)
{
    memset(lm, 0, sizeof *lm);
    if (!registry) return;
    lm->registry = registry;
    lm->owned = owned;
    lm->owned_g = metrics_series(
        metrics_family(registry, METRIC_GAUGE, "shardrun_leases_owned", "Leases this worker holds.", NULL, NULL, 0),
        NULL, NULL, NULL);
    lm->taken = lease_metrics_counter(registry, "shardrun_leases_taken_total",
                                      "Leases taken that nobody held (unowned or expired).");
    lm->stolen = lease_metrics_counter(registry, "shardrun_leases_stolen_total",
                                       "Leases taken from a live owner (rebalancing: handed over, or stolen when it "
                                       "did not answer).");
    lm->handed_off = lease_metrics_counter(registry, "shardrun_leases_handed_off_total",
                                           "Leases this worker handed to a worker that asked for them.");
    lm->lost = lease_metrics_counter(registry, "shardrun_leases_lost_total",
                                     "Leases lost: a renewal or checkpoint refused, or not renewed in time.");
    metric_family_t *lat = metrics_family(registry, METRIC_HISTOGRAM, "shardrun_lease_store_duration_seconds",
                                          "Lease store calls, send to answer, by operation.", op_label, store_bounds,
                                          sizeof store_bounds / sizeof *store_bounds);
    metric_family_t *err = metrics_family(registry, METRIC_COUNTER, "shardrun_lease_store_errors_total",
                                          "Lease store calls that failed (not a refused conditional write), by "
                                          "operation.",
                                          op_label, NULL, 0);
    for (int i = 0; i < LEASE_METRICS_OPS; i++) {
        lm->latency[i] = metrics_series(lat, op_names[i], NULL, NULL);
        lm->errors[i] = metrics_series(err, op_names[i], NULL, NULL);
    }
    metrics_on_render(registry, lease_metrics_collect, lm);
}

void lease_metrics_clear(lease_metrics_t *lm)
{
    if (!lm->registry) return;
    metrics_off_render(lm->registry, lease_metrics_collect, lm);
    metric_t *all[] = {lm->owned_g, lm->taken, lm->stolen, lm->handed_off, lm->lost};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        metric_put(all[i]);
    for (int i = 0; i < LEASE_METRICS_OPS; i++) {
        metric_put(lm->latency[i]);
        metric_put(lm->errors[i]);
    }
    memset(lm, 0, sizeof *lm);
}

void lease_metrics_store(lease_metrics_t *lm, const char *op, int64_t elapsed_ms, lease_status_t st)
{
    if (!lm->registry) return;
    for (int i = 0; i < LEASE_METRICS_OPS; i++) {
        if (strcmp(op, op_names[i])) continue;
        metric_observe(lm->latency[i], (double)elapsed_ms / 1000.0);
        if (st != LEASE_OK && st != LEASE_CONFLICT) metric_add(lm->errors[i], 1);
        if (st == LEASE_OK && !strcmp(op, "handoff")) metric_add(lm->handed_off, 1);
        return;
    }
}
