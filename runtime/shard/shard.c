#include "shard.h"
#include "shard_internal.h"

#include <cjson/cJSON.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "policy.h"
#include "record/seqnum.h"
#include "base/xalloc.h"

#define SHARD_RETRY_MS 1000          /* after a transient source error */
#define SHARD_BUFFER_WAIT_MS 50      /* when the worker's buffer is full */
#define SHARD_STUCK_RETRY_MS 10000   /* shardEnded did not checkpoint */
#define SHARD_HALT_REPEAT_S 60.0     /* a halted shard says so every minute */
#define SHARD_STUCK_GRACE_MS 5000    /* after an interrupt, before the worker gives up on the thread */

static void shard_maybe_fetch(shard_t *s);
static void shard_maybe_close(shard_t *s);

const char *shard_phase_name(shard_phase_t p)
{
    static const char *const names[] = {"initializing", "processing", "ending", "stopping", "lost", "halted",
                                        "closing"};
    return names[p];
}

const char *shard_key(const shard_t *s) { return s->key; }
const char *shard_id(const shard_t *s) { return s->id; }
const char *shard_stream(const shard_t *s) { return s->stream; }
shard_phase_t shard_phase(const shard_t *s) { return s->phase; }
proc_state_t *shard_proc(shard_t *s) { return s->ps; }

void shard_set_str(char **dst, const char *v)
{
    char *copy = xstrdup(v);
    free(*dst);
    *dst = copy;
}

/* ---- the prefetch queue ---------------------------------------------------- */

/* Every batch a shard holds counts towards the worker's buffer bound. */
void shard_account(shard_t *s, batch_t *b)
{
    s->env->buffered_bytes += b->bytes;
}

static void shard_enqueue(shard_t *s, batch_t *b)
{
    queued_t *q = xcalloc(1, sizeof *q); /* freed when dequeued */
    q->batch = b;
    if (s->tail) s->tail->next = q;
    else s->head = q;
    s->tail = q;
    s->queued++;
    shard_account(s, b);
}

/* Bisected pieces go before everything fetched after them: order is kept. */
void shard_push_front(shard_t *s, batch_t *b, int bisected)
{
    queued_t *q = xcalloc(1, sizeof *q); /* freed when dequeued */
    q->batch = b;
    q->bisected = bisected;
    q->next = s->head;
    s->head = q;
    if (!s->tail) s->tail = q;
    s->queued++;
    shard_account(s, b);
}

static batch_t *shard_dequeue(shard_t *s, int *bisected)
{
    queued_t *q = s->head;
    if (!q) return NULL;
    s->head = q->next;
    if (!s->head) s->tail = NULL;
    s->queued--;
    batch_t *b = q->batch;
    if (bisected) *bisected = q->bisected;
    free(q);
    return b;
}

void shard_release_batch(shard_t *s, batch_t *b)
{
    if (!b) return;
    s->env->buffered_bytes -= b->bytes;
    batch_free(b);
}

static void shard_drop_queue(shard_t *s)
{
    batch_t *b;
    while ((b = shard_dequeue(s, NULL))) shard_release_batch(s, b);
}

/* Drops every batch not yet processed: the queue and any waiting retry.
 * They are after the last checkpoint, so the next owner reads them again. */
static void shard_drop_pending(shard_t *s)
{
    shard_drop_queue(s);
    shard_release_batch(s, s->retry);
    s->retry = NULL;
    if (!s->dl_busy) {   /* a dead-letter write in flight releases it when it answers */
        shard_release_batch(s, s->final);
        s->final = NULL;
    }
}

/* ---- checkpoints ----------------------------------------------------------- */

/* The worker may free s only when nothing can call back into it: its Lua
 * state is closed, and no fetch or checkpoint write is in flight (a network
 * source or a busy lease store answers late). */
void shard_maybe_free(shard_t *s)
{
    if (s->phase == SHARD_CLOSING && s->lua_closed && !s->job_busy && !s->fetch_busy && !s->cp_busy && !s->dl_busy)
        s->env->closed(s->env->ud, s);
}

static void shard_cp_done(void *ud, lease_status_t st)
{
    shard_t *s = ud;
    s->cp_busy--;
    if (s->phase == SHARD_CLOSING) {
        shard_maybe_free(s);
        return;
    }
    /* LEASE_CONFLICT: the coordinator has reported the loss (shard_lost). */
    if (s->phase == SHARD_ENDING && st == LEASE_OK && s->checkpointed &&
        !strcmp(s->checkpointed, SEQNUM_SHARD_END) && !s->cp_busy) {
        log_info("shard_finished", "stream=%s shard=%s worker=%s", s->stream, s->id, s->env->worker_id);
        s->env->ended(s->env->ud, s);
        s->releasing = 1;
        s->phase = SHARD_STOPPING;
        lease_coord_release(s->env->coord, s->key, NULL, NULL);
        shard_submit(s, JOB_CLOSE);
        return;
    }
    shard_maybe_close(s);
    shard_dispatch(s);
}

static void shard_write_checkpoint(shard_t *s, const char *seq, int64_t sub)
{
    if (s->phase == SHARD_LOST || s->phase == SHARD_CLOSING) return;
    if (s->checkpointed && !strcmp(s->checkpointed, seq) && !s->cp_seq) return;
    shard_set_str(&s->checkpointed, seq);
    s->cp_busy++;
    log_debug("checkpoint", "stream=%s shard=%s seq=%s sub=%lld", s->stream, s->id, seq, (long long)sub);
    lease_coord_checkpoint(s->env->coord, s->key, seq, sub, shard_cp_done, s);
}

static void shard_flush_checkpoint(shard_t *s)
{
    ev_timer_stop(s->env->loop, &s->cp_timer);
    if (!s->cp_seq) return;
    char *seq = s->cp_seq;
    s->cp_seq = NULL;
    shard_write_checkpoint(s, seq, s->cp_sub);
    free(seq);
}

static void shard_on_cp_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    shard_flush_checkpoint(t->data);
}

/* Checkpoint at (seq, sub): at once, or coalesced per checkpoint_interval_ms. */
void shard_checkpoint(shard_t *s, const char *seq, int64_t sub)
{
    shard_set_str(&s->cp_seq, seq);
    s->cp_sub = sub;
    if (s->cfg->checkpoint_interval_ms <= 0) {
        shard_flush_checkpoint(s);
        return;
    }
    if (!ev_is_active(&s->cp_timer)) {
        ev_timer_set(&s->cp_timer, (double)s->cfg->checkpoint_interval_ms / 1000.0, 0.0);
        ev_timer_start(s->env->loop, &s->cp_timer);
    }
}

/* ---- jobs ------------------------------------------------------------------ */

static void shard_on_job_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    shard_t *s = t->data;
    if (!s->job_busy) return;
    int64_t started = __atomic_load_n(&s->job.started_us, __ATOMIC_ACQUIRE);
    int64_t limit = s->cfg->process_timeout_ms * 1000;
    int64_t ran = started ? clock_mono_us() - started : 0;
    if (s->interrupted_ms) {
        /* Last line of defence: the interrupt did not stop the script (C code
         * called through FFI, a blocking call). The thread cannot be killed;
         * stop renewing this shard's lease by exiting non-zero, so a peer
         * takes it over and a supervisor restarts this worker. */
        log_error("processor_stuck", "stream=%s shard=%s seconds=%lld action=\"exit 1: lease expires, a peer takes over\"",
                  s->stream, s->id, (long long)(clock_mono_ms() - s->interrupted_ms) / 1000);
        s->env->halt_worker(s->env->ud, s);
        return;
    }
    if (started && ran >= limit) {
        log_warn("process_timeout", "stream=%s shard=%s timeout_ms=%lld", s->stream, s->id,
                 (long long)s->cfg->process_timeout_ms);
        proc_interrupt(s->ps);
        s->interrupted_ms = clock_mono_ms();
        ev_timer_set(t, SHARD_STUCK_GRACE_MS / 1000.0, 0.0);
        ev_timer_start(loop, t);
        return;
    }
    /* still queued behind other shards, or started late: check again when it is due */
    ev_timer_set(t, (double)(limit - ran) / 1e6 + 0.001, 0.0);
    ev_timer_start(loop, t);
}

void shard_submit(shard_t *s, proc_job_kind_t kind)
{
    /* One job per shard: the job struct is embedded, so a second submit
     * would corrupt the pool's queue. */
    if (s->job_busy) {
        log_error("internal_error", "stream=%s shard=%s what=\"second job submitted while one is running\" kind=%d",
                  s->stream, s->id, (int)kind);
        abort();
    }
    s->job.kind = kind;
    s->job.ps = s->ps;
    s->job.ud = s;
    s->job.batch = kind == JOB_PROCESS ? s->current : NULL;
    if (kind == JOB_PROCESS && !s->env->first_batch_us) s->env->first_batch_us = clock_mono_us();
    __atomic_store_n(&s->job.started_us, 0, __ATOMIC_RELEASE);
    s->job_busy = 1;
    s->interrupted_ms = 0;
    if (kind == JOB_CLOSE) s->phase = SHARD_CLOSING;
    if (s->cfg->process_timeout_ms > 0 && kind != JOB_CLOSE) {
        ev_timer_set(&s->job_timer, (double)s->cfg->process_timeout_ms / 1000.0, 0.0);
        ev_timer_start(s->env->loop, &s->job_timer);
    }
    proc_pool_submit(s->env->pool, &s->job);
}

void shard_halt(shard_t *s, const char *why)
{
    s->phase = SHARD_HALTED;
    shard_set_str(&s->halt_error, why);
    shard_drop_pending(s);
    char q[2048];
    log_error("shard_halted", "stream=%s shard=%s worker=%s checkpoint=%s error=%s action=\"lease kept, nothing "
              "processed until restart\"", s->stream, s->id, s->env->worker_id,
              s->checkpointed ? s->checkpointed : "-", log_quote(why, q, sizeof q));
    ev_timer_set(&s->halt_timer, SHARD_HALT_REPEAT_S, SHARD_HALT_REPEAT_S);
    ev_timer_start(s->env->loop, &s->halt_timer);
    if (s->cfg->policy.halt_worker) s->env->halt_worker(s->env->ud, s);
}

static void shard_on_halt_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    shard_t *s = t->data;
    char q[2048];
    log_error("shard_still_halted", "stream=%s shard=%s error=%s", s->stream, s->id,
              log_quote(s->halt_error, q, sizeof q));
}

void shard_remember_done(shard_t *s, const batch_t *b, size_t i)
{
    shard_set_str(&s->done_seq, batch_seq(b, i));
    s->done_sub = b->recs[i].sub_seq;
}

static void shard_process_done(shard_t *s, proc_job_t *job)
{
    batch_t *b = s->current;
    if (s->phase == SHARD_LOST || s->phase == SHARD_CLOSING) {
        /* lease lost meanwhile: whatever it decided, no checkpoint */
    } else if (job->decision == DEC_ERROR || job->decision == DEC_FAILED) {
        if (job->decision == DEC_FAILED && job->index > 0) {
            s->stats.records += (int64_t)job->index;
            shard_remember_done(s, b, job->index - 1);
            shard_checkpoint(s, s->done_seq, s->done_sub);
        }
        shard_batch_failed(s, job);
    } else {
        s->stats.records += (int64_t)b->count;
        s->env->records += (int64_t)b->count;
        s->attempts = 0;
        s->fails_since_swap = 0;
        shard_remember_done(s, b, b->count - 1);
        if (job->decision == DEC_ALL) shard_checkpoint(s, s->done_seq, s->done_sub);
        else if (job->decision == DEC_AT) shard_checkpoint(s, batch_seq(b, job->index), b->recs[job->index].sub_seq);
    }
    shard_release_batch(s, s->current);
    s->current = NULL;
}

static void shard_ended_done(shard_t *s, proc_job_t *job)
{
    if (job->decision == DEC_ALL) {
        shard_write_checkpoint(s, SEQNUM_SHARD_END, 0);
        return;
    }
    const char *why = job->decision == DEC_ERROR ? job->error : "shardEnded did not return \"checkpoint\"";
    char q[2048];
    log_error("shard_stuck", "stream=%s shard=%s worker=%s error=%s action=\"children wait; shardEnded is called "
              "again in %d s\"", s->stream, s->id, s->env->worker_id, log_quote(why, q, sizeof q),
              SHARD_STUCK_RETRY_MS / 1000);
    ev_timer_stop(s->env->loop, &s->fetch_timer);
    ev_timer_set(&s->fetch_timer, SHARD_STUCK_RETRY_MS / 1000.0, 0.0);
    ev_timer_start(s->env->loop, &s->fetch_timer);
}

static void shard_shutdown_done(shard_t *s, proc_job_t *job)
{
    if (job->decision == DEC_ERROR) {
        char q[2048];
        log_error("shutdown_requested_failed", "stream=%s shard=%s error=%s action=\"no checkpoint\"", s->stream,
                  s->id, log_quote(job->error, q, sizeof q));
    } else if (job->decision == DEC_ALL && s->done_seq) {
        shard_checkpoint(s, s->done_seq, s->done_sub);
    }
    shard_flush_checkpoint(s);
    s->releasing = 1;
    shard_maybe_close(s);
}

void shard_job_done(shard_t *s, proc_job_t *job)
{
    s->job_busy = 0;
    ev_timer_stop(s->env->loop, &s->job_timer);
    switch (job->kind) {
    case JOB_INIT:
        if (job->decision == DEC_ERROR && s->phase == SHARD_INIT) {
            const policy_config_t *p = &s->cfg->policy;
            char why[4096], q[4096];
            snprintf(why, sizeof why, "initialize failed: %s%s%s", job->error, job->traceback ? "\n" : "",
                     job->traceback ? job->traceback : "");
            s->stats.batches_failed++;
            if (p->attempts < 0 || s->attempts < p->attempts) {
                s->attempts++;
                s->stats.retries++;
                int64_t delay = policy_backoff_ms(p, s->attempts, &s->seed);
                log_warn("initialize_failed", "stream=%s shard=%s attempt=%lld retry_in_ms=%lld error=%s", s->stream,
                         s->id, (long long)s->attempts, (long long)delay, log_quote(why, q, sizeof q));
                shard_retry_later(s, delay);
                return;
            }
            shard_halt(s, why); /* initialize cannot be skipped */
        } else if (s->phase == SHARD_INIT) {
            s->attempts = 0;
            s->initialized = 1;
            s->phase = SHARD_RUNNING;
        }
        break;
    case JOB_PROCESS: shard_process_done(s, job); break;
    case JOB_SHARD_ENDED: shard_ended_done(s, job); break;
    case JOB_SHUTDOWN:
        if (s->phase != SHARD_LOST) {
            shard_shutdown_done(s, job);
            return;
        }
        break; /* lost while shutdownRequested ran: no checkpoint; leaseLost follows */
    case JOB_LEASE_LOST: shard_submit(s, JOB_CLOSE); return;
    case JOB_CLOSE:
        s->lua_closed = 1;
        shard_maybe_free(s);
        return;
    }
    if (s->job_busy) return; /* the step above already started the next job (e.g. leaseLost) */
    if (s->phase == SHARD_STOPPING && !s->releasing) {
        shard_submit(s, JOB_SHUTDOWN);
        return;
    }
    if (s->phase == SHARD_LOST) {
        shard_submit(s, JOB_LEASE_LOST);
        return;
    }
    shard_dispatch(s);
    shard_maybe_fetch(s);
}

/* Starts the next job if the shard is free: a batch, or shardEnded at the end. */
void shard_dispatch(shard_t *s)
{
    if (s->job_busy || s->phase != SHARD_RUNNING || ev_is_active(&s->retry_timer) || s->final) return;
    if (s->retry) {
        s->current = s->retry;
        s->current_bisected = s->retry_bisected;
        s->retry = NULL;
        log_info("batch_retry", "stream=%s shard=%s first=%s count=%zu attempt=%lld", s->stream, s->id,
                 batch_seq(s->current, 0), s->current->count, (long long)s->attempts + 1);
        shard_submit(s, JOB_PROCESS);
        return;
    }
    if (s->head) {
        s->current = shard_dequeue(s, &s->current_bisected);
        shard_submit(s, JOB_PROCESS);
        shard_maybe_fetch(s);
        return;
    }
    if (s->fetch_ended && s->cp_seq) shard_flush_checkpoint(s); /* coalesced: write it now, not at the timer */
    if (s->fetch_ended && !s->cp_busy && !s->cp_seq) {
        s->phase = SHARD_ENDING;
        log_info("shard_end_reached", "stream=%s shard=%s", s->stream, s->id);
        shard_submit(s, JOB_SHARD_ENDED);
    }
}

/* ---- fetching -------------------------------------------------------------- */

static int shard_fetching(const shard_t *s)
{
    return s->phase == SHARD_INIT || s->phase == SHARD_RUNNING;
}

static void shard_fetch_later(shard_t *s, int64_t delay_ms)
{
    ev_timer_stop(s->env->loop, &s->fetch_timer);
    ev_timer_set(&s->fetch_timer, (double)delay_ms / 1000.0, 0.0);
    ev_timer_start(s->env->loop, &s->fetch_timer);
}

/* Drops records at or before the checkpoint we resumed from (a resume reads
 * AT the checkpoint's sequence number so a KPL aggregate can continue at the
 * next sub-record). */
static batch_t *shard_skip_done(shard_t *s, batch_t *b)
{
    if (!s->start_seq) return b;
    size_t skip = 0;
    while (skip < b->count &&
           seqnum_cmp_sub(batch_seq(b, skip), b->recs[skip].sub_seq, s->start_seq, s->start_sub) <= 0)
        skip++;
    if (skip < b->count || b->count == 0) {
        free(s->start_seq);
        s->start_seq = NULL;   /* past it: no more skipping */
    }
    if (!skip) return b;
    batch_t *rest = batch_slice(b, skip, b->count);
    batch_free(b);
    return rest;
}

static void shard_on_records(void *ud, source_records_t *res)
{
    shard_t *s = ud;
    s->fetch_busy = 0;
    if (!shard_fetching(s)) {
        batch_free(res->batch);
        free(res->next_iterator);
        if (s->phase == SHARD_CLOSING) shard_maybe_free(s);
        else shard_maybe_close(s);
        return;
    }
    if (res->error) {
        char q[1024];
        batch_free(res->batch);
        free(res->next_iterator);
        if (res->error == SOURCE_EEXPIRED) {
            log_info("iterator_expired", "stream=%s shard=%s", s->stream, s->id);
            free(s->iterator);
            s->iterator = NULL;
            s->iterator_wanted = 1;
            shard_maybe_fetch(s);
        } else if (res->error == SOURCE_ERETRY) {
            log_warn("fetch_retry", "stream=%s shard=%s error=%s", s->stream, s->id,
                     log_quote(res->message, q, sizeof q));
            shard_fetch_later(s, SHARD_RETRY_MS);
        } else {
            char why[1200];
            snprintf(why, sizeof why, "reading the shard failed (%s): %s", source_err_name(res->error),
                     res->message ? res->message : "");
            shard_halt(s, why);
        }
        return;
    }
    batch_t *b = shard_skip_done(s, res->batch);
    size_t n = b->count;
    if (n) {
        shard_set_str(&s->last_fetched, batch_seq(b, n - 1));
        s->last_fetched_sub = b->recs[n - 1].sub_seq;
        shard_enqueue(s, b);
    } else {
        batch_free(b);
    }
    free(s->iterator);
    s->iterator = res->next_iterator;
    s->stats.millis_behind = res->millis_behind;
    if (!s->iterator) s->fetch_ended = 1;
    s->caught_up = res->millis_behind == 0 && n < (size_t)s->cfg->max_records;
    /* Poll again at once while behind; idle between reads when caught up. */
    if (!s->fetch_ended && s->caught_up) shard_fetch_later(s, s->cfg->idle_time_between_reads_ms);
    shard_dispatch(s);
    shard_maybe_fetch(s);
}

static void shard_on_iterator(void *ud, source_err_t err, const char *msg, char *iterator)
{
    shard_t *s = ud;
    s->fetch_busy = 0;
    if (!shard_fetching(s)) {
        free(iterator);
        if (s->phase == SHARD_CLOSING) shard_maybe_free(s);
        else shard_maybe_close(s);
        return;
    }
    if (err) {
        char q[1024];
        if (err == SOURCE_ERETRY) {
            log_warn("iterator_retry", "stream=%s shard=%s error=%s", s->stream, s->id, log_quote(msg, q, sizeof q));
            shard_fetch_later(s, SHARD_RETRY_MS);
        } else {
            char why[1200];
            snprintf(why, sizeof why, "cannot get a shard iterator (%s): %s", source_err_name(err), msg ? msg : "");
            shard_halt(s, why);
        }
        return;
    }
    s->iterator_wanted = 0;
    s->iterator = iterator;
    shard_maybe_fetch(s);
}

/* Where to read from: after the last record fetched, else the checkpoint,
 * else the stream's initial position. */
static void shard_request_iterator(shard_t *s)
{
    source_position_t pos = {0};
    const char *from = s->last_fetched ? s->last_fetched : s->checkpointed;
    int64_t sub = s->last_fetched ? s->last_fetched_sub : s->start_sub;
    if (from && seqnum_valid(from)) {
        pos.kind = POS_AT_SEQUENCE;
        pos.seq = from;
        shard_set_str(&s->start_seq, from);
        s->start_sub = sub;
    } else if (from && !strcmp(from, SEQNUM_LATEST)) {
        pos.kind = POS_LATEST;
    } else if (from && !strcmp(from, SEQNUM_AT_TIMESTAMP)) {
        pos.kind = POS_AT_TIMESTAMP;
        pos.timestamp_ms = s->cfg->initial_timestamp_ms;
    } else {
        pos.kind = POS_TRIM_HORIZON;
    }
    s->fetch_busy = 1;
    source_get_iterator(s->env->source, s->stream, s->id, &pos, shard_on_iterator, s);
}

static void shard_maybe_fetch(shard_t *s)
{
    if (!shard_fetching(s) || s->fetch_busy || s->fetch_ended || ev_is_active(&s->fetch_timer)) return;
    if (!s->iterator) {
        if (s->iterator_wanted) shard_request_iterator(s);
        return;
    }
    if (s->queued >= (size_t)s->cfg->prefetch_batches) return;
    if (s->env->buffered_bytes >= s->env->max_buffered_bytes && s->queued > 0) {
        shard_fetch_later(s, SHARD_BUFFER_WAIT_MS);
        return;
    }
    int64_t now = clock_mono_ms();
    if (now < s->next_fetch_ms) {
        shard_fetch_later(s, s->next_fetch_ms - now);
        return;
    }
    s->next_fetch_ms = now + s->env->min_poll_interval_ms;
    s->fetch_busy = 1;
    source_get_records(s->env->source, s->stream, s->id, s->iterator, (size_t)s->cfg->max_records,
                       shard_on_records, s);
}

static void shard_on_fetch_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    shard_t *s = t->data;
    if (s->phase == SHARD_ENDING && !s->job_busy) {
        shard_submit(s, JOB_SHARD_ENDED); /* shardEnded again after it did not checkpoint */
        return;
    }
    shard_maybe_fetch(s);
}

/* ---- life ------------------------------------------------------------------ */

shard_t *shard_new(shard_env_t *env, const config_stream_t *cfg, proc_script_t *script, const lease_t *lease)
{
    shard_t *s = xcalloc(1, sizeof *s); /* owned by the worker: shard_free */
    s->env = env;
    s->cfg = cfg;
    s->key = xstrdup(lease->key);
    s->stream = xstrdup(cfg->name);
    s->id = xstrdup(lease->shard);
    s->checkpointed = xstrdup(lease->checkpoint);
    s->start_sub = lease->checkpoint_sub;
    s->iterator_wanted = 1;
    proc_shard_info_t info = {cfg->name, lease->shard, lease->checkpoint, env->worker_id};
    proc_limits_t limits = {cfg->process_timeout_ms, cfg->memory_limit_mb};
    s->ps = proc_state_new(script, &info, &limits, env->lua_path, env->nlua_path);
    proc_script_ref(script);
    s->script = script;
    ev_timer_init(&s->fetch_timer, shard_on_fetch_timer, 0.0, 0.0);
    ev_timer_init(&s->job_timer, shard_on_job_timer, 0.0, 0.0);
    ev_timer_init(&s->cp_timer, shard_on_cp_timer, 0.0, 0.0);
    ev_timer_init(&s->halt_timer, shard_on_halt_timer, 0.0, 0.0);
    ev_timer_init(&s->retry_timer, shard_on_retry_timer, 0.0, 0.0);
    s->fetch_timer.data = s->job_timer.data = s->cp_timer.data = s->halt_timer.data = s->retry_timer.data = s;
    s->seed = (unsigned)clock_mono_us() ^ (unsigned)(uintptr_t)s;
    return s;
}

void shard_start(shard_t *s)
{
    log_info("shard_started", "stream=%s shard=%s worker=%s checkpoint=%s", s->stream, s->id, s->env->worker_id,
             s->checkpointed ? s->checkpointed : "-");
    shard_submit(s, JOB_INIT);
    shard_maybe_fetch(s); /* the first iterator and batch come while initialize runs */
}

void shard_lost(shard_t *s)
{
    if (s->phase == SHARD_LOST || s->phase == SHARD_CLOSING) return;
    log_warn("shard_lease_lost", "stream=%s shard=%s worker=%s action=\"leaseLost, no further checkpoint\"",
             s->stream, s->id, s->env->worker_id);
    s->phase = SHARD_LOST;
    ev_timer_stop(s->env->loop, &s->fetch_timer);
    ev_timer_stop(s->env->loop, &s->cp_timer);
    ev_timer_stop(s->env->loop, &s->halt_timer);
    ev_timer_stop(s->env->loop, &s->retry_timer);
    free(s->cp_seq);
    s->cp_seq = NULL;
    shard_drop_pending(s);
    if (!s->job_busy) shard_submit(s, JOB_LEASE_LOST);
}

void shard_shutdown(shard_t *s)
{
    if (s->phase == SHARD_LOST || s->phase == SHARD_CLOSING || s->phase == SHARD_STOPPING) return;
    shard_phase_t was = s->phase;
    s->phase = SHARD_STOPPING;
    ev_timer_stop(s->env->loop, &s->fetch_timer);
    ev_timer_stop(s->env->loop, &s->halt_timer);
    ev_timer_stop(s->env->loop, &s->retry_timer);
    shard_drop_pending(s);
    if (s->job_busy) return; /* the in-flight job finishes first, then shutdownRequested */
    if (was == SHARD_HALTED || !s->initialized) {
        /* no shutdownRequested for a shard that never ran or stopped on an error */
        shard_flush_checkpoint(s);
        s->releasing = 1;
        shard_maybe_close(s);
        return;
    }
    shard_submit(s, JOB_SHUTDOWN);
}

void shard_handoff(shard_t *s)
{
    if (s->phase == SHARD_LOST || s->phase == SHARD_CLOSING || s->phase == SHARD_STOPPING) return;
    log_info("shard_handoff", "stream=%s shard=%s worker=%s action=\"finish batch, shutdownRequested, checkpoint, "
             "hand over\"", s->stream, s->id, s->env->worker_id);
    s->handoff = 1;
    shard_shutdown(s);
}

/* A stopping shard closes once its checkpoints are written and its fetches
 * are back; then its lease is released. */
static void shard_maybe_close(shard_t *s)
{
    if (!s->releasing || s->phase == SHARD_CLOSING || s->job_busy || s->cp_busy || s->cp_seq) return;
    s->releasing = 0;
    if (s->handoff) lease_coord_handoff(s->env->coord, s->key, NULL, NULL);
    else lease_coord_release(s->env->coord, s->key, NULL, NULL);
    shard_submit(s, JOB_CLOSE);
}

char *shard_describe(const shard_t *s, const char *reload_error)
{
    cJSON *o = cJSON_CreateObject();
    const shard_stats_t *st = &s->stats;
    proc_script_t *script = proc_state_script(s->ps);
    cJSON_AddStringToObject(o, "state", shard_phase_name(s->phase));
    if (s->halt_error) cJSON_AddStringToObject(o, "error", s->halt_error);
    if (script) {
        cJSON_AddStringToObject(o, "version", script->hash);
        cJSON_AddNumberToObject(o, "loadedAtMs", (double)script->loaded_ms);
    }
    if (reload_error) cJSON_AddStringToObject(o, "reloadError", reload_error);
    cJSON_AddNumberToObject(o, "millisBehind", (double)st->millis_behind);
    cJSON_AddNumberToObject(o, "records", (double)st->records);
    cJSON_AddNumberToObject(o, "batchesFailed", (double)st->batches_failed);
    cJSON_AddNumberToObject(o, "retries", (double)st->retries);
    cJSON_AddNumberToObject(o, "skipped", (double)st->skipped);
    cJSON_AddNumberToObject(o, "deadLettered", (double)st->dead_lettered);
    cJSON_AddNumberToObject(o, "timeouts", (double)st->timeouts);
    cJSON_AddNumberToObject(o, "memoryCapHits", (double)st->memory_cap_hits);
    char *json = cJSON_PrintUnformatted(o); /* freed by the caller */
    cJSON_Delete(o);
    if (!json) xalloc_oom(0);
    return json;
}

int shard_caught_up(shard_t *s)
{
    if (s->phase == SHARD_HALTED) return 1;
    int idle = s->phase == SHARD_RUNNING && !s->job_busy && !s->head && !s->fetch_busy && s->caught_up &&
               !s->fetch_ended && !s->retry && !s->final && !ev_is_active(&s->retry_timer);
    /* caught up but for a coalesced checkpoint: write it now rather than at its timer */
    if (idle && s->cp_seq) shard_flush_checkpoint(s);
    return idle && !s->cp_busy && !s->cp_seq;
}

void shard_free(shard_t *s)
{
    if (!s) return;
    ev_timer_stop(s->env->loop, &s->fetch_timer);
    ev_timer_stop(s->env->loop, &s->job_timer);
    ev_timer_stop(s->env->loop, &s->cp_timer);
    ev_timer_stop(s->env->loop, &s->halt_timer);
    ev_timer_stop(s->env->loop, &s->retry_timer);
    shard_drop_pending(s);
    shard_release_batch(s, s->current);
    proc_job_reset(&s->job);
    proc_state_free(s->ps);
    proc_script_unref(s->script);
    proc_script_unref(s->previous);
    free(s->key);
    free(s->stream);
    free(s->id);
    free(s->iterator);
    free(s->start_seq);
    free(s->last_fetched);
    free(s->done_seq);
    free(s->checkpointed);
    free(s->cp_seq);
    free(s->halt_error);
    free(s->final_error);
    free(s->final_tb);
    free(s->dl_lines);
    free(s->dl_recs);
    free(s);
}
