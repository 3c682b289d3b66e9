/* aws_metrics: the AWS HTTP client's attempts as Prometheus series: by API
 * (GetRecords, Scan, ...: the X-Amz-Target operation, a set fixed by the
 * code that calls) and status class (2xx, 3xx, 4xx, 5xx, or "error" when no
 * status came: connect, timeout, TLS), with a latency histogram per API and
 * the throttled attempts. Every attempt counts, retries included. Loop
 * thread only, as the client. */
#ifndef SHARDRUN_AWS_METRICS_H
#define SHARDRUN_AWS_METRICS_H

#include "base/metrics.h"
#include "http.h"

typedef struct aws_metrics aws_metrics_t;

/* Caller owns it (aws_metrics_free); registry outlives it. NULL registry:
 * NULL (metrics off). */
aws_metrics_t *aws_metrics_new(metrics_t *registry);
void aws_metrics_free(aws_metrics_t *am);
/* Declares the families (shown with HELP and TYPE before any AWS call, and
 * in a worker that makes none). */
void aws_metrics_declare(metrics_t *registry);
/* An aws_http observer (aws_http_set_observer), ud = the aws_metrics_t. */
void aws_metrics_observe(void *ud, const aws_http_attempt_t *a);

#endif
