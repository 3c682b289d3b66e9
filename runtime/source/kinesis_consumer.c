#include "kinesis_consumer.h"

#include <cjson/cJSON.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "aws/awsjson.h"
#include "base/backoff.h"
#include "base/errbuf.h"
#include "base/log.h"
#include "base/xalloc.h"
#include "source_kinesis.h"

typedef enum {
    KC_IDLE,      /* nothing known, nothing under way */
    KC_BUSY,      /* a call in flight, or the timer before the next one */
    KC_ACTIVE,    /* arn is usable */
    KC_FAILED,    /* for good, until ensure() */
} kc_state_t;

/* The call that comes next (or is in flight). */
typedef enum { KC_DESCRIBE_STREAM, KC_DESCRIBE, KC_REGISTER } kc_step_t;

struct kinesis_consumer {
    struct ev_loop *loop;
    aws_client_t *aws;            /* shared, not owned */
    const aws_endpoint_t *ep;     /* the source's */
    char *stream, *name;
    char *stream_arn, *arn;
    kc_state_t state;
    kc_step_t step;
    aws_client_req_t *req;
    ev_timer timer;               /* the next call (poll, retry), or reporting on a loop turn */
    int failures;                 /* transient failures in a row */
    unsigned seed;
    source_err_t error;
    errbuf_t err;
    int report;                   /* the timer reports the state to the owner */
    kinesis_consumer_cb cb;
    void *ud;
};

static void kc_next(kinesis_consumer_t *c);

static void kc_on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    kinesis_consumer_t *c = t->data;
    if (c->report) {
        c->report = 0;
        c->cb(c->ud, c);
        return;
    }
    kc_next(c);
}

static void kc_later(kinesis_consumer_t *c, int64_t ms)
{
    ev_timer_stop(c->loop, &c->timer);
    ev_timer_set(&c->timer, (double)ms / 1000.0, 0.);
    ev_timer_start(c->loop, &c->timer);
}

static void kc_ready(kinesis_consumer_t *c, const char *arn)
{
    xstrset(&c->arn, arn);
    c->state = KC_ACTIVE;
    c->failures = 0;
    log_info("consumer_ready", "stream=%s consumer=%s arn=%s", c->stream, c->name, arn);
    c->cb(c->ud, c);
}

static void kc_fail(kinesis_consumer_t *c, source_err_t e)
{
    char q[1024];
    c->state = KC_FAILED;
    c->error = e;
    log_error("consumer_failed", "stream=%s consumer=%s error=%s", c->stream, c->name,
              log_quote(c->err.msg, q, sizeof q));
    c->cb(c->ud, c);
}

static const char *const kc_ops[] = {"DescribeStreamSummary", "DescribeStreamConsumer", "RegisterStreamConsumer"};

/* A failed call: retried with backoff when transient, else the end. */
static void kc_failed_call(kinesis_consumer_t *c, const aws_http_response_t *resp)
{
    char what[768], q[1024];
    aws_client_describe(resp, what, sizeof what);
    errbuf_set(&c->err, "stream %s consumer %s: %s: %s", c->stream, c->name, kc_ops[c->step], what);
    if (!aws_client_transient(resp)) {
        int missing = resp->error == AWS_HTTP_EHTTP && aws_client_is(resp, "ResourceNotFoundException");
        kc_fail(c, missing ? SOURCE_ENOTFOUND : SOURCE_EFATAL);
        return;
    }
    int64_t delay = backoff_ms(KINESIS_CONSUMER_RETRY_BASE_MS, KINESIS_CONSUMER_RETRY_MAX_MS, ++c->failures,
                               &c->seed);
    log_warn("consumer_retry", "stream=%s consumer=%s retry_in_ms=%lld error=%s", c->stream, c->name,
             (long long)delay, log_quote(c->err.msg, q, sizeof q));
    kc_later(c, delay);
}

/* Reads "ConsumerARN" and "ConsumerStatus" of the object `key` of a response. */
static int kc_consumer(const cJSON *j, const char *key, const char **arn, const char **status)
{
    int bad = 0;
    const cJSON *o = awsjson_object(j, key, &bad);
    *arn = awsjson_str(o, "ConsumerARN", &bad);
    *status = awsjson_str(o, "ConsumerStatus", &bad);
    return bad || !*arn || !*status ? -1 : 0;
}

static void kc_done(void *ud, const aws_http_response_t *resp)
{
    kinesis_consumer_t *c = ud;
    c->req = NULL;
    if (resp->error != AWS_HTTP_OK) {
        int missing = resp->error == AWS_HTTP_EHTTP && aws_client_is(resp, "ResourceNotFoundException");
        int in_use = resp->error == AWS_HTTP_EHTTP && aws_client_is(resp, "ResourceInUseException");
        if (c->step == KC_DESCRIBE && missing) {
            c->step = KC_REGISTER; /* no consumer of that name yet */
            kc_next(c);
        } else if (c->step == KC_REGISTER && in_use) {
            /* another worker registered it at the same moment (or it is being deleted) */
            log_info("consumer_registered_elsewhere", "stream=%s consumer=%s", c->stream, c->name);
            c->step = KC_DESCRIBE;
            kc_later(c, KINESIS_CONSUMER_POLL_MS);
        } else {
            kc_failed_call(c, resp);
        }
        return;
    }
    cJSON *j = cJSON_ParseWithLength(resp->body, resp->body_len);
    const char *arn = NULL, *status = NULL;
    int bad = 0;
    c->failures = 0;
    switch (c->step) {
    case KC_DESCRIBE_STREAM: {
        const cJSON *sum = awsjson_object(j, "StreamDescriptionSummary", &bad);
        const char *sarn = awsjson_str(sum, "StreamARN", &bad);
        if (bad || !sarn) break;
        xstrset(&c->stream_arn, sarn);
        c->step = KC_DESCRIBE;
        cJSON_Delete(j);
        kc_next(c);
        return;
    }
    case KC_DESCRIBE:
    case KC_REGISTER:
        if (kc_consumer(j, c->step == KC_DESCRIBE ? "ConsumerDescription" : "Consumer", &arn, &status)) break;
        if (c->step == KC_REGISTER)
            log_info("consumer_registered", "stream=%s consumer=%s arn=%s", c->stream, c->name, arn);
        if (!strcmp(status, "ACTIVE")) {
            kc_ready(c, arn);
        } else {
            /* CREATING: not yet usable; DELETING: wait until it is gone, then register */
            c->step = KC_DESCRIBE;
            kc_later(c, KINESIS_CONSUMER_POLL_MS);
        }
        cJSON_Delete(j);
        return;
    }
    cJSON_Delete(j);
    errbuf_set(&c->err, "stream %s consumer %s: %s response: %s", c->stream, c->name, kc_ops[c->step],
               c->step == KC_DESCRIBE_STREAM ? "no StreamDescriptionSummary.StreamARN string"
                                             : "no ConsumerARN and ConsumerStatus strings");
    kc_fail(c, SOURCE_EFATAL);
}

/* Sends the call of the current step. */
static void kc_next(kinesis_consumer_t *c)
{
    char target[64];
    cJSON *q = cJSON_CreateObject();
    if (!q) xalloc_oom(0);
    if (c->step == KC_DESCRIBE_STREAM) {
        cJSON_AddStringToObject(q, "StreamName", c->stream);
    } else {
        cJSON_AddStringToObject(q, "StreamARN", c->stream_arn);
        cJSON_AddStringToObject(q, "ConsumerName", c->name);
    }
    char *body = cJSON_PrintUnformatted(q);
    cJSON_Delete(q);
    if (!body) xalloc_oom(0);
    snprintf(target, sizeof target, "Kinesis_20131202.%s", kc_ops[c->step]);
    c->state = KC_BUSY;
    c->req = aws_client_call(c->aws, c->ep, target, "1.1", body, SOURCE_KINESIS_CALL_TIMEOUT_MS, kc_done, c);
    free(body);
    if (!c->req) {
        errbuf_set(&c->err, "stream %s consumer %s: %s: invalid request (endpoint %s)", c->stream, c->name,
                   kc_ops[c->step], c->ep->url);
        c->state = KC_FAILED;
        c->error = SOURCE_EFATAL;
        c->report = 1; /* never inside ensure(): on a loop turn */
        kc_later(c, 0);
    }
}

kinesis_consumer_t *kinesis_consumer_new(struct ev_loop *loop, aws_client_t *aws, const aws_endpoint_t *ep,
                                         const char *stream, const char *name, kinesis_consumer_cb cb, void *ud)
{
    kinesis_consumer_t *c = xcalloc(1, sizeof *c); /* the caller's: kinesis_consumer_free */
    c->loop = loop;
    c->aws = aws;
    c->ep = ep;
    c->stream = xstrdup(stream);
    c->name = xstrdup(name);
    c->cb = cb;
    c->ud = ud;
    c->seed = (unsigned)time(NULL) ^ (unsigned)getpid() ^ (unsigned)(uintptr_t)c;
    ev_init(&c->timer, kc_on_timer);
    c->timer.data = c;
    return c;
}

void kinesis_consumer_free(kinesis_consumer_t *c)
{
    if (!c) return;
    ev_timer_stop(c->loop, &c->timer);
    if (c->req) aws_client_cancel(c->aws, c->req);
    free(c->stream);
    free(c->name);
    free(c->stream_arn);
    free(c->arn);
    free(c);
}

void kinesis_consumer_ensure(kinesis_consumer_t *c)
{
    if (c->state == KC_ACTIVE || c->state == KC_BUSY) return;
    c->error = SOURCE_OK;
    c->failures = 0;
    c->step = c->stream_arn ? KC_DESCRIBE : KC_DESCRIBE_STREAM;
    kc_next(c);
}

void kinesis_consumer_invalidate(kinesis_consumer_t *c)
{
    if (c->state != KC_ACTIVE) return;
    log_warn("consumer_lost", "stream=%s consumer=%s arn=%s action=\"find or register it again\"", c->stream,
             c->name, c->arn);
    xstrset(&c->arn, NULL);
    xstrset(&c->stream_arn, NULL); /* the stream may have been created again too */
    c->state = KC_IDLE;
}

const char *kinesis_consumer_arn(const kinesis_consumer_t *c)
{
    return c->state == KC_ACTIVE ? c->arn : NULL;
}

source_err_t kinesis_consumer_error(const kinesis_consumer_t *c, const char **msg)
{
    *msg = c->state == KC_FAILED ? c->err.msg : NULL;
    return c->state == KC_FAILED ? c->error : SOURCE_OK;
}
