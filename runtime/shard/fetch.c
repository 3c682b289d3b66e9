#include "fetch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/xalloc.h"
#include "record/seqnum.h"

#define FETCH_MAX_READ ((size_t)10 << 20)   /* bytes asked for per read (the largest GetRecords answer) */
#define FETCH_FIRST_RECORDS 10              /* a shard's first read, before its record size is known */

void fetch_budget_hold(fetch_budget_t *b, size_t bytes)
{
    b->held += bytes;
}

void fetch_budget_release(fetch_budget_t *b, size_t bytes)
{
    b->held = bytes > b->held ? 0 : b->held - bytes;
}

static void fetch_on_timer(sched_timer_t *t);
static void fetch_on_wake(source_watch_t *w);
void fetch_poke(fetcher_t *f);

void fetch_init(fetcher_t *f, sched_t *sched, source_t *source, fetch_budget_t *budget, const char *stream,
                const char *shard, const char *checkpoint, int64_t checkpoint_sub, const fetch_options_t *opt,
                const fetch_handler_t *h, void *ud)
{
    memset(f, 0, sizeof *f);
    f->sched = sched;
    f->source = source;
    f->budget = budget;
    f->h = *h;
    f->ud = ud;
    f->stream = xstrdup(stream);
    f->shard = xstrdup(shard);
    f->opt = *opt;
    f->millis_behind = -1;
    xstrset(&f->from, checkpoint);
    f->from_sub = checkpoint_sub;
    sched_timer_init(&f->timer, fetch_on_timer, f);
    f->watch.cb = fetch_on_wake;
    f->watch.data = f;
    source_watch(source, stream, shard, &f->watch); /* -1: this source cannot; polling alone */
}

/* A push source's read waits without a time limit: stopping or moving
 * abandons it at once rather than waiting for the service's next push. */
static void fetch_release(fetcher_t *f)
{
    if (!f->in_flight || !f->source->ops->release) return;
    f->source->ops->release(f->source, f->stream, f->shard);
    f->budget->reserved -= f->reservation;
    f->reservation = 0;
    f->in_flight = 0;
    f->discard = 0;
}

void fetch_clear(fetcher_t *f)
{
    fetch_release(f);
    sched_timer_stop(f->sched, &f->timer);
    source_unwatch(f->source, &f->watch);
    free(f->stream);
    free(f->shard);
    free(f->iterator);
    free(f->from);
    free(f->skip_to);
    free(f->backoff_error);
    memset(f, 0, sizeof *f);
}

void fetch_set_options(fetcher_t *f, const fetch_options_t *opt)
{
    f->opt = *opt;
}

static void fetch_later(fetcher_t *f, int64_t delay_ms)
{
    f->state = FETCH_WAITING;
    f->idle_wait = 0;
    sched_timer_start(f->sched, &f->timer, delay_ms);
}

/* Caught up: the next read waits for idle_ms, or for a wake-up. */
static void fetch_idle(fetcher_t *f)
{
    fetch_later(f, f->opt.idle_ms);
    f->idle_wait = 1;
}

/* The source says the shard may have new records. */
static void fetch_on_wake(source_watch_t *w)
{
    fetcher_t *f = w->data;
    if (f->in_flight) {
        f->woken = 1; /* the read out may have been made before them */
    } else if (f->state == FETCH_WAITING && f->idle_wait) {
        sched_timer_stop(f->sched, &f->timer);
        f->state = FETCH_IDLE;
        fetch_poke(f);
    }
}

void fetch_stop(fetcher_t *f)
{
    fetch_release(f);
    sched_timer_stop(f->sched, &f->timer);
    if (f->state != FETCH_ENDED) f->state = FETCH_STOPPED;
}

void fetch_restart(fetcher_t *f, const char *seq, int64_t sub)
{
    sched_timer_stop(f->sched, &f->timer);
    free(f->iterator);
    f->iterator = NULL;
    xstrset(&f->from, seq);
    f->from_sub = sub;
    free(f->skip_to);
    f->skip_to = NULL;
    f->caught_up = 0;
    fetch_release(f);
    f->discard = f->in_flight;
    f->state = FETCH_IDLE;
}

/* Drops the records at or before the position reading resumed from. The
 * filter stays until a record past it is seen: an empty first read does not
 * end it (the next read may still start inside the aggregate). */
static batch_t *fetch_skip_done(fetcher_t *f, batch_t *b)
{
    if (!f->skip_to) return b;
    size_t skip = 0;
    while (skip < b->count &&
           seqnum_cmp_sub(batch_seq(b, skip), b->recs[skip].sub_seq, f->skip_to, f->skip_sub) <= 0)
        skip++;
    if (skip < b->count) {
        free(f->skip_to);
        f->skip_to = NULL; /* past it: no more filtering */
    }
    if (!skip) return b;
    batch_t *rest = batch_slice(b, skip, b->count);
    batch_free(b);
    return rest;
}

/* How many records the source sent: the sub-records of one KPL aggregate
 * share its sequence number. */
static size_t fetch_source_records(const batch_t *b)
{
    if (!b->aggregated) return b->count;
    size_t n = 1;
    for (size_t i = 1; i < b->count; i++)
        if (b->recs[i].seq_len != b->recs[i - 1].seq_len ||
            memcmp(batch_seq(b, i), batch_seq(b, i - 1), b->recs[i].seq_len))
            n++;
    return n;
}

/* An answer that must be dropped (stopped or restarted meanwhile): 1 if so. */
static int fetch_stale(fetcher_t *f, fetch_state_t expected)
{
    f->in_flight = 0;
    if (f->discard) {
        f->discard = 0;
        if (f->state == FETCH_IDLE) fetch_poke(f); /* restarted meanwhile: read from the new position */
        return 1;
    }
    return f->state != expected;
}

/* After a dropped answer: a stopped fetcher has nothing in flight any more,
 * which its owner may be waiting for. Last use of f (the owner may free it). */
static void fetch_settled(fetcher_t *f)
{
    if (f->state == FETCH_STOPPED && !f->in_flight) f->h.settled(f->ud);
}

static void fetch_on_records(void *ud, source_records_t *res)
{
    fetcher_t *f = ud;
    f->budget->reserved -= f->reservation;
    f->reservation = 0;
    if (fetch_stale(f, FETCH_READING)) {
        batch_free(res->batch);
        free(res->next_iterator);
        fetch_settled(f);
        return;
    }
    f->state = FETCH_IDLE;
    shard_metrics_read(f->metrics, !res->error ? SHARD_READ_OK : res->error == SOURCE_EEXPIRED ? SHARD_READ_EXPIRED
                                                                                              : SHARD_READ_ERROR,
                       res->millis_behind);
    if (res->error) {
        char q[1024];
        batch_free(res->batch);
        free(res->next_iterator);
        if (res->error == SOURCE_EEXPIRED) {
            log_info("iterator_expired", "stream=%s shard=%s", f->stream, f->shard);
            free(f->iterator);
            f->iterator = NULL;
            fetch_poke(f);
        } else if (res->error == SOURCE_ERETRY) {
            log_warn("fetch_retry", "stream=%s shard=%s retry_in_ms=%lld error=%s", f->stream, f->shard,
                     (long long)f->opt.retry_ms, log_quote(res->message, q, sizeof q));
            xstrset(&f->backoff_error, res->message ? res->message : "transient read error");
            fetch_later(f, f->opt.retry_ms);
        } else {
            char why[1200];
            snprintf(why, sizeof why, "reading the shard failed (%s): %s", source_err_name(res->error),
                     res->message ? res->message : "");
            f->state = FETCH_STOPPED;
            f->h.failed(f->ud, why);
        }
        return;
    }
    xstrset(&f->backoff_error, NULL);
    /* caught up: the source had no more than it gave (counted before the
     * resume filter drops records: a short answer, not a filtered one) */
    int short_answer = fetch_source_records(res->batch) < f->asked;
    batch_t *b = fetch_skip_done(f, res->batch);
    size_t n = b->count;
    free(f->iterator);
    f->iterator = res->next_iterator;
    f->millis_behind = res->millis_behind;
    /* a push source answers as records come: at the tip when it says so */
    f->caught_up = res->millis_behind == 0 && (f->source->ops->push || short_answer);
    if (n) {
        xstrset(&f->from, batch_seq(b, n - 1)); /* a new iterator starts here, after this record */
        f->from_sub = b->recs[n - 1].sub_seq;
        f->bytes_per_record = (double)b->bytes / (double)fetch_source_records(b);
        fetch_budget_hold(f->budget, b->bytes);
        f->h.records(f->ud, b);
    } else {
        batch_free(b);
    }
    if (f->state != FETCH_IDLE) return; /* the owner stopped us from its callback */
    if (!f->iterator) {
        f->state = FETCH_ENDED;
        f->h.ended(f->ud);
        return;
    }
    /* Poll again at once while behind, or when woken since the read was
     * made; idle between reads when caught up (a push source waits for
     * records itself). */
    if (f->caught_up && !f->woken && !f->source->ops->push) fetch_idle(f);
    else fetch_poke(f);
}

static void fetch_on_iterator(void *ud, source_err_t err, const char *msg, char *iterator)
{
    fetcher_t *f = ud;
    if (fetch_stale(f, FETCH_ITERATOR)) {
        free(iterator);
        fetch_settled(f);
        return;
    }
    f->state = FETCH_IDLE;
    if (err) {
        char q[1024];
        if (err == SOURCE_ERETRY) {
            log_warn("iterator_retry", "stream=%s shard=%s retry_in_ms=%lld error=%s", f->stream, f->shard,
                     (long long)f->opt.retry_ms, log_quote(msg, q, sizeof q));
            xstrset(&f->backoff_error, msg ? msg : "transient error getting an iterator");
            fetch_later(f, f->opt.retry_ms);
        } else {
            char why[1200];
            snprintf(why, sizeof why, "cannot get a shard iterator (%s): %s", source_err_name(err), msg ? msg : "");
            f->state = FETCH_STOPPED;
            f->h.failed(f->ud, why);
        }
        return;
    }
    f->iterator = iterator;
    xstrset(&f->backoff_error, NULL);
    fetch_poke(f);
}

/* Where to read from: after the last record fetched, else the checkpoint,
 * else the stream's initial position. */
static void fetch_request_iterator(fetcher_t *f)
{
    source_position_t pos = {0};
    if (f->from && seqnum_valid(f->from)) {
        pos.kind = POS_AT_SEQUENCE;
        pos.seq = f->from;
        xstrset(&f->skip_to, f->from);
        f->skip_sub = f->from_sub;
    } else if (f->from && !strcmp(f->from, SEQNUM_LATEST)) {
        pos.kind = POS_LATEST;
    } else if (f->from && !strcmp(f->from, SEQNUM_AT_TIMESTAMP)) {
        pos.kind = POS_AT_TIMESTAMP;
        pos.timestamp_ms = f->opt.initial_timestamp_ms;
    } else if (f->from && !strcmp(f->from, SEQNUM_TRIM_HORIZON)) {
        pos.kind = POS_TRIM_HORIZON;
    } else {
        pos.kind = f->opt.initial;
        pos.timestamp_ms = f->opt.initial_timestamp_ms;
    }
    f->state = FETCH_ITERATOR;
    f->in_flight = 1;
    source_get_iterator(f->source, f->stream, f->shard, &pos, fetch_on_iterator, f);
}


void fetch_poke(fetcher_t *f)
{
    if (f->state != FETCH_IDLE || f->in_flight) return;
    if (!f->iterator) {
        fetch_request_iterator(f);
        return;
    }
    if (!f->h.room(f->ud)) return; /* the owner pokes again when it has consumed a batch */
    /* how many records, and how many bytes they may take in memory */
    fetch_budget_t *b = f->budget;
    size_t used = b->held + b->reserved, room = FETCH_MAX_READ, limit = f->opt.max_records, est;
    if (b->max) room = used < b->max ? b->max - used : 0;
    if (room > FETCH_MAX_READ) room = FETCH_MAX_READ;
    if (f->source->ops->push) {
        /* the service decides what an event holds, and the read waits for it
         * without a time limit: nothing reserved, room is all it needs */
        est = 0;
    } else if (f->source->ops->keeps_max_bytes) {
        est = room; /* the source stops there itself */
    } else if (f->bytes_per_record > 0) {
        double fit = (double)room / f->bytes_per_record;
        if (fit < (double)limit) limit = (size_t)fit;
        if (limit == 0 && used == 0) limit = 1; /* a record larger than the bound: one at a time */
        est = (size_t)(f->bytes_per_record * (double)limit);
    } else {
        if (limit > FETCH_FIRST_RECORDS) limit = FETCH_FIRST_RECORDS;
        est = room;
    }
    if (limit == 0 || room == 0) {
        /* over the bound: wait for batches to be released (checked on a timer,
         * since the release may happen in any shard) */
        fetch_later(f, 50);
        return;
    }
    int64_t now = sched_now_ms(f->sched);
    if (now < f->next_read_ms && !f->source->ops->push) {
        fetch_later(f, f->next_read_ms - now);
        return;
    }
    f->next_read_ms = now + f->opt.min_interval_ms;
    f->reservation = est;
    f->asked = limit;
    b->reserved += est;
    f->state = FETCH_READING;
    f->in_flight = 1;
    f->woken = 0; /* this read sees what was committed before it: a later wake-up asks for another */
    source_get_records(f->source, f->stream, f->shard, f->iterator, limit, est, fetch_on_records, f);
}

static void fetch_on_timer(sched_timer_t *t)
{
    fetcher_t *f = t->data;
    if (f->state != FETCH_WAITING) return;
    f->state = FETCH_IDLE;
    fetch_poke(f);
}
