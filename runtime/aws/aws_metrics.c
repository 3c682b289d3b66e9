#include "aws_metrics.h"

#include <string.h>

#include "base/xalloc.h"

static const char *const api_class[] = {"api", "code_class", NULL};
static const char *const api_only[] = {"api", NULL};
/* An AWS call answers in milliseconds; a slow one in seconds. */
static const double aws_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};

/* The series of one API, made at its first attempt. */
typedef struct aws_api {
    char *name;
    metric_t *by_class[5]; /* 2xx, 3xx, 4xx, 5xx, error */
    metric_t *seconds, *throttled;
} aws_api_t;

struct aws_metrics {
    metric_family_t *requests, *seconds, *throttled;
    aws_api_t *apis;
    size_t napis;
};

static const char *const class_names[5] = {"2xx", "3xx", "4xx", "5xx", "error"};

static metric_family_t *aws_metrics_requests(metrics_t *registry)
{
    return metrics_family(registry, METRIC_COUNTER, "shardrun_aws_requests_total",
                          "AWS HTTP attempts (retries included) by API and status class (error: no status: connect, "
                          "timeout, TLS).",
                          api_class, NULL, 0);
}

static metric_family_t *aws_metrics_seconds(metrics_t *registry)
{
    return metrics_family(registry, METRIC_HISTOGRAM, "shardrun_aws_request_duration_seconds",
                          "AWS HTTP attempts, request to answer, by API.", api_only, aws_bounds,
                          sizeof aws_bounds / sizeof *aws_bounds);
}

static metric_family_t *aws_metrics_throttled(metrics_t *registry)
{
    return metrics_family(registry, METRIC_COUNTER, "shardrun_aws_throttled_total",
                          "AWS HTTP attempts answered with a throttling error (HTTP 429, "
                          "ProvisionedThroughputExceededException, ...), by API.",
                          api_only, NULL, 0);
}

void aws_metrics_declare(metrics_t *registry)
{
    aws_metrics_requests(registry);
    aws_metrics_seconds(registry);
    aws_metrics_throttled(registry);
}

aws_metrics_t *aws_metrics_new(metrics_t *registry)
{
    if (!registry) return NULL;
    aws_metrics_t *am = xcalloc(1, sizeof *am); /* owned by the caller: aws_metrics_free */
    am->requests = aws_metrics_requests(registry);
    am->seconds = aws_metrics_seconds(registry);
    am->throttled = aws_metrics_throttled(registry);
    return am;
}

void aws_metrics_free(aws_metrics_t *am)
{
    if (!am) return;
    for (size_t i = 0; i < am->napis; i++) {
        for (int k = 0; k < 5; k++)
            metric_put(am->apis[i].by_class[k]);
        metric_put(am->apis[i].seconds);
        metric_put(am->apis[i].throttled);
        free(am->apis[i].name);
    }
    free(am->apis);
    free(am);
}

static aws_api_t *aws_metrics_api(aws_metrics_t *am, const char *name)
{
    for (size_t i = 0; i < am->napis; i++)
        if (!strcmp(am->apis[i].name, name)) return &am->apis[i];
    am->apis = xrealloc(am->apis, (am->napis + 1) * sizeof *am->apis); /* owned by am */
    aws_api_t *a = &am->apis[am->napis++];
    a->name = xstrdup(name);
    for (int k = 0; k < 5; k++)
        a->by_class[k] = metrics_series(am->requests, name, class_names[k], NULL);
    a->seconds = metrics_series(am->seconds, name, NULL, NULL);
    a->throttled = metrics_series(am->throttled, name, NULL, NULL);
    return a;
}

void aws_metrics_observe(void *ud, const aws_http_attempt_t *at)
{
    aws_metrics_t *am = ud;
    aws_api_t *a = aws_metrics_api(am, at->label ? at->label : "other");
    int k = at->status >= 200 && at->status < 600 ? (int)(at->status / 100) - 2 : 4;
    metric_add(a->by_class[k], 1);
    metric_observe(a->seconds, at->seconds);
    if (at->throttled) metric_add(a->throttled, 1);
}
