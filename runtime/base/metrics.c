#include "metrics.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "xalloc.h"

#define METRICS_MAX_COLLECTORS 16

struct metric_family {
    metric_type_t type;
    const char *name, *help;
    const char *labels[METRICS_MAX_LABELS];
    size_t nlabels;
    double bounds[METRICS_MAX_BUCKETS];
    char le[METRICS_MAX_BUCKETS + 1][32]; /* the bounds as rendered, then "+Inf" */
    size_t nbounds;
    int keep;          /* series stay after their last holder */
    metric_t **series; /* owned, in creation order */
    size_t nseries, cap;
};

typedef struct metrics_collector {
    metrics_collect_fn fn;
    void *ud;
} metrics_collector_t;

struct metrics {
    metric_family_t **families; /* owned, in declaration order */
    size_t nfamilies, cap;
    metrics_collector_t collectors[METRICS_MAX_COLLECTORS];
    size_t ncollectors;
};

metrics_t *metrics_new(void)
{
    return xcalloc(1, sizeof(metrics_t)); /* owned by the caller: metrics_free */
}

static void metric_free(metric_t *s)
{
    for (size_t i = 0; i < METRICS_MAX_LABELS; i++)
        free(s->values[i]);
    free(s->buckets);
    free(s);
}

void metrics_free(metrics_t *m)
{
    if (!m) return;
    for (size_t i = 0; i < m->nfamilies; i++) {
        metric_family_t *f = m->families[i];
        for (size_t j = 0; j < f->nseries; j++)
            metric_free(f->series[j]);
        free(f->series);
        free(f);
    }
    free(m->families);
    free(m);
}

static void metrics_misuse(const char *name, const char *what)
{
    log_error("internal_error", "what=\"metrics: %s\" metric=%s", what, name);
    abort();
}

metric_family_t *metrics_family(metrics_t *m, metric_type_t type, const char *name, const char *help,
                                const char *const *labels, const double *buckets, size_t nbuckets)
{
    if (!m) return NULL;
    size_t nlabels = 0;
    while (labels && labels[nlabels])
        nlabels++;
    if (nlabels > METRICS_MAX_LABELS) metrics_misuse(name, "too many labels");
    if (nbuckets > METRICS_MAX_BUCKETS) metrics_misuse(name, "too many buckets");
    for (size_t i = 0; i < m->nfamilies; i++) {
        metric_family_t *f = m->families[i];
        if (strcmp(f->name, name)) continue;
        int same = f->type == type && f->nlabels == nlabels;
        for (size_t j = 0; same && j < nlabels; j++)
            same = !strcmp(f->labels[j], labels[j]);
        if (!same) metrics_misuse(name, "declared twice with different types or labels");
        return f;
    }
    metric_family_t *f = xcalloc(1, sizeof *f); /* owned by the registry */
    f->type = type;
    f->name = name;
    f->help = help;
    f->nlabels = nlabels;
    for (size_t j = 0; j < nlabels; j++)
        f->labels[j] = labels[j];
    if (type == METRIC_HISTOGRAM) {
        for (size_t j = 0; j < nbuckets; j++) {
            if (j && buckets[j] <= buckets[j - 1]) metrics_misuse(name, "histogram buckets must increase");
            f->bounds[j] = buckets[j];
            buf_t le = BUF_INIT;
            metrics_format_value(&le, buckets[j]);
            snprintf(f->le[j], sizeof f->le[j], "%s", buf_str(&le));
            buf_free(&le);
        }
        f->nbounds = nbuckets;
        snprintf(f->le[nbuckets], sizeof f->le[nbuckets], "+Inf");
    }
    if (m->nfamilies == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 32;
        m->families = xrealloc(m->families, m->cap * sizeof *m->families);
    }
    m->families[m->nfamilies++] = f;
    return f;
}

static int metric_same(const metric_t *s, const char *const *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s->values[i], v[i] ? v[i] : "")) return 0;
    return 1;
}

metric_t *metrics_series(metric_family_t *f, const char *v1, const char *v2, const char *v3)
{
    if (!f) return NULL;
    const char *v[METRICS_MAX_LABELS] = {v1, v2, v3};
    for (size_t i = 0; i < f->nseries; i++) {
        if (metric_same(f->series[i], v, f->nlabels)) {
            f->series[i]->refs++;
            return f->series[i];
        }
    }
    metric_t *s = xcalloc(1, sizeof *s); /* owned by the family until its last metric_put */
    s->family = f;
    s->refs = 1;
    for (size_t i = 0; i < f->nlabels; i++)
        s->values[i] = xstrdup(v[i] ? v[i] : "");
    if (f->type == METRIC_HISTOGRAM) s->buckets = xcalloc(f->nbounds + 1, sizeof *s->buckets);
    if (f->nseries == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 8;
        f->series = xrealloc(f->series, f->cap * sizeof *f->series);
    }
    f->series[f->nseries++] = s;
    return s;
}

void metrics_family_keep(metric_family_t *f)
{
    if (f) f->keep = 1;
}

void metric_put(metric_t *s)
{
    if (!s || --s->refs > 0) return;
    metric_family_t *f = s->family;
    if (f->keep) {
        s->refs = 0;
        return;
    }
    for (size_t i = 0; i < f->nseries; i++) {
        if (f->series[i] != s) continue;
        memmove(&f->series[i], &f->series[i + 1], (f->nseries - i - 1) * sizeof *f->series);
        f->nseries--;
        break;
    }
    metric_free(s);
}

void metric_observe(metric_t *s, double v)
{
    if (!s || !s->buckets) return;
    const metric_family_t *f = s->family;
    size_t i = 0;
    while (i < f->nbounds && v > f->bounds[i])
        i++;
    s->buckets[i]++;
    s->count++;
    s->sum += v;
}

void metric_observe_counted(metric_t *s, const uint64_t *counts, size_t ncounts, double sum)
{
    if (!s || !s->buckets) return;
    if (ncounts != s->family->nbounds + 1) metrics_misuse(s->family->name, "bucket counts do not match the bounds");
    for (size_t i = 0; i < ncounts; i++) {
        s->buckets[i] += counts[i];
        s->count += counts[i];
    }
    s->sum += sum;
}

void metrics_on_render(metrics_t *m, metrics_collect_fn fn, void *ud)
{
    if (!m) return;
    if (m->ncollectors == METRICS_MAX_COLLECTORS) metrics_misuse("(collector)", "too many collectors");
    m->collectors[m->ncollectors++] = (metrics_collector_t){fn, ud};
}

void metrics_off_render(metrics_t *m, metrics_collect_fn fn, void *ud)
{
    if (!m) return;
    for (size_t i = 0; i < m->ncollectors; i++) {
        if (m->collectors[i].fn != fn || m->collectors[i].ud != ud) continue;
        memmove(&m->collectors[i], &m->collectors[i + 1], (m->ncollectors - i - 1) * sizeof *m->collectors);
        m->ncollectors--;
        return;
    }
}

void metrics_escape_label(buf_t *out, const char *v)
{
    size_t plain = strcspn(v, "\\\"\n");
    if (!v[plain]) {
        buf_append(out, v, plain);
        return;
    }
    for (const char *p = v; *p; p++) {
        if (*p == '\\')
            buf_append(out, "\\\\", 2);
        else if (*p == '"')
            buf_append(out, "\\\"", 2);
        else if (*p == '\n')
            buf_append(out, "\\n", 2);
        else
            buf_append_char(out, *p);
    }
}

/* Integers by hand: a rendering writes tens of thousands of them, and
 * printf's float path is most of its time. */
static void metrics_append_int(buf_t *out, int64_t v)
{
    char tmp[24];
    size_t i = sizeof tmp;
    uint64_t u = v < 0 ? (uint64_t)(-(v + 1)) + 1 : (uint64_t)v;
    do {
        tmp[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) tmp[--i] = '-';
    buf_append(out, tmp + i, sizeof tmp - i);
}

void metrics_format_value(buf_t *out, double v)
{
    if (isnan(v))
        buf_append_str(out, "NaN");
    else if (isinf(v))
        buf_append_str(out, v > 0 ? "+Inf" : "-Inf");
    else if (v == floor(v) && fabs(v) < 1e15)
        metrics_append_int(out, (int64_t)v);
    else {
        /* the shortest of %.15g and %.17g that reads back as v: 0.005, not 0.0050000000000000001 */
        char tmp[40];
        snprintf(tmp, sizeof tmp, "%.15g", v);
        if (strtod(tmp, NULL) != v) snprintf(tmp, sizeof tmp, "%.17g", v);
        buf_append_str(out, tmp);
    }
}

/* name{l1="v1",l2="v2"[,le="x"]} */
static void metrics_series_name(buf_t *out, const metric_family_t *f, const metric_t *s, const char *suffix,
                                const char *le)
{
    buf_append_str(out, f->name);
    if (suffix) buf_append_str(out, suffix);
    if (!f->nlabels && !le) return;
    buf_append_char(out, '{');
    for (size_t i = 0; i < f->nlabels; i++) {
        if (i) buf_append_char(out, ',');
        buf_append_str(out, f->labels[i]);
        buf_append(out, "=\"", 2);
        metrics_escape_label(out, s->values[i]);
        buf_append_char(out, '"');
    }
    if (le) {
        buf_append_str(out, f->nlabels ? ",le=\"" : "le=\"");
        buf_append_str(out, le);
        buf_append_char(out, '"');
    }
    buf_append_char(out, '}');
}

static void metrics_render_histogram(buf_t *out, const metric_family_t *f, const metric_t *s)
{
    uint64_t cumulative = 0;
    for (size_t i = 0; i <= f->nbounds; i++) {
        cumulative += s->buckets[i];
        metrics_series_name(out, f, s, "_bucket", f->le[i]);
        buf_append_char(out, ' ');
        metrics_append_int(out, (int64_t)cumulative);
        buf_append_char(out, '\n');
    }
    metrics_series_name(out, f, s, "_sum", NULL);
    buf_append_char(out, ' ');
    metrics_format_value(out, s->sum);
    buf_append_char(out, '\n');
    metrics_series_name(out, f, s, "_count", NULL);
    buf_append_char(out, ' ');
    metrics_append_int(out, (int64_t)s->count);
    buf_append_char(out, '\n');
}

void metrics_render(metrics_t *m, buf_t *out)
{
    if (!m) return;
    for (size_t i = 0; i < m->ncollectors; i++)
        m->collectors[i].fn(m->collectors[i].ud);
    static const char *const type_names[] = {"counter", "gauge", "histogram"};
    for (size_t i = 0; i < m->nfamilies; i++) {
        const metric_family_t *f = m->families[i];
        /* The help text is ours (literals): no backslash or newline to escape. */
        buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name, type_names[f->type]);
        for (size_t j = 0; j < f->nseries; j++) {
            const metric_t *s = f->series[j];
            if (f->type == METRIC_HISTOGRAM) {
                metrics_render_histogram(out, f, s);
                continue;
            }
            metrics_series_name(out, f, s, NULL, NULL);
            buf_append_char(out, ' ');
            metrics_format_value(out, s->value);
            buf_append_char(out, '\n');
        }
    }
}

size_t metrics_series_count(const metrics_t *m)
{
    if (!m) return 0;
    size_t n = 0;
    for (size_t i = 0; i < m->nfamilies; i++) {
        const metric_family_t *f = m->families[i];
        n += f->nseries * (f->type == METRIC_HISTOGRAM ? f->nbounds + 3 : 1);
    }
    return n;
}
