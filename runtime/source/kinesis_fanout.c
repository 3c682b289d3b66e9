/* kinesis_fanout: enhanced fan-out (see kinesis_fanout.h).
 *
 * One fo_sub_t per shard being read: its position, its SubscribeToShard
 * stream and event-stream decoder, the events received and not yet handed
 * over (a queue), and the read waiting for them. Reads are answered from a
 * timer (fo_on_hand), never inside a call of the interface nor inside the
 * stream's data callback, so a reader that stops the shard from its callback
 * (release) frees nothing under our feet: a sub released while its hand
 * timer runs is only marked dead and freed on the way out.
 *
 * Some 880 lines, past the usual 800: a subscription's life (opening,
 * events, errors, pausing, answers, the closed-shard check) is one state
 * machine over one struct; split, its fields would be shared by two modules. */
#include "kinesis_fanout.h"

#include <cjson/cJSON.h>
#include <ev.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "aws/eventstream.h"
#include "base/backoff.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/xalloc.h"
#include "kinesis_consumer.h"
#include "kinesis_json.h"
#include "record/seqnum.h"

#define FO_TARGET "Kinesis_20131202.SubscribeToShard"
#define FO_AFTER "AFTER_SEQUENCE_NUMBER:"
#define FO_CONFIRM_MS 1000 /* a closed shard's end is asked of GetRecords at most this often */

typedef struct fo_source fo_source_t;
typedef struct fo_sub fo_sub_t;

/* An event received and not yet (wholly) handed over. */
typedef struct fo_event {
    batch_t *batch;          /* what is left of its records */
    char *cont;              /* ContinuationSequenceNumber; NULL: the shard's end */
    char *mark;              /* the last record received up to this event (NULL: none yet) */
    int64_t millis_behind;
    size_t bytes;            /* batch->bytes when queued, counted in sub->held */
    struct fo_event *next;
} fo_event_t;

/* A stream's consumer and what the last ListShards said of its shards. */
typedef struct fo_stream {
    fo_source_t *fo;
    char *name;
    kinesis_consumer_t *consumer;
    char **closed;           /* ids of the shards listed closed */
    size_t nclosed;
    struct fo_stream *next;
} fo_stream_t;

/* A call to the wrapped polling source, until its callback: a ListShards
 * passed through, or a closed shard's end being confirmed. Owned by the
 * source's list (destroy frees what the polling source never answered). */
typedef struct fo_pending {
    fo_source_t *fo;
    struct fo_pending *next, *prev;
    char *stream, *shard;
    fo_sub_t *sub;           /* confirming: the shard asking (NULL once released) */
    unsigned gen;            /* confirming: the sub's position when asked */
    source_shards_cb cb;     /* listing: the caller's */
    void *ud;
} fo_pending_t;

struct fo_sub {
    fo_source_t *fo;
    fo_sub_t *next, *prev;
    fo_stream_t *st;
    char *stream, *shard;
    char *next_it;           /* what the next read presents to go on (NULL: nothing read yet) */
    char *open_at;           /* where a new subscription opens: after the last event received */
    char *last_seq;          /* the last record received: anything at or before it is a repeat */
    aws_client_req_t *req;   /* the subscription, or NULL */
    int paused;
    eventstream_decoder_t dec;
    int warned_unknown;      /* an unknown event type was logged once */
    int answered;            /* the subscription's first bytes came (logged once) */
    fo_event_t *head, *tail;
    size_t held;             /* bytes of the queued events */
    int ended;               /* the shard's end is queued or handed over: no more subscriptions */
    source_records_cb cb;    /* the read waiting, or NULL */
    void *ud;
    size_t max_records;
    source_iterator_cb it_cb;/* an iterator answer due */
    void *it_ud;
    char *it_value;
    source_err_t fatal;      /* a failure for the next read */
    char *fatal_msg;
    int failures;            /* subscriptions in a row that failed */
    int64_t last_open_ms;
    fo_pending_t *confirm;   /* a closed shard's end being confirmed */
    unsigned gen;            /* bumped when a read moves the position: older answers do not count */
    int64_t last_confirm_ms;
    ev_timer timer;          /* the next subscription (backoff, rate limit) */
    ev_timer hand;           /* answers on a loop turn */
    int busy, dead;          /* inside fo_on_hand; released meanwhile */
};

struct fo_source {
    source_t base;
    source_t *poll;          /* owned: listing, puts, and confirming a closed shard's end */
    aws_client_t *aws;       /* shared */
    aws_endpoint_t ep;
    char *consumer;
    size_t max_held;
    long idle_ms;
    fo_stream_t *streams;
    fo_sub_t *subs;
    fo_pending_t *pending;
    unsigned seed;
};

static void fo_open(fo_sub_t *sub);

static char *fo_after(const char *seq)
{
    size_t n = strlen(FO_AFTER) + strlen(seq) + 1;
    char *s = xmalloc(n); /* the caller's */
    snprintf(s, n, FO_AFTER "%s", seq);
    return s;
}

/* ---- streams and their consumers ------------------------------------------- */

static void fo_consumer_changed(void *ud, kinesis_consumer_t *c);

static fo_stream_t *fo_stream(fo_source_t *fo, const char *name)
{
    for (fo_stream_t *st = fo->streams; st; st = st->next)
        if (!strcmp(st->name, name)) return st;
    fo_stream_t *st = xcalloc(1, sizeof *st); /* owned by the source, freed in destroy */
    st->fo = fo;
    st->name = xstrdup(name);
    st->consumer = kinesis_consumer_new(fo->base.loop, fo->aws, &fo->ep, name, fo->consumer, fo_consumer_changed, st);
    st->next = fo->streams;
    fo->streams = st;
    return st;
}

static void fo_stream_free(fo_stream_t *st)
{
    kinesis_consumer_free(st->consumer);
    for (size_t i = 0; i < st->nclosed; i++) free(st->closed[i]);
    free(st->closed);
    free(st->name);
    free(st);
}

static int fo_closed(const fo_sub_t *sub)
{
    for (size_t i = 0; i < sub->st->nclosed; i++)
        if (!strcmp(sub->st->closed[i], sub->shard)) return 1;
    return 0;
}

/* ---- subs ---------------------------------------------------------------------- */

static void fo_on_timer(struct ev_loop *loop, ev_timer *t, int revents);
static void fo_on_hand(struct ev_loop *loop, ev_timer *t, int revents);

static fo_sub_t *fo_find(fo_source_t *fo, const char *stream, const char *shard)
{
    for (fo_sub_t *s = fo->subs; s; s = s->next)
        if (!s->dead && !strcmp(s->shard, shard) && !strcmp(s->stream, stream)) return s;
    return NULL;
}

static fo_sub_t *fo_sub(fo_source_t *fo, const char *stream, const char *shard)
{
    fo_sub_t *sub = fo_find(fo, stream, shard);
    if (sub) return sub;
    sub = xcalloc(1, sizeof *sub); /* owned by the source: fo_sub_free at release or destroy */
    sub->fo = fo;
    sub->st = fo_stream(fo, stream);
    sub->stream = xstrdup(stream);
    sub->shard = xstrdup(shard);
    eventstream_init(&sub->dec, 0);
    ev_init(&sub->timer, fo_on_timer);
    sub->timer.data = sub;
    ev_init(&sub->hand, fo_on_hand);
    sub->hand.data = sub;
    sub->next = fo->subs;
    if (fo->subs) fo->subs->prev = sub;
    fo->subs = sub;
    return sub;
}

static void fo_event_free(fo_event_t *e)
{
    batch_free(e->batch);
    free(e->cont);
    free(e->mark);
    free(e);
}

static void fo_drop_queue(fo_sub_t *sub)
{
    while (sub->head) {
        fo_event_t *e = sub->head;
        sub->head = e->next;
        fo_event_free(e);
    }
    sub->tail = NULL;
    sub->held = 0;
}

/* Ends the subscription (no callback follows). */
static void fo_close(fo_sub_t *sub)
{
    if (sub->req) aws_client_cancel(sub->fo->aws, sub->req);
    sub->req = NULL;
    sub->paused = 0;
}

static void fo_sub_free(fo_sub_t *sub)
{
    fo_source_t *fo = sub->fo;
    fo_close(sub);
    ev_timer_stop(fo->base.loop, &sub->timer);
    ev_timer_stop(fo->base.loop, &sub->hand);
    if (sub->confirm) sub->confirm->sub = NULL;
    if (sub->prev) sub->prev->next = sub->next;
    else fo->subs = sub->next;
    if (sub->next) sub->next->prev = sub->prev;
    fo_drop_queue(sub);
    eventstream_free(&sub->dec);
    free(sub->stream);
    free(sub->shard);
    free(sub->next_it);
    free(sub->open_at);
    free(sub->last_seq);
    free(sub->it_value);
    free(sub->fatal_msg);
    free(sub);
}

static void fo_hand_later(fo_sub_t *sub)
{
    if (!ev_is_active(&sub->hand)) {
        ev_timer_set(&sub->hand, 0., 0.);
        ev_timer_start(sub->fo->base.loop, &sub->hand);
    }
}

static void fo_later(fo_sub_t *sub, int64_t ms)
{
    ev_timer_stop(sub->fo->base.loop, &sub->timer);
    ev_timer_set(&sub->timer, (double)ms / 1000.0, 0.);
    ev_timer_start(sub->fo->base.loop, &sub->timer);
}

/* A failure the next read reports (the reader halts the shard). */
static void fo_fatal(fo_sub_t *sub, source_err_t e, const char *msg)
{
    sub->fatal = e;
    xstrset(&sub->fatal_msg, msg);
    if (sub->cb) fo_hand_later(sub);
}

/* Opens a subscription if the shard wants one: a position, not at its end,
 * none open or due, and room (a read waits, or nothing is queued). */
static void fo_open_if_wanted(fo_sub_t *sub)
{
    if (sub->dead || !sub->next_it || sub->ended || sub->req || sub->fatal || ev_is_active(&sub->timer)) return;
    if (!sub->cb && sub->head) return; /* a backlog: the shard reads it first */
    fo_open(sub);
}

static void fo_on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    fo_open_if_wanted(t->data);
}

static void fo_consumer_changed(void *ud, kinesis_consumer_t *c)
{
    fo_stream_t *st = ud;
    const char *msg = NULL;
    source_err_t e = kinesis_consumer_error(c, &msg);
    for (fo_sub_t *sub = st->fo->subs; sub; sub = sub->next) {
        if (sub->st != st || sub->dead) continue;
        if (e) {
            if (sub->cb) fo_fatal(sub, e, msg); /* the next read tries again */
        } else {
            fo_open_if_wanted(sub);
        }
    }
}

/* ---- errors --------------------------------------------------------------------- */

/* Exception types a new subscription will not cure. */
static int fo_final_type(const char *type)
{
    static const char *const final[] = {"AccessDeniedException", "KMSAccessDeniedException", "KMSDisabledException",
                                        "KMSInvalidStateException", "KMSNotFoundException", "KMSOptInRequired",
                                        "InvalidArgumentException", "ValidationException", NULL};
    for (int i = 0; type && final[i]; i++)
        if (!strcmp(type, final[i])) return 1;
    return 0;
}

/* The subscription failed (why names the cause): it opens again after the
 * last event received, with backoff; or the next read fails when `final`. */
static void fo_error(fo_sub_t *sub, const char *type, const char *why, int final)
{
    fo_source_t *fo = sub->fo;
    char msg[1400], q[1500];
    fo_close(sub);
    snprintf(msg, sizeof msg, "stream %s shard %s consumer %s: SubscribeToShard: %s", sub->stream, sub->shard,
             fo->consumer, why);
    if (final) {
        log_error("fanout_failed", "stream=%s shard=%s consumer=%s error=%s", sub->stream, sub->shard, fo->consumer,
                  log_quote(msg, q, sizeof q));
        fo_fatal(sub, SOURCE_EFATAL, msg);
        return;
    }
    if (type && !strcmp(type, "ResourceNotFoundException")) kinesis_consumer_invalidate(sub->st->consumer);
    int64_t delay = backoff_ms(SOURCE_FANOUT_RETRY_BASE_MS, SOURCE_FANOUT_RETRY_MAX_MS, ++sub->failures, &fo->seed);
    log_warn("fanout_resubscribe", "stream=%s shard=%s consumer=%s from=%s retry_in_ms=%lld error=%s", sub->stream,
             sub->shard, fo->consumer, sub->open_at, (long long)delay, log_quote(msg, q, sizeof q));
    fo_later(sub, delay);
}

/* ---- events ---------------------------------------------------------------------- */

static void fo_enqueue(fo_sub_t *sub, fo_event_t *e)
{
    if (sub->tail) sub->tail->next = e;
    else sub->head = e;
    sub->tail = e;
    sub->held += e->bytes;
}

static void fo_confirm_start(fo_sub_t *sub, const char *cont);

/* One SubscribeToShardEvent: its records (repeats dropped) join the queue. */
static int fo_event(fo_sub_t *sub, const eventstream_message_t *m)
{
    source_records_t r = {0};
    char **kids = NULL;
    size_t nkids = 0;
    errbuf_t err;
    awsjson_status_t st =
        kinesis_json_subscribe_event((const char *)m->payload, m->payload_len, &r, &kids, &nkids, &err);
    if (st != AWSJSON_OK) {
        fo_error(sub, NULL, err.msg, 0);
        return -1;
    }
    batch_t *b = r.batch;
    size_t skip = 0;
    while (sub->last_seq && skip < b->count && seqnum_cmp(batch_seq(b, skip), sub->last_seq) <= 0) skip++;
    if (skip) {
        batch_t *rest = batch_slice(b, skip, b->count);
        batch_free(b);
        b = rest;
    }
    /* b goes to the queue or is freed below: what comes after asks `fresh` */
    const size_t fresh = b->count;
    if (fresh) xstrset(&sub->last_seq, batch_seq(b, fresh - 1));
    if (!r.next_iterator) {
        char list[1024] = "";
        for (size_t i = 0; i < nkids; i++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? "," : "", kids[i]);
        log_info("fanout_shard_end", "stream=%s shard=%s consumer=%s children=%s", sub->stream, sub->shard,
                 sub->fo->consumer, nkids ? list : "-");
        sub->ended = 1;
    }
    for (size_t i = 0; i < nkids; i++) free(kids[i]);
    free(kids);
    fo_event_t *tail = sub->tail;
    if (!fresh && r.next_iterator && tail && tail->cont) {
        /* nothing new: the queued event only moves on (empty events do not pile up) */
        xstrset(&tail->cont, r.next_iterator);
        tail->millis_behind = r.millis_behind;
        batch_free(b);
    } else {
        fo_event_t *e = xcalloc(1, sizeof *e); /* owned by the queue */
        batch_compact(&b);
        e->batch = b;
        e->cont = r.next_iterator ? xstrdup(r.next_iterator) : NULL;
        e->mark = sub->last_seq ? xstrdup(sub->last_seq) : NULL;
        e->millis_behind = r.millis_behind;
        e->bytes = b->bytes;
        fo_enqueue(sub, e);
    }
    b = NULL;
    if (r.next_iterator) {
        char *at = fo_after(r.next_iterator);
        free(sub->open_at);
        sub->open_at = at;
        if (!fresh && !sub->confirm && fo_closed(sub) &&
            clock_mono_ms() - sub->last_confirm_ms >= FO_CONFIRM_MS)
            fo_confirm_start(sub, r.next_iterator);
    }
    free(r.next_iterator);
    return 0;
}

/* Keeps the first queued event only: the rest is dropped and the
 * subscription closed, to open again after that event once it is read. */
static void fo_overflow(fo_sub_t *sub)
{
    fo_event_t *keep = sub->head;
    size_t dropped = 0, held = sub->held;
    while (keep->next) {
        fo_event_t *e = keep->next;
        keep->next = e->next;
        if (!e->cont) sub->ended = 0; /* the end comes again */
        fo_event_free(e);
        dropped++;
    }
    sub->tail = keep;
    sub->held = keep->bytes;
    /* the position moves back to keep: a GetRecords asked whether the shard
     * ends after a dropped event must not end it after keep */
    sub->gen++;
    fo_close(sub);
    xstrset(&sub->last_seq, keep->mark);
    free(sub->open_at);
    sub->open_at = keep->cont ? fo_after(keep->cont) : NULL;
    if (!keep->cont) sub->ended = 1;
    log_warn("fanout_overflow", "stream=%s shard=%s consumer=%s held_bytes=%zu dropped_events=%zu "
             "action=\"subscribe again after the first held event once the shard read it\"",
             sub->stream, sub->shard, sub->fo->consumer, held, dropped);
}

/* The message's :exception-type or :error-code, and its message. */
static void fo_exception(fo_sub_t *sub, const eventstream_message_t *m)
{
    char type[128], why[1024];
    eventstream_span_t t = m->kind == EVENTSTREAM_KIND_EXCEPTION ? m->exception_type : m->error_code;
    snprintf(type, sizeof type, "%.*s", (int)(t.len < 127 ? t.len : 127), t.p ? t.p : "");
    const char *text = NULL;
    cJSON *j = NULL;
    char emsg[512] = "";
    if (m->kind == EVENTSTREAM_KIND_EXCEPTION) {
        j = cJSON_ParseWithLength((const char *)m->payload, m->payload_len);
        const cJSON *mm = cJSON_GetObjectItemCaseSensitive(j, "message");
        if (!cJSON_IsString(mm)) mm = cJSON_GetObjectItemCaseSensitive(j, "Message");
        if (cJSON_IsString(mm)) text = mm->valuestring;
    } else if (m->error_message.p) {
        snprintf(emsg, sizeof emsg, "%.*s", (int)(m->error_message.len < 511 ? m->error_message.len : 511),
                 m->error_message.p);
        text = emsg;
    }
    snprintf(why, sizeof why, "%s: %s (in the event stream)", *type ? type : "unnamed exception",
             text ? text : "no message");
    cJSON_Delete(j);
    fo_error(sub, type, why, fo_final_type(type));
}

/* The subscription's bytes, as they arrive. */
static void fo_on_data(void *ud, const char *p, size_t n)
{
    fo_sub_t *sub = ud;
    eventstream_message_t m;
    int rc;
    if (!sub->answered) {
        sub->answered = 1;
        log_info("fanout_subscribed", "stream=%s shard=%s consumer=%s http=%s", sub->stream, sub->shard,
                 sub->fo->consumer, aws_client_http_version(sub->req));
    }
    eventstream_feed(&sub->dec, p, n);
    while ((rc = eventstream_next(&sub->dec, &m)) == 1) {
        if (m.kind == EVENTSTREAM_KIND_EVENT && eventstream_span_eq(m.event_type, "SubscribeToShardEvent")) {
            if (fo_event(sub, &m)) return; /* closed */
        } else if (m.kind == EVENTSTREAM_KIND_EXCEPTION || m.kind == EVENTSTREAM_KIND_ERROR) {
            fo_exception(sub, &m);
            return;
        } else if (!(m.kind == EVENTSTREAM_KIND_EVENT && eventstream_span_eq(m.event_type, "initial-response")) &&
                   !sub->warned_unknown) {
            /* the format lets services add event types: skipped, said once */
            sub->warned_unknown = 1;
            log_warn("fanout_unknown_event", "stream=%s shard=%s consumer=%s message_type=%.*s event_type=%.*s "
                     "offset=%" PRIu64 " action=skipped", sub->stream, sub->shard, sub->fo->consumer,
                     (int)m.message_type.len, m.message_type.p ? m.message_type.p : "", (int)m.event_type.len,
                     m.event_type.p ? m.event_type.p : "", m.offset);
        }
        if (sub->ended && sub->req && !sub->confirm) {
            fo_close(sub); /* nothing follows the shard's end */
            break;
        }
    }
    if (rc < 0) {
        fo_error(sub, NULL, eventstream_errmsg(&sub->dec), 0); /* it names the error and the offset */
    }
    if (!sub->head) return;
    if (sub->cb) {
        fo_hand_later(sub);
    } else if (sub->req && !sub->paused) {
        aws_client_pause(sub->req, 1); /* nobody reads: hold the service back */
        sub->paused = 1;
        log_debug("fanout_paused", "stream=%s shard=%s held_bytes=%zu", sub->stream, sub->shard, sub->held);
    }
    /* nobody reads and more than the bound came before the pause took effect */
    if (!sub->cb && sub->held > sub->fo->max_held && sub->head->next) fo_overflow(sub);
}

/* The subscription ended: the service closed it (5 minutes) or it failed. */
static void fo_on_end(void *ud, const aws_http_response_t *resp)
{
    fo_sub_t *sub = ud;
    sub->req = NULL;
    sub->paused = 0;
    if (resp->error == AWS_HTTP_OK) {
        if (eventstream_finish(&sub->dec) != 0) {
            fo_error(sub, NULL, eventstream_errmsg(&sub->dec), 0); /* it names the error and the offset */
            return;
        }
        if (sub->ended) return;
        log_info("fanout_subscription_ended", "stream=%s shard=%s consumer=%s from=%s", sub->stream, sub->shard,
                 sub->fo->consumer, sub->open_at);
        sub->failures = 0;
        fo_open_if_wanted(sub);
        return;
    }
    char what[900];
    aws_client_describe(resp, what, sizeof what);
    /* ResourceInUseException: the shard's previous subscription (a handoff) is not closed yet */
    int retry = aws_client_transient(resp) ||
                (resp->error == AWS_HTTP_EHTTP && (aws_client_is(resp, "ResourceInUseException") ||
                                                   aws_client_is(resp, "ResourceNotFoundException")));
    fo_error(sub, resp->aws_error_type, what, !retry || fo_final_type(resp->aws_error_type));
}

/* "TYPE" or "TYPE:value" into StartingPosition. */
static void fo_starting_position(cJSON *q, const char *at)
{
    cJSON *sp = cJSON_AddObjectToObject(q, "StartingPosition");
    const char *colon = strchr(at, ':');
    char type[32];
    snprintf(type, sizeof type, "%.*s", (int)(colon ? (size_t)(colon - at) : strlen(at)), at);
    cJSON_AddStringToObject(sp, "Type", type);
    if (colon && !strcmp(type, "AT_TIMESTAMP"))
        cJSON_AddNumberToObject(sp, "Timestamp", (double)strtoll(colon + 1, NULL, 10) / 1000.0); /* seconds */
    else if (colon)
        cJSON_AddStringToObject(sp, "SequenceNumber", colon + 1);
}

static void fo_open(fo_sub_t *sub)
{
    fo_source_t *fo = sub->fo;
    const char *arn = kinesis_consumer_arn(sub->st->consumer);
    if (!arn) {
        kinesis_consumer_ensure(sub->st->consumer); /* fo_consumer_changed opens it */
        return;
    }
    int64_t now = clock_mono_ms(), wait = sub->last_open_ms + SOURCE_FANOUT_MIN_OPEN_MS - now;
    if (sub->last_open_ms && wait > 0) {
        fo_later(sub, wait);
        return;
    }
    cJSON *q = cJSON_CreateObject();
    if (!q) xalloc_oom(0);
    cJSON_AddStringToObject(q, "ConsumerARN", arn);
    cJSON_AddStringToObject(q, "ShardId", sub->shard);
    fo_starting_position(q, sub->open_at);
    char *body = cJSON_PrintUnformatted(q);
    cJSON_Delete(q);
    if (!body) xalloc_oom(0);
    sub->last_open_ms = now;
    sub->answered = 0;
    eventstream_reset(&sub->dec);
    sub->req = aws_client_stream(fo->aws, &fo->ep, FO_TARGET, "1.1", body, fo->idle_ms, fo_on_data, fo_on_end, sub);
    free(body);
    if (!sub->req) {
        char why[600];
        snprintf(why, sizeof why, "invalid request (endpoint %s)", fo->ep.url);
        fo_error(sub, NULL, why, 1);
        return;
    }
    log_info("fanout_subscribe", "stream=%s shard=%s consumer=%s from=%s", sub->stream, sub->shard, fo->consumer,
             sub->open_at);
}

/* ---- a closed shard's end (kinesis-mock never sends it) ---------------------------- */

static void fo_pending_free(fo_pending_t *p)
{
    fo_source_t *fo = p->fo;
    if (p->sub) p->sub->confirm = NULL;
    if (p->prev) p->prev->next = p->next;
    else fo->pending = p->next;
    if (p->next) p->next->prev = p->prev;
    free(p->stream);
    free(p->shard);
    free(p);
}

static fo_pending_t *fo_pending_new(fo_source_t *fo, const char *stream, const char *shard)
{
    fo_pending_t *p = xcalloc(1, sizeof *p); /* owned by fo->pending: fo_pending_free */
    p->fo = fo;
    p->stream = xstrdup(stream);
    p->shard = shard ? xstrdup(shard) : NULL;
    p->next = fo->pending;
    if (fo->pending) fo->pending->prev = p;
    fo->pending = p;
    return p;
}

static void fo_confirm_records(void *ud, source_records_t *res)
{
    fo_pending_t *p = ud;
    fo_sub_t *sub = p->sub;
    int end = sub && sub->gen == p->gen && !res->error && !res->next_iterator && (!res->batch || !res->batch->count);
    batch_free(res->batch);
    free(res->next_iterator);
    fo_pending_free(p);
    if (!end || sub->ended) return;
    log_info("fanout_shard_end", "stream=%s shard=%s consumer=%s children=- confirmed_by=GetRecords", sub->stream,
             sub->shard, sub->fo->consumer);
    fo_event_t *e = xcalloc(1, sizeof *e); /* the end, after everything queued */
    e->batch = batch_new(0, 0);
    e->mark = sub->last_seq ? xstrdup(sub->last_seq) : NULL;
    e->millis_behind = 0;
    e->bytes = e->batch->bytes;
    fo_enqueue(sub, e);
    sub->ended = 1;
    fo_close(sub);
    if (sub->cb) fo_hand_later(sub);
}

static void fo_confirm_iterator(void *ud, source_err_t err, const char *msg, char *iterator)
{
    fo_pending_t *p = ud;
    if (err || !p->sub) {
        free(iterator);
        fo_pending_free(p);
        return;
    }
    source_get_records(p->fo->poll, p->stream, p->shard, iterator, 1, 0, fo_confirm_records, p);
    free(iterator);
}

/* Asks GetRecords whether the shard ends after `cont`. */
static void fo_confirm_start(fo_sub_t *sub, const char *cont)
{
    fo_pending_t *p = fo_pending_new(sub->fo, sub->stream, sub->shard);
    p->sub = sub;
    p->gen = sub->gen;
    sub->confirm = p;
    sub->last_confirm_ms = clock_mono_ms();
    source_position_t pos = {.kind = POS_AFTER_SEQUENCE, .seq = cont};
    source_get_iterator(sub->fo->poll, sub->stream, sub->shard, &pos, fo_confirm_iterator, p);
}

/* ---- answers ------------------------------------------------------------------------ */

/* The next part of the head event: at most max records, never splitting a
 * KPL aggregate (one larger than max goes whole). */
static void fo_take(fo_sub_t *sub, source_records_t *res)
{
    fo_event_t *e = sub->head;
    batch_t *b = e->batch;
    size_t n = b->count, k = n, max = sub->max_records ? sub->max_records : 1;
    if (n > max) {
        k = max;
        while (k > 0 && !strcmp(batch_seq(b, k - 1), batch_seq(b, k))) k--;
        if (k == 0) {
            k = max;
            while (k < n && !strcmp(batch_seq(b, k - 1), batch_seq(b, k))) k++;
        }
    }
    res->millis_behind = e->millis_behind;
    if (k < n) {
        res->batch = batch_slice(b, 0, k);
        e->batch = batch_slice(b, k, n);
        batch_free(b);
        sub->held -= e->bytes;
        e->bytes = e->batch->bytes;
        sub->held += e->bytes;
        res->next_iterator = fo_after(batch_seq(res->batch, k - 1));
    } else {
        res->batch = b;
        e->batch = NULL;
        res->next_iterator = e->cont ? fo_after(e->cont) : NULL;
        sub->head = e->next;
        if (!sub->head) sub->tail = NULL;
        sub->held -= e->bytes;
        fo_event_free(e);
    }
    for (size_t i = 0; i < res->batch->count; i++) res->bytes += res->batch->recs[i].data_len;
    xstrset(&sub->next_it, res->next_iterator);
}

static void fo_on_hand(struct ev_loop *loop, ev_timer *t, int revents)
{
    fo_sub_t *sub = t->data;
    sub->busy++;
    if (sub->it_cb) {
        source_iterator_cb cb = sub->it_cb;
        char *it = sub->it_value;
        sub->it_cb = NULL;
        sub->it_value = NULL;
        cb(sub->it_ud, SOURCE_OK, NULL, it);
    }
    if (!sub->dead && sub->cb && (sub->fatal || sub->head)) {
        source_records_cb cb = sub->cb;
        source_records_t res = {.millis_behind = -1};
        char *msg = NULL;
        sub->cb = NULL;
        if (sub->fatal) {
            res.error = sub->fatal;
            res.message = msg = sub->fatal_msg;
            sub->fatal = SOURCE_OK;
            sub->fatal_msg = NULL;
        } else {
            fo_take(sub, &res);
        }
        cb(sub->ud, &res);
        free(msg);
    }
    sub->busy--;
    if (sub->dead) fo_sub_free(sub);
}

/* ---- the interface ----------------------------------------------------------------- */

static void fo_list_done(void *ud, source_err_t err, const char *message, source_shard_list_t *shards)
{
    fo_pending_t *p = ud;
    if (!err && shards) {
        fo_stream_t *st = fo_stream(p->fo, p->stream);
        for (size_t i = 0; i < st->nclosed; i++) free(st->closed[i]);
        free(st->closed);
        st->closed = xcalloc(shards->count + 1, sizeof *st->closed); /* owned by st */
        st->nclosed = 0;
        for (size_t i = 0; i < shards->count; i++)
            if (shards->shards[i].end_seq) st->closed[st->nclosed++] = xstrdup(shards->shards[i].id);
    }
    source_shards_cb cb = p->cb;
    void *cud = p->ud;
    fo_pending_free(p);
    cb(cud, err, message, shards);
}

static void fo_list_shards(source_t *s, const char *stream, source_shards_cb cb, void *ud)
{
    fo_source_t *fo = (fo_source_t *)s;
    fo_pending_t *p = fo_pending_new(fo, stream, NULL);
    p->cb = cb;
    p->ud = ud;
    source_list_shards(fo->poll, stream, fo_list_done, p);
}

static void fo_get_iterator(source_t *s, const char *stream, const char *shard, const source_position_t *pos,
                            source_iterator_cb cb, void *ud)
{
    fo_source_t *fo = (fo_source_t *)s;
    fo_sub_t *sub = fo_sub(fo, stream, shard);
    char at[256];
    const char *name = source_pos_name(pos->kind);
    if (pos->kind == POS_AT_TIMESTAMP) snprintf(at, sizeof at, "%s:%lld", name, (long long)pos->timestamp_ms);
    else if (pos->kind == POS_AT_SEQUENCE || pos->kind == POS_AFTER_SEQUENCE)
        snprintf(at, sizeof at, "%s:%s", name, pos->seq ? pos->seq : "");
    else snprintf(at, sizeof at, "%s", name);
    free(sub->it_value);
    sub->it_value = xstrdup(at); /* handed to the callback */
    sub->it_cb = cb;
    sub->it_ud = ud;
    fo_hand_later(sub);
}

static void fo_get_records(source_t *s, const char *stream, const char *shard, const char *iterator, size_t max,
                           size_t max_bytes, source_records_cb cb, void *ud)
{
    fo_source_t *fo = (fo_source_t *)s;
    fo_sub_t *sub = fo_sub(fo, stream, shard);
    if (!sub->next_it || strcmp(iterator, sub->next_it) != 0) {
        /* a new position: whatever was read from the old one is not wanted */
        fo_close(sub);
        fo_drop_queue(sub);
        ev_timer_stop(fo->base.loop, &sub->timer);
        xstrset(&sub->next_it, iterator);
        xstrset(&sub->open_at, iterator);
        xstrset(&sub->last_seq, !strncmp(iterator, FO_AFTER, strlen(FO_AFTER)) ? iterator + strlen(FO_AFTER) : NULL);
        sub->ended = 0;
        sub->failures = 0;
        sub->fatal = SOURCE_OK;
        sub->gen++;
    }
    sub->cb = cb;
    sub->ud = ud;
    sub->max_records = max;
    if (sub->head || sub->fatal) {
        fo_hand_later(sub);
    } else if (sub->paused) {
        aws_client_pause(sub->req, 0); /* the shard has room again */
        sub->paused = 0;
        log_debug("fanout_resumed", "stream=%s shard=%s", sub->stream, sub->shard);
    } else {
        fo_open_if_wanted(sub);
    }
}

static void fo_release(source_t *s, const char *stream, const char *shard)
{
    fo_sub_t *sub = fo_find((fo_source_t *)s, stream, shard);
    if (!sub) return;
    if (!sub->busy) {
        fo_sub_free(sub);
        return;
    }
    /* inside its own answer: freed when fo_on_hand returns */
    sub->dead = 1;
    sub->cb = NULL;
    sub->it_cb = NULL;
    fo_close(sub);
}

static int fo_waiting(source_t *s, const char *stream, const char *shard)
{
    fo_sub_t *sub = fo_find((fo_source_t *)s, stream, shard);
    return sub && sub->cb && !sub->head && !sub->fatal && !sub->confirm && !ev_is_active(&sub->hand);
}

static void fo_put(source_t *s, const char *stream, const source_put_record_t *recs, size_t n, source_put_cb cb,
                   void *ud)
{
    fo_source_t *fo = (fo_source_t *)s;
    fo->poll->ops->put(fo->poll, stream, recs, n, cb, ud);
}

static int64_t fo_records_behind(source_t *s, const char *stream, const char *shard, const char *checkpoint)
{
    fo_source_t *fo = (fo_source_t *)s;
    return fo->poll->ops->records_behind(fo->poll, stream, shard, checkpoint);
}

static void fo_destroy(source_t *s)
{
    fo_source_t *fo = (fo_source_t *)s;
    while (fo->subs) fo_sub_free(fo->subs);
    while (fo->pending) fo_pending_free(fo->pending); /* the polling source drops their callbacks */
    while (fo->streams) {
        fo_stream_t *st = fo->streams;
        fo->streams = st->next;
        fo_stream_free(st);
    }
    source_destroy(fo->poll);
    aws_client_endpoint_clear(&fo->ep);
    free(fo->consumer);
    free(fo);
}

static const source_ops_t source_fanout_ops = {
    .name = "kinesis-fanout",
    .list_shards = fo_list_shards,
    .get_iterator = fo_get_iterator,
    .get_records = fo_get_records,
    .put = fo_put,
    .records_behind = fo_records_behind,
    .destroy = fo_destroy,
    .push = 1,
    .release = fo_release,
    .waiting = fo_waiting,
};

source_t *source_fanout_new(struct ev_loop *loop, const source_fanout_options_t *opt, source_t *polling,
                            errbuf_t *err)
{
    fo_source_t *fo = xcalloc(1, sizeof *fo); /* the caller's: source_destroy */
    fo->base.ops = &source_fanout_ops;
    fo->base.loop = loop;
    fo->poll = polling;
    fo->aws = opt->aws;
    fo->consumer = xstrdup(opt->consumer);
    fo->max_held = opt->max_held_bytes ? opt->max_held_bytes : (size_t)8 << 20;
    fo->idle_ms = opt->idle_ms > 0 ? opt->idle_ms : SOURCE_FANOUT_IDLE_MS;
    fo->seed = (unsigned)time(NULL) ^ (unsigned)getpid() ^ (unsigned)(uintptr_t)fo;
    if (aws_client_endpoint(fo->aws, &fo->ep, "kinesis", "source", opt->region, opt->endpoint, err)) {
        fo_destroy(&fo->base);
        return NULL;
    }
    fo->ep.http_version = opt->http_version;
    return &fo->base;
}
