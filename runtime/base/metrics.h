/* metrics: counters, gauges and histograms, rendered in Prometheus's text
 * exposition format (version 0.0.4).
 *
 * A registry belongs to one thread, the loop: series are created, updated,
 * removed and rendered there, with no lock and no atomics, so an increment
 * costs one add. No other thread ever reads a registry; the HTTP server
 * serves a rendered copy the loop hands over (worker/metrics_server.h).
 *
 * A family (a name, its help, type and label names) is declared with
 * metrics_family; declaring it again returns the same family. A series is
 * one combination of label values of a family, got with metrics_series:
 * created at first use and counted, so each holder lets go with metric_put
 * and the series disappears with its last holder (a shard's series go when
 * the shard is no longer owned). Label values come from the config (stream
 * names), the source (shard ids) or fixed sets in code (kind, api, class):
 * never from records, sequence numbers or error text, so the number of
 * series stays bounded by streams x shards x a constant.
 *
 * Every function accepts a NULL registry, family or series and does
 * nothing: with metrics off, call sites need no test of their own. */
#ifndef SHARDRUN_METRICS_H
#define SHARDRUN_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define METRICS_MAX_LABELS  3
#define METRICS_MAX_BUCKETS 24

typedef enum { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM } metric_type_t;

typedef struct metrics metrics_t;
typedef struct metric_family metric_family_t;

/* One series. Read and written by the registry's thread only. */
typedef struct metric {
    metric_family_t *family;
    char *values[METRICS_MAX_LABELS]; /* owned; NULL past the family's labels */
    int refs;
    double value;      /* counter, gauge */
    uint64_t count;    /* histogram: observations */
    double sum;        /* histogram: their sum */
    uint64_t *buckets; /* histogram: per bucket (not cumulative), the last is +Inf; owned */
} metric_t;

/* Caller owns the registry: metrics_free once every series was put (the
 * registry frees those left). */
metrics_t *metrics_new(void);
void metrics_free(metrics_t *m);

/* Declares a family (or returns the one declared under that name). labels:
 * NULL-ended, at most METRICS_MAX_LABELS names; buckets: the upper bounds of
 * a histogram, increasing, at most METRICS_MAX_BUCKETS (the +Inf bucket is
 * implied). A second declaration with another type or labels is a
 * programming error: it aborts with a sentence. name and help are not
 * copied: string literals. */
metric_family_t *metrics_family(metrics_t *m, metric_type_t type, const char *name, const char *help,
                                const char *const *labels, const double *buckets, size_t nbuckets);

/* The family's series stay after their last holder lets go (a stream's
 * series, whose label values come from the config: bounded). */
void metrics_family_keep(metric_family_t *f);

/* The series of family f with these label values (as many as f has labels;
 * the others NULL), created at 0 if new, with one more holder. */
metric_t *metrics_series(metric_family_t *f, const char *v1, const char *v2, const char *v3);
/* The holder lets go; the series is removed with its last holder. */
void metric_put(metric_t *s);

static inline void metric_add(metric_t *s, double v)
{
    if (s) s->value += v;
}
static inline void metric_set(metric_t *s, double v)
{
    if (s) s->value = v;
}
/* A histogram observation (the bucket found by a scan of at most
 * METRICS_MAX_BUCKETS bounds). */
void metric_observe(metric_t *s, double v);
/* Many observations at once, counted by the caller per bucket (counts has
 * one entry per bound, then the +Inf one), with their sum: for a hot loop
 * that buckets its values itself (integer bounds) and calls no function. */
void metric_observe_counted(metric_t *s, const uint64_t *counts, size_t ncounts, double sum);

/* Called at each render, before the families are written: the owner sets
 * gauges whose value it does not push (bytes held, leases owned). At most
 * 16 per registry; the order is the order of registration. */
typedef void (*metrics_collect_fn)(void *ud);
void metrics_on_render(metrics_t *m, metrics_collect_fn fn, void *ud);
/* Unregisters a collector (before its ud is freed). */
void metrics_off_render(metrics_t *m, metrics_collect_fn fn, void *ud);

/* Appends every family in the text format to out: # HELP, # TYPE, one line
 * per series (histograms as _bucket{le=...}, _sum, _count), families in
 * declaration order, series in creation order. */
void metrics_render(metrics_t *m, buf_t *out);

/* Series currently held, over every family (a histogram counts its buckets
 * + _sum + _count, as Prometheus counts them). */
size_t metrics_series_count(const metrics_t *m);

/* Escapes a label value for the text format (\\, \", \n) onto out. */
void metrics_escape_label(buf_t *out, const char *v);
/* Formats a sample value as the text format wants it (integers without an
 * exponent, +Inf, -Inf, NaN). */
void metrics_format_value(buf_t *out, double v);

#endif
