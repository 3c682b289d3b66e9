/* shard: the state machine of one owned shard (see shard.h for the states
 * and their transitions).
 *
 * Longer than the ~800 lines a file here usually keeps to, on purpose: the
 * states, the one place they change (shard_transition), the one function
 * that starts work (shard_step) and every event handler stay in one file,
 * so the whole life of a shard reads in one place and no other module
 * shares its private struct. What is not the state machine lives beside it:
 * the queue of pieces (pieces.c), reading ahead (fetch.c), checkpoints
 * (checkpoint.c), the policy's decisions (policy.c, breaker.c), dead
 * letters (deadletter.c), emitted records (output.c), onTimer's clock
 * (ticker.c) and the batching window (gather.c). */
#include "shard.h"

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/xalloc.h"
#include "checkpoint.h"
#include "gather.h"
#include "pieces.h"
#include "policy.h"
#include "record/seqnum.h"
#include "ticker.h"

#define SHARD_RETRY_MS 1000          /* after a transient read error */
#define SHARD_STUCK_RETRY_MS 10000   /* shardEnded did not checkpoint */
#define SHARD_HALT_REPEAT_MS 60000   /* a halted shard says so every minute */
#define SHARD_STUCK_GRACE_MS 5000    /* after an interrupt, before the worker gives up on the thread */

struct shard {
    shard_env_t *env;
    const config_stream_t *cfg;
    char *key, *stream, *id;
    shard_state_t state;
    proc_state_t *ps;
    proc_script_t *script;       /* the version this shard should run */
    proc_script_t *previous;     /* the one before a hot reload (rollback) */
    breaker_t *breaker;          /* the stream's */
    int64_t fails_since_swap;    /* failed batches in a row since the swap */
    unsigned seed;

    /* facts the state machine reads */
    int initialized;             /* initialize() succeeded in the current Lua state */
    int called_shutdown;         /* STOPPING: shutdownRequested() has run (or is not due) */
    int called_lease_lost;       /* LOST: leaseLost() has run (or is not due) */
    int ended_ok;                /* ENDING: shardEnded() returned "checkpoint" */
    int handoff;                 /* RELEASING ends with a handoff, not a release */
    int lua_closed;              /* CLOSING: the Lua state is closed */
    int stepping, step_again;    /* shard_step re-entrancy */

    /* operations out: each answer calls shard_step */
    proc_job_t job;              /* at most one; job_busy while it is out */
    int job_busy;
    int dl_busy;                 /* a dead-letter send for `final` */
    fetcher_t fetch;
    checkpoint_t cp;
    outputs_t out;               /* emitted records being put; the checkpoint waits for them */

    /* records */
    pieces_t queue;              /* fetched, waiting */
    piece_t *current;            /* in processRecords */
    piece_t *final;              /* given up on: being dead-lettered (or waiting to be again) */
    char *final_error, *final_tb;
    int64_t final_sends;
    char *done_seq;              /* the last record finished (processed, skipped or dead-lettered) */
    int64_t done_sub;
    int held;                    /* records up to done_seq were processed without a checkpoint asked for */

    /* timers */
    sched_timer_t wait_timer;    /* the next step waits until it fires: retry backoff, shardEnded again */
    sched_timer_t job_timer;     /* process_timeout_ms */
    sched_timer_t halt_timer;
    ticker_t tick;               /* timer_interval_ms: onTimer is due */
    sched_timer_t gather_timer;  /* max_batching_window_ms: the gathered records go when it fires */
    int64_t interrupted_ms;      /* when the running job was interrupted (0: not) */
    int64_t wait_until_ms;       /* when wait_timer fires (for status) */

    char *halt_error;
    char *halt_first, *halt_last;  /* the records the shard halted at (for `resume --skip`), or NULL */
    int64_t halt_last_sub;
    size_t halt_count;
    char *control_seen;          /* the last shardrunControl request handled (or there at the take) */
    char *last_error;            /* of the last failed call, for status while retrying */
    shard_stats_t stats;
    shard_metrics_t metrics;     /* the same events as Prometheus series (shard_metrics.h) */
};

static void shard_step(shard_t *s);

const char *shard_state_name(shard_state_t st)
{
    static const char *const names[] = {"initializing", "processing", "halted", "ending",
                                        "stopping", "releasing", "lost", "closing"};
    return names[st];
}

const char *shard_key(const shard_t *s) { return s->key; }
const char *shard_id(const shard_t *s) { return s->id; }
const char *shard_stream(const shard_t *s) { return s->stream; }
shard_state_t shard_state(const shard_t *s) { return s->state; }
proc_state_t *shard_proc(shard_t *s) { return s->ps; }
int shard_outputs_busy(const shard_t *s) { return outputs_busy(&s->out); }
const shard_stats_t *shard_stats(const shard_t *s) { return &s->stats; }

/* ---- the one place states change ------------------------------------------- */

static int shard_transition_allowed(shard_state_t from, shard_state_t to)
{
    switch (from) {
    case SHARD_STARTING: return to == SHARD_RUNNING || to == SHARD_HALTED || to == SHARD_STOPPING || to == SHARD_LOST;
    case SHARD_RUNNING: return to == SHARD_HALTED || to == SHARD_ENDING || to == SHARD_STOPPING || to == SHARD_LOST;
    case SHARD_HALTED:
        return to == SHARD_RUNNING || to == SHARD_STARTING || to == SHARD_STOPPING || to == SHARD_LOST;
    case SHARD_ENDING: return to == SHARD_RELEASING || to == SHARD_STOPPING || to == SHARD_LOST;
    case SHARD_STOPPING: return to == SHARD_RELEASING || to == SHARD_LOST;
    case SHARD_RELEASING: return to == SHARD_CLOSING || to == SHARD_LOST;
    case SHARD_LOST: return to == SHARD_CLOSING;
    case SHARD_CLOSING: return 0;
    }
    return 0;
}

static void shard_transition(shard_t *s, shard_state_t to)
{
    if (!shard_transition_allowed(s->state, to)) {
        log_error("internal_error", "stream=%s shard=%s what=\"illegal shard state transition\" from=%s to=%s",
                  s->stream, s->id, shard_state_name(s->state), shard_state_name(to));
        abort();
    }
    log_debug("shard_state", "stream=%s shard=%s from=%s to=%s", s->stream, s->id, shard_state_name(s->state),
              shard_state_name(to));
    s->state = to;
    shard_metrics_halted(&s->metrics, to == SHARD_HALTED);
}

/* ---- checkpoints ----------------------------------------------------------- */

static void shard_cp_answered(void *ud, lease_status_t st)
{
    shard_t *s = ud;
    /* LEASE_CONFLICT: the coordinator reports the loss itself (shard_lost). */
    if (st == LEASE_OK) shard_metrics_checkpoint(&s->metrics);
    checkpoint_answered(&s->cp, st == LEASE_OK);
    shard_step(s);
}

static void shard_cp_write(void *ud, const char *seq, int64_t sub)
{
    shard_t *s = ud;
    log_debug("checkpoint", "stream=%s shard=%s seq=%s sub=%lld", s->stream, s->id, seq, (long long)sub);
    lease_coord_checkpoint(s->env->coord, s->key, seq, sub, shard_cp_answered, s);
}

/* Records up to (and including) record i of b are finished. */
static void shard_finished(shard_t *s, const batch_t *b, size_t i)
{
    xstrset(&s->done_seq, batch_seq(b, i));
    s->done_sub = b->recs[i].sub_seq;
}

/* Checkpoints the last finished record, unless the script holds records it
 * processed without asking for a checkpoint (a buffering processor): the
 * policy's skips and dead letters then wait for the script's own checkpoint. */
static void shard_checkpoint_done(shard_t *s)
{
    if (s->done_seq && !s->held) checkpoint_request(&s->cp, s->done_seq, s->done_sub);
}

/* ---- jobs ------------------------------------------------------------------ */

static void shard_on_job_timer(sched_timer_t *t)
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
        log_error("processor_stuck", "stream=%s shard=%s seconds=%lld action=\"exit 1: lease expires, a peer takes "
                  "over\"", s->stream, s->id, (long long)(clock_mono_ms() - s->interrupted_ms) / 1000);
        s->env->halt_worker(s->env->ud, s);
        return;
    }
    if (started && ran >= limit) {
        log_warn("process_timeout", "stream=%s shard=%s timeout_ms=%lld", s->stream, s->id,
                 (long long)s->cfg->process_timeout_ms);
        proc_interrupt(s->ps);
        s->interrupted_ms = clock_mono_ms();
        sched_timer_start(s->env->sched, t, SHARD_STUCK_GRACE_MS);
        return;
    }
    /* still queued behind other shards, or started late: check again when it is due */
    sched_timer_start(s->env->sched, t, (limit - ran) / 1000 + 1);
}

static void shard_submit(shard_t *s, proc_job_kind_t kind, piece_t *p)
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
    s->job.batch = p ? p->batch : NULL;
    s->current = p;
    if (kind == JOB_PROCESS && !s->env->first_batch_us) s->env->first_batch_us = clock_mono_us();
    __atomic_store_n(&s->job.started_us, 0, __ATOMIC_RELEASE);
    s->job_busy = 1;
    s->interrupted_ms = 0;
    if (s->cfg->process_timeout_ms > 0 && kind != JOB_CLOSE)
        sched_timer_start(s->env->sched, &s->job_timer, s->cfg->process_timeout_ms);
    s->env->submit(s->env->ud, &s->job);
}

/* The next step waits until delay_ms from now (a retry's backoff, ...). */
static void shard_wait(shard_t *s, int64_t delay_ms)
{
    s->wait_until_ms = clock_wall_ms() + delay_ms;
    sched_timer_start(s->env->sched, &s->wait_timer, delay_ms);
}

static void shard_on_wait_timer(sched_timer_t *t)
{
    shard_step(t->data);
}

/* ---- halting --------------------------------------------------------------- */

static void shard_on_halt_timer(sched_timer_t *t)
{
    shard_t *s = t->data;
    char q[2048];
    log_error("shard_still_halted", "stream=%s shard=%s error=%s", s->stream, s->id,
              log_quote(s->halt_error, q, sizeof q));
    sched_timer_start(s->env->sched, t, SHARD_HALT_REPEAT_MS);
}

void shard_halt(shard_t *s, const char *why)
{
    if (s->state != SHARD_STARTING && s->state != SHARD_RUNNING) return;
    shard_transition(s, SHARD_HALTED);
    xstrset(&s->halt_error, why);
    fetch_stop(&s->fetch);
    pieces_drop_all(&s->queue);
    sched_timer_stop(s->env->sched, &s->wait_timer);
    char q[2048];
    int64_t sub;
    const char *cp = checkpoint_written(&s->cp, &sub);
    log_error("shard_halted", "stream=%s shard=%s worker=%s checkpoint=%s error=%s action=\"lease kept, nothing "
              "processed until the script changes or `shardrun resume`\"", s->stream, s->id, s->env->worker_id, cp,
              log_quote(why, q, sizeof q));
    sched_timer_start(s->env->sched, &s->halt_timer, SHARD_HALT_REPEAT_MS);
    if (s->cfg->policy.halt_worker) s->env->halt_worker(s->env->ud, s);
}

/* The records a halt stops at, for `shardrun resume --skip`. */
static void shard_remember_halt_at(shard_t *s, const piece_t *p)
{
    xstrset(&s->halt_first, piece_first(p));
    xstrset(&s->halt_last, piece_last(p));
    s->halt_last_sub = p->batch->recs[p->batch->count - 1].sub_seq;
    s->halt_count = p->batch->count;
}

static void shard_forget_halt_at(shard_t *s)
{
    xstrset(&s->halt_first, NULL);
    xstrset(&s->halt_last, NULL);
    s->halt_count = 0;
}

/* ---- the error policy's steps ------------------------------------------------ */

/* reload.rollback_after_failures: a new version that fails N batches in a
 * row on this shard gives way to the previous one, on this shard. */
static void shard_maybe_rollback(shard_t *s)
{
    int64_t n = s->env->rollback_after_failures;
    if (n <= 0 || !s->previous || ++s->fails_since_swap < n) return;
    log_warn("reload_rolled_back", "stream=%s shard=%s from=%s to=%s failures=%lld", s->stream, s->id,
             s->script->hash, s->previous->hash, (long long)s->fails_since_swap);
    shard_metrics_rolled_back(&s->metrics);
    proc_script_t *bad = s->script;
    s->script = s->previous;
    s->previous = NULL;
    s->fails_since_swap = 0;
    proc_state_set_script(s->ps, s->script);
    proc_script_unref(bad);
}

/* A piece is finished with by the policy (skipped or dead-lettered). */
static void shard_piece_given_up(shard_t *s, piece_t *p)
{
    shard_finished(s, p->batch, p->batch->count - 1);
    shard_checkpoint_done(s);
    pieces_free(&s->queue, p);
}

static void shard_dead_letter_done(void *ud, const deadletter_result_t *r);

static void shard_dead_letter_send(shard_t *s)
{
    piece_t *p = s->final;
    deadletter_info_t info = {s->stream, s->id, s->env->worker_id, s->final_error, s->final_tb, p->failures};
    s->dl_busy = 1;
    s->final_sends++;
    deadletter_send(s->env->dead_letters, &s->cfg->policy, &info, p->batch, shard_dead_letter_done, s);
}

static void shard_dead_letter_done(void *ud, const deadletter_result_t *r)
{
    shard_t *s = ud;
    piece_t *p = s->final;
    char q[1024];
    s->dl_busy = 0;
    if (s->state == SHARD_LOST || s->state == SHARD_CLOSING || s->state == SHARD_HALTED) {
        s->final = NULL; /* nothing checkpointed past them: the next owner reads them again */
        pieces_free(&s->queue, p);
    } else if (r->status == DEADLETTER_SENT) {
        s->final = NULL;
        s->stats.dead_lettered += (int64_t)p->batch->count;
        shard_metrics_dead_lettered(&s->metrics, p->batch->count);
        s->stats.dead_letter_data_omitted += (int64_t)r->data_omitted;
        log_warn("records_dead_lettered", "stream=%s shard=%s first=%s last=%s count=%zu destination=%s "
                 "data_omitted=%zu error=%s", s->stream, s->id, piece_first(p), piece_last(p), p->batch->count,
                 r->destination, r->data_omitted, log_quote(s->final_error, q, sizeof q));
        shard_piece_given_up(s, p);
    } else if (r->status == DEADLETTER_ERETRY && s->state == SHARD_RUNNING) {
        int64_t delay = policy_backoff_ms(&s->cfg->policy, s->final_sends, &s->seed);
        log_error("dead_letter_failed", "stream=%s shard=%s first=%s last=%s count=%zu destination=%s attempt=%lld "
                  "retry_in_ms=%lld error=%s action=\"no checkpoint past these records\"", s->stream, s->id,
                  piece_first(p), piece_last(p), p->batch->count, r->destination, (long long)s->final_sends,
                  (long long)delay, log_quote(r->message, q, sizeof q));
        shard_wait(s, delay); /* shard_step sends again when it fires */
    } else {
        char why[2048];
        snprintf(why, sizeof why, "dead-lettering records %s..%s failed: %s", piece_first(p), piece_last(p),
                 r->message ? r->message : "failed");
        log_error("dead_letter_failed", "stream=%s shard=%s first=%s last=%s count=%zu destination=%s attempt=%lld "
                  "error=%s action=\"%s; no checkpoint past these records\"", s->stream, s->id, piece_first(p),
                  piece_last(p), p->batch->count, r->destination, (long long)s->final_sends,
                  log_quote(r->message, q, sizeof q), s->state == SHARD_RUNNING ? "halt" : "stop");
        s->final = NULL;
        pieces_free(&s->queue, p);
        shard_halt(s, why);
    }
    shard_step(s);
}

/* The records of p that the policy gave up on: skip, dead-letter or halt. */
static void shard_final(shard_t *s, piece_t *p, const char *error, const char *tb)
{
    const policy_config_t *pol = &s->cfg->policy;
    char q[2048];
    if ((pol->final == FINAL_SKIP || pol->final == FINAL_DEAD_LETTER) && breaker_give_up(s->breaker, p->batch->count)) {
        /* most records fail: stop giving them up; they wait here for the
         * worker's verdict (a rollback retries them, or the stream halts) */
        char why[1024];
        snprintf(why, sizeof why, "poison-rate breaker: more than %.0f%% of the last %zu records of stream %s failed "
                 "(%.0f%% before records %s..%s); nothing more is skipped or dead-lettered",
                 s->breaker->threshold * 100, s->breaker->window, s->stream, breaker_share(s->breaker) * 100,
                 piece_first(p), piece_last(p));
        s->stats.breaker_trips++;
        shard_remember_halt_at(s, p); /* should the worker halt the stream */
        shard_metrics_breaker_trip(&s->metrics);
        pieces_push_front(&s->queue, p);
        log_error("breaker_tripped", "stream=%s shard=%s window=%zu threshold=%.2f first=%s last=%s error=%s",
                  s->stream, s->id, s->breaker->window, s->breaker->threshold, piece_first(p), piece_last(p),
                  log_quote(error, q, sizeof q));
        s->env->tripped(s->env->ud, s, why);
        return;
    }
    if (pol->final == FINAL_HALT) {
        char why[4096];
        snprintf(why, sizeof why, "%s%s%s (records %s..%s, %zu records, attempts %lld)", error,
                 tb && *tb ? "\n" : "", tb ? tb : "", piece_first(p), piece_last(p), p->batch->count,
                 (long long)p->failures);
        shard_remember_halt_at(s, p);
        pieces_free(&s->queue, p);
        shard_halt(s, why);
        return;
    }
    if (pol->final == FINAL_DEAD_LETTER) {
        s->final = p;
        s->final_sends = 0;
        xstrset(&s->final_error, error);
        xstrset(&s->final_tb, tb ? tb : "");
        shard_dead_letter_send(s);
        return;
    }
    s->stats.skipped += (int64_t)p->batch->count;
    shard_metrics_skipped(&s->metrics, p->batch->count);
    log_warn("records_skipped", "stream=%s shard=%s first=%s last=%s count=%zu attempts=%lld error=%s", s->stream,
             s->id, piece_first(p), piece_last(p), p->batch->count, (long long)p->failures,
             log_quote(error, q, sizeof q));
    shard_piece_given_up(s, p);
}

/* A call on piece p failed (p->failures counts it): retry, split or final. */
static void shard_piece_failed(shard_t *s, piece_t *p, const char *error, const char *tb)
{
    const policy_config_t *pol = &s->cfg->policy;
    policy_failure_t f = {p->batch->count, p->failures, p->batch->recs[0].arrival_ms, clock_wall_ms()};
    policy_step_t step = policy_next(pol, &f);
    char q[2048], tq[2048]; /* one buffer per quoted field: both are read when the line is written */
    xstrset(&s->last_error, error);
    log_warn("batch_failed", "stream=%s shard=%s first=%s last=%s count=%zu attempt=%lld next=%s error=%s%s%s",
             s->stream, s->id, piece_first(p), piece_last(p), p->batch->count, (long long)p->failures,
             policy_step_name(step), log_quote(error, q, sizeof q), tb && *tb ? " traceback=" : "",
             tb && *tb ? log_quote(tb, tq, sizeof tq) : "");
    if (step == POLICY_RETRY) {
        s->stats.retries++;
        shard_metrics_retry(&s->metrics);
        pieces_push_front(&s->queue, p);
        shard_wait(s, policy_backoff_ms(pol, p->failures, &s->seed));
        return;
    }
    if (step == POLICY_SPLIT) {
        size_t n = p->batch->count, half = n / 2;
        piece_t *second = pieces_slice(&s->queue, p, half, n, policy_split_failures(pol, n - half));
        piece_t *first = pieces_slice(&s->queue, p, 0, half, policy_split_failures(pol, half));
        pieces_free(&s->queue, p);
        pieces_push_front(&s->queue, second);
        pieces_push_front(&s->queue, first);
        return;
    }
    shard_final(s, p, error, tb);
}

/* ---- stream processing: emitted records, onTimer, the batching window -------- */

/* The records a call emitted go to the outputs, numbered; checkpoints asked
 * for from now on wait for them. A call that raised emitted nothing: its
 * records are processed again (or given up on) and emit again. */
static void shard_take_emits(shard_t *s, proc_job_t *job)
{
    if (!job->emits.count) return;
    if (job->decision == DEC_ERROR || s->state == SHARD_LOST || s->state == SHARD_CLOSING) {
        emitbuf_clear(&job->emits);
        return;
    }
    const char *from = job->kind == JOB_PROCESS && s->current ? piece_last(s->current)
                       : s->done_seq                          ? s->done_seq
                                                              : checkpoint_written(&s->cp, NULL);
    outputs_add(&s->out, &job->emits, from);
    checkpoint_emitted(&s->cp, outputs_emitted(&s->out));
}

/* onTimer answered: "checkpoint" is the last record processed; a position
 * must be one the shard processed. A failure is logged: the next tick calls
 * onTimer again. */
static void shard_timer_done(shard_t *s, proc_job_t *job)
{
    if (s->state == SHARD_LOST || s->state == SHARD_CLOSING) return;
    int64_t done_sub = s->done_sub;
    const char *done = s->done_seq ? s->done_seq : checkpoint_written(&s->cp, &done_sub);
    const char *why = job->decision == DEC_ERROR ? job->error : NULL;
    char past[512], q[2048], tq[2048];
    if (!why && job->decision == DEC_AT && checkpoint_cmp(job->cp_seq, job->cp_sub, done, done_sub) > 0) {
        snprintf(past, sizeof past, "onTimer: checkpoint at %s (sub %lld) is past the last record processed, %s "
                 "(sub %lld)", job->cp_seq, (long long)job->cp_sub, done, (long long)done_sub);
        why = past;
    }
    if (why) {
        s->stats.timer_failures++;
        log_error("timer_failed", "stream=%s shard=%s error=%s%s%s action=\"no checkpoint; onTimer runs again at "
                  "the next tick\"", s->stream, s->id, log_quote(why, q, sizeof q),
                  job->traceback ? " traceback=" : "", job->traceback ? log_quote(job->traceback, tq, sizeof tq) : "");
        return;
    }
    if (job->decision == DEC_ALL && s->done_seq) {
        s->held = 0;
        checkpoint_request(&s->cp, s->done_seq, s->done_sub);
    } else if (job->decision == DEC_AT) {
        if (checkpoint_cmp(job->cp_seq, job->cp_sub, done, done_sub) == 0) s->held = 0;
        checkpoint_request(&s->cp, job->cp_seq, job->cp_sub);
    }
}

/* Emitted records: an output given up on halts the shard, and no
 * checkpoint that waits for its lost records is ever written (they are cut
 * at every step, as a call that was running may ask for one); the
 * acknowledged ones let checkpoints go; puts start. */
static void shard_outputs_step(shard_t *s)
{
    if (s->state == SHARD_LOST || s->state == SHARD_CLOSING) {
        outputs_drop(&s->out);
        return;
    }
    uint64_t lost;
    const char *why = outputs_failed(&s->out, &lost);
    if (why) {
        checkpoint_cut(&s->cp, lost);
        shard_halt(s, why);
    }
    checkpoint_acked(&s->cp, outputs_acked(&s->out));
    outputs_poke(&s->out);
}

/* Resuming after an output was given up on: its records are forgotten and
 * processing goes on from where the checkpoint will be, so every input
 * after it is processed, and emits, again. */
static void shard_outputs_resume(shard_t *s)
{
    uint64_t lost;
    if (!outputs_failed(&s->out, &lost)) return;
    checkpoint_cut(&s->cp, lost);
    outputs_abandon(&s->out);
    int64_t sub;
    const char *at = checkpoint_latest(&s->cp, &sub);
    xstrset(&s->done_seq, seqnum_valid(at) ? at : NULL);
    s->done_sub = sub;
    s->held = 0;
}

static void shard_on_output(void *ud)
{
    shard_step(ud);
}

static void shard_on_tick(void *ud)
{
    shard_step(ud);
}

static void shard_on_gather_timer(sched_timer_t *t)
{
    shard_step(t->data);
}

/* Unacknowledged outputs past max_emit_buffer_mb hold the next batch (and
 * onTimer); nothing unacknowledged never holds anything. */
static int shard_outputs_full(const shard_t *s)
{
    size_t bytes = outputs_bytes(&s->out);
    return bytes > 0 && bytes >= (size_t)s->cfg->max_emit_buffer_mb * 1024 * 1024;
}

static void shard_tick(shard_t *s)
{
    ticker_take(&s->tick);
    s->job.now_ms = clock_wall_ms();
    shard_submit(s, JOB_TIMER, NULL);
}

/* The batching window: 1 while the records at the head wait for more (the
 * gather timer then wakes the step). */
static int shard_gathering(shard_t *s)
{
    const piece_t *head = s->queue.head;
    gather_view_t v = {s->cfg->max_batching_window_ms, (size_t)s->cfg->min_batch_records, pieces_fresh(&s->queue),
                       head->fetched_ms, head->failures > 0, fetch_ended(&s->fetch), sched_now_ms(s->env->sched)};
    int64_t wait = gather_wait_ms(&v);
    if (wait > 0 && !sched_timer_active(&s->gather_timer)) sched_timer_start(s->env->sched, &s->gather_timer, wait);
    return wait > 0;
}

/* ---- results of jobs ---------------------------------------------------------- */

static void shard_process_done(shard_t *s, proc_job_t *job)
{
    piece_t *p = s->current;
    s->current = NULL;
    const batch_t *b = p->batch;
    size_t n = b->count;
    if (job->timed_out) s->stats.timeouts++;
    if (job->out_of_memory) s->stats.memory_cap_hits++;
    shard_metrics_job(&s->metrics, job);
    if (s->state == SHARD_LOST) {
        pieces_free(&s->queue, p); /* whatever it decided: no checkpoint */
        return;
    }
    if (job->decision != DEC_ERROR && job->decision != DEC_FAILED) {
        breaker_processed(s->breaker, n);
        s->stats.records += (int64_t)n;
        s->env->records += (int64_t)n;
        shard_metrics_records(&s->metrics, b, n, clock_wall_ms());
        s->fails_since_swap = 0;
        shard_finished(s, b, n - 1);
        if (job->decision == DEC_ALL) {
            s->held = 0;
            checkpoint_request(&s->cp, s->done_seq, s->done_sub);
        } else if (job->decision == DEC_AT) {
            s->held = job->index < n - 1;
            checkpoint_request(&s->cp, batch_seq(b, job->index), b->recs[job->index].sub_seq);
        } else {
            s->held = 1;
        }
        pieces_free(&s->queue, p);
        return;
    }
    s->stats.batches_failed++;
    shard_metrics_job_failed(&s->metrics, job);
    shard_maybe_rollback(s);
    const char *error = job->error ? job->error : "error";
    if (s->state != SHARD_RUNNING) { /* stopping, or halted meanwhile: no retries */
        char q[2048];
        log_warn("batch_failed", "stream=%s shard=%s first=%s last=%s count=%zu next=stop error=%s action=\"no "
                 "checkpoint past these records\"", s->stream, s->id, piece_first(p), piece_last(p), n,
                 log_quote(error, q, sizeof q));
        pieces_free(&s->queue, p);
        return;
    }
    size_t from = job->decision == DEC_FAILED ? job->index : 0;
    if (from > 0) {
        /* the records before the failed one are done, as the script said */
        breaker_processed(s->breaker, from);
        s->stats.records += (int64_t)from;
        s->env->records += (int64_t)from;
        shard_metrics_records(&s->metrics, b, from, clock_wall_ms());
        shard_finished(s, b, from - 1);
        s->held = 0;
        checkpoint_request(&s->cp, s->done_seq, s->done_sub);
    }
    piece_t *failing = p;
    if (from > 0 || (job->decision == DEC_FAILED && s->cfg->policy.isolate && n - from > 1)) {
        /* With isolation, {failed = r} names the failing record: it alone goes
         * to the policy, the records after it are a new piece, never tried. */
        size_t to = s->cfg->policy.isolate && job->decision == DEC_FAILED ? from + 1 : n;
        int64_t failures = from > 0 || to < n ? 1 : p->failures + 1;
        if (to < n) pieces_push_front(&s->queue, pieces_slice(&s->queue, p, to, n, 0));
        failing = pieces_slice(&s->queue, p, from, to, failures);
        pieces_free(&s->queue, p);
    } else {
        failing->failures++;
    }
    shard_piece_failed(s, failing, error, job->traceback);
}

static void shard_init_done(shard_t *s, proc_job_t *job)
{
    if (job->decision != DEC_ERROR) {
        s->initialized = 1;
        if (s->state == SHARD_STARTING) shard_transition(s, SHARD_RUNNING);
        return;
    }
    if (s->state != SHARD_STARTING) return;
    const policy_config_t *p = &s->cfg->policy;
    char why[4096], q[4096];
    snprintf(why, sizeof why, "initialize failed: %s%s%s", job->error, job->traceback ? "\n" : "",
             job->traceback ? job->traceback : "");
    s->stats.batches_failed++;
    s->fails_since_swap++;
    xstrset(&s->last_error, why);
    if (p->retries < 0 || s->fails_since_swap <= p->retries) {
        s->stats.retries++;
        shard_metrics_retry(&s->metrics);
        int64_t delay = policy_backoff_ms(p, s->fails_since_swap, &s->seed);
        log_warn("initialize_failed", "stream=%s shard=%s attempt=%lld retry_in_ms=%lld error=%s", s->stream, s->id,
                 (long long)s->fails_since_swap, (long long)delay, log_quote(why, q, sizeof q));
        shard_wait(s, delay);
        return;
    }
    shard_halt(s, why); /* initialize cannot be skipped */
}

static void shard_ended_done(shard_t *s, proc_job_t *job)
{
    if (s->state != SHARD_ENDING) return;
    if (job->decision == DEC_ALL) {
        s->ended_ok = 1;
        checkpoint_request(&s->cp, SEQNUM_SHARD_END, 0);
        return;
    }
    const char *why = job->decision == DEC_ERROR ? job->error : "shardEnded did not return \"checkpoint\"";
    char q[2048];
    log_error("shard_stuck", "stream=%s shard=%s worker=%s error=%s action=\"children wait; shardEnded is called "
              "again in %d s\"", s->stream, s->id, s->env->worker_id, log_quote(why, q, sizeof q),
              SHARD_STUCK_RETRY_MS / 1000);
    shard_wait(s, SHARD_STUCK_RETRY_MS);
}

static void shard_shutdown_done(shard_t *s, proc_job_t *job)
{
    s->called_shutdown = 1;
    if (s->state != SHARD_STOPPING) return; /* lost meanwhile: no checkpoint; leaseLost follows */
    if (job->decision == DEC_ERROR) {
        char q[2048];
        log_error("shutdown_requested_failed", "stream=%s shard=%s error=%s action=\"no checkpoint\"", s->stream,
                  s->id, log_quote(job->error, q, sizeof q));
    } else if (job->decision == DEC_ALL && s->done_seq) {
        s->held = 0;
        checkpoint_request(&s->cp, s->done_seq, s->done_sub);
    }
}

void shard_job_done(shard_t *s, proc_job_t *job)
{
    s->job_busy = 0;
    sched_timer_stop(s->env->sched, &s->job_timer);
    shard_take_emits(s, job);
    switch (job->kind) {
    case JOB_INIT: shard_init_done(s, job); break;
    case JOB_PROCESS: shard_process_done(s, job); break;
    case JOB_SHARD_ENDED: shard_ended_done(s, job); break;
    case JOB_SHUTDOWN: shard_shutdown_done(s, job); break;
    case JOB_LEASE_LOST: s->called_lease_lost = 1; break;
    case JOB_CLOSE: s->lua_closed = 1; break;
    case JOB_TIMER: shard_timer_done(s, job); break;
    }
    shard_step(s);
}

/* ---- fetching ---------------------------------------------------------------- */

static void shard_on_records(void *ud, batch_t *b)
{
    shard_t *s = ud;
    piece_t *p = pieces_new(b, 0);
    p->fetched_ms = sched_now_ms(s->env->sched);
    pieces_push_back(&s->queue, p);
    shard_step(s);
}

static void shard_on_fetch_ended(void *ud)
{
    shard_step(ud);
}

static void shard_on_fetch_failed(void *ud, const char *why)
{
    shard_t *s = ud;
    shard_halt(s, why);
    shard_step(s);
}

/* A read that was out when the shard stopped fetching answered: the shard
 * may be closing and waiting for it (shard_freeable). */
static void shard_on_fetch_settled(void *ud)
{
    shard_step(ud);
}

static int shard_fetch_room(void *ud)
{
    shard_t *s = ud;
    if (s->queue.count < (size_t)s->cfg->prefetch_batches) return 1;
    /* a batching window gathers more reads than prefetch_batches */
    return s->cfg->max_batching_window_ms > 0 && s->queue.records < (size_t)s->cfg->min_batch_records;
}

static fetch_options_t shard_fetch_options(const shard_t *s)
{
    return (fetch_options_t){(size_t)s->cfg->max_records, s->cfg->idle_time_between_reads_ms,
                             s->env->min_poll_interval_ms, SHARD_RETRY_MS, s->cfg->initial_position,
                             s->cfg->initial_timestamp_ms};
}

/* ---- the step: the next action, decided from the state ------------------------ */

static int shard_waiting(const shard_t *s)
{
    return sched_timer_active(&s->wait_timer);
}

static void shard_dispatch(shard_t *s)
{
    if (!s->env->may_dispatch(s->env->ud, s->key)) {
        /* the lease may have expired by this worker's clock: the coordinator
         * declares it lost, or a renewal confirms it; look again meanwhile */
        shard_wait(s, 100);
        return;
    }
    /* with a batching window, the fresh reads at the head go as one batch */
    size_t want = s->cfg->max_batching_window_ms > 0 ? (size_t)s->cfg->min_batch_records : 0;
    piece_t *p = pieces_pop_joined(&s->queue, want);
    shard_forget_halt_at(s); /* going on: whatever a halt stopped at is behind */
    if (p->failures > 0)
        log_info("batch_retry", "stream=%s shard=%s first=%s count=%zu attempt=%lld", s->stream, s->id,
                 piece_first(p), p->batch->count, (long long)p->failures + 1);
    shard_submit(s, JOB_PROCESS, p);
    fetch_poke(&s->fetch); /* room for the next read */
}

static void shard_advance(shard_t *s)
{
    shard_outputs_step(s);
    switch (s->state) {
    case SHARD_STARTING:
        fetch_poke(&s->fetch); /* the first records come while initialize runs */
        if (!s->job_busy && !shard_waiting(s)) shard_submit(s, JOB_INIT, NULL);
        return;
    case SHARD_RUNNING:
        fetch_poke(&s->fetch);
        if (s->job_busy || s->dl_busy || shard_waiting(s)) return;
        if (s->final) {
            shard_dead_letter_send(s); /* the last send failed: again, after its backoff */
            return;
        }
        if (shard_outputs_full(s)) return; /* acknowledgements step again */
        if (ticker_due(&s->tick)) {
            shard_tick(s);
            return;
        }
        if (s->queue.head) {
            if (!shard_gathering(s)) shard_dispatch(s);
            return;
        }
        if (fetch_ended(&s->fetch)) {
            checkpoint_flush(&s->cp); /* a coalesced checkpoint first: the end waits for it */
            if (checkpoint_idle(&s->cp)) {
                log_info("shard_end_reached", "stream=%s shard=%s", s->stream, s->id);
                shard_transition(s, SHARD_ENDING);
                s->step_again = 1;
            }
        }
        return;
    case SHARD_HALTED: return;
    case SHARD_ENDING:
        if (s->job_busy || shard_waiting(s) || !checkpoint_idle(&s->cp)) return;
        if (!s->ended_ok) {
            shard_submit(s, JOB_SHARD_ENDED, NULL);
            return;
        }
        if (checkpoint_cmp(checkpoint_written(&s->cp, NULL), 0, SEQNUM_SHARD_END, 0) == 0) {
            log_info("shard_finished", "stream=%s shard=%s worker=%s", s->stream, s->id, s->env->worker_id);
            s->env->ended(s->env->ud, s);
            shard_transition(s, SHARD_RELEASING);
            s->step_again = 1;
        }
        return;
    case SHARD_STOPPING:
        if (s->job_busy || s->dl_busy) return; /* the call in flight first: its checkpoint counts */
        if (!s->called_shutdown && s->initialized) {
            shard_submit(s, JOB_SHUTDOWN, NULL);
            return;
        }
        shard_transition(s, SHARD_RELEASING);
        s->step_again = 1;
        return;
    case SHARD_RELEASING:
        checkpoint_flush(&s->cp);
        if (s->job_busy || !checkpoint_idle(&s->cp)) return;
        /* the final counters go into the row with the release: the next owner goes on from them */
        lease_coord_set_info(s->env->coord, s->key, shard_describe(s, NULL));
        if (s->handoff) lease_coord_handoff(s->env->coord, s->key, NULL, NULL);
        else lease_coord_release(s->env->coord, s->key, NULL, NULL);
        shard_transition(s, SHARD_CLOSING);
        s->step_again = 1;
        return;
    case SHARD_LOST:
        if (s->job_busy) return;
        if (!s->called_lease_lost && s->initialized) {
            shard_submit(s, JOB_LEASE_LOST, NULL);
            return;
        }
        shard_transition(s, SHARD_CLOSING);
        s->step_again = 1;
        return;
    case SHARD_CLOSING:
        if (!s->job_busy && !s->lua_closed) shard_submit(s, JOB_CLOSE, NULL);
        return;
    }
}

/* Nothing can call back into s any more. */
static int shard_freeable(const shard_t *s)
{
    return s->state == SHARD_CLOSING && s->lua_closed && !s->job_busy && !s->dl_busy && !fetch_busy(&s->fetch) &&
           !checkpoint_in_flight(&s->cp) && !outputs_busy(&s->out);
}

static void shard_step(shard_t *s)
{
    if (s->stepping) {
        s->step_again = 1; /* an answer arrived inside a step: look again when it ends */
        return;
    }
    s->stepping = 1;
    do {
        s->step_again = 0;
        shard_advance(s);
    } while (s->step_again);
    s->stepping = 0;
    if (shard_freeable(s)) s->env->closed(s->env->ud, s); /* last: the worker frees s */
}

/* ---- life -------------------------------------------------------------------- */

/* Counters are cumulative over owners: a new owner goes on from what the
 * last one wrote into the lease row (with its renewals and its release). */
static void shard_stats_from_info(shard_stats_t *st, const char *info)
{
    cJSON *o = info ? cJSON_Parse(info) : NULL;
    static const struct {
        const char *name;
        size_t off;
    } fields[] = {
        {"records", offsetof(shard_stats_t, records)},
        {"batchesFailed", offsetof(shard_stats_t, batches_failed)},
        {"retries", offsetof(shard_stats_t, retries)},
        {"skipped", offsetof(shard_stats_t, skipped)},
        {"deadLettered", offsetof(shard_stats_t, dead_lettered)},
        {"deadLetterDataOmitted", offsetof(shard_stats_t, dead_letter_data_omitted)},
        {"timeouts", offsetof(shard_stats_t, timeouts)},
        {"memoryCapHits", offsetof(shard_stats_t, memory_cap_hits)},
        {"breakerTrips", offsetof(shard_stats_t, breaker_trips)},
        {"timerFailures", offsetof(shard_stats_t, timer_failures)},
    };
    for (size_t i = 0; o && i < sizeof fields / sizeof *fields; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, fields[i].name);
        if (cJSON_IsNumber(v) && v->valuedouble >= 0) *(int64_t *)((char *)st + fields[i].off) = (int64_t)v->valuedouble;
    }
    cJSON_Delete(o);
}

/* The output counters, cumulative over owners as the others. */
static void shard_output_stats_from_info(outputs_stats_t *st, const char *info)
{
    cJSON *o = info ? cJSON_Parse(info) : NULL;
    const cJSON *v;
    if ((v = cJSON_GetObjectItemCaseSensitive(o, "emitted")) && cJSON_IsNumber(v)) st->emitted = (int64_t)v->valuedouble;
    if ((v = cJSON_GetObjectItemCaseSensitive(o, "outputsSkipped")) && cJSON_IsNumber(v))
        st->skipped = (int64_t)v->valuedouble;
    if ((v = cJSON_GetObjectItemCaseSensitive(o, "outputsDeadLettered")) && cJSON_IsNumber(v))
        st->dead_lettered = (int64_t)v->valuedouble;
    cJSON_Delete(o);
}

/* The backoff jitter's seed: from the scheduler's clock, the lease key and
 * the worker (FNV-1a), so shards started together do not retry in step, and
 * on virtual time (the simulation) a run replays exactly. */
static unsigned shard_seed(const shard_env_t *env, const char *key)
{
    uint32_t h = 2166136261u;
    for (const char *p = key; *p; p++) h = (h ^ (uint8_t)*p) * 16777619u;
    for (const char *p = env->worker_id ? env->worker_id : ""; *p; p++) h = (h ^ (uint8_t)*p) * 16777619u;
    return h ^ (unsigned)sched_now_ms(env->sched);
}

shard_t *shard_new(shard_env_t *env, const config_stream_t *cfg, proc_script_t *script, breaker_t *breaker,
                   const lease_t *lease)
{
    shard_t *s = xcalloc(1, sizeof *s); /* owned by the worker: shard_free */
    s->env = env;
    s->breaker = breaker;
    s->cfg = cfg;
    s->key = xstrdup(lease->key);
    s->stream = xstrdup(cfg->name);
    s->id = xstrdup(lease->shard);
    s->state = SHARD_STARTING;
    s->control_seen = xstrdup(lease->control); /* a request made before this take is not for us */
    shard_stats_from_info(&s->stats, lease->info);
    proc_shard_info_t info = {cfg->name, lease->shard, lease->checkpoint, env->worker_id};
    proc_limits_t limits = {cfg->process_timeout_ms, cfg->memory_limit_mb, cfg->max_emit_buffer_mb * 1024 * 1024};
    s->ps = proc_state_new(script, &info, &limits, env->lua_path, env->nlua_path);
    proc_state_set_outputs(s->ps, env->output_names, env->noutputs);
    outputs_init(&s->out, env->sched, env->dead_letters, env->outputs, env->noutputs, cfg, s->stream, s->id,
                 env->worker_id, shard_on_output, s);
    shard_output_stats_from_info(&s->out.stats, lease->info);
    ticker_init(&s->tick, env->sched, cfg->timer_interval_ms, shard_on_tick, s);
    sched_timer_init(&s->gather_timer, shard_on_gather_timer, s);
    proc_script_ref(script);
    s->script = script;
    pieces_init(&s->queue, env->budget);
    checkpoint_init(&s->cp, env->sched, cfg->checkpoint_interval_ms, lease->checkpoint, lease->checkpoint_sub,
                    shard_cp_write, s);
    fetch_handler_t fh = {shard_on_records, shard_on_fetch_ended, shard_on_fetch_failed, shard_fetch_room,
                          shard_on_fetch_settled};
    fetch_options_t fo = shard_fetch_options(s);
    fetch_init(&s->fetch, env->sched, env->source, env->budget, cfg->name, lease->shard, lease->checkpoint,
               lease->checkpoint_sub, &fo, &fh, s);
    shard_metrics_init(&s->metrics, env->metrics, cfg->name, lease->shard);
    s->fetch.metrics = &s->metrics;
    sched_timer_init(&s->wait_timer, shard_on_wait_timer, s);
    sched_timer_init(&s->job_timer, shard_on_job_timer, s);
    sched_timer_init(&s->halt_timer, shard_on_halt_timer, s);
    s->seed = shard_seed(env, s->key);
    return s;
}

void shard_start(shard_t *s)
{
    int64_t sub;
    const char *cp = checkpoint_written(&s->cp, &sub);
    log_info("shard_started", "stream=%s shard=%s worker=%s checkpoint=%s sub=%lld", s->stream, s->id,
             s->env->worker_id, cp, (long long)sub);
    shard_step(s);
}

/* Stops reading and drops the records not yet being processed. */
static void shard_stop_work(shard_t *s)
{
    fetch_stop(&s->fetch);
    pieces_drop_all(&s->queue);
    ticker_stop(&s->tick);
    sched_timer_stop(s->env->sched, &s->gather_timer);
    sched_timer_stop(s->env->sched, &s->wait_timer);
    sched_timer_stop(s->env->sched, &s->halt_timer);
}

void shard_lost(shard_t *s)
{
    if (s->state == SHARD_LOST || s->state == SHARD_CLOSING) return;
    log_warn("shard_lease_lost", "stream=%s shard=%s worker=%s action=\"leaseLost, no further checkpoint\"",
             s->stream, s->id, s->env->worker_id);
    shard_transition(s, SHARD_LOST);
    shard_stop_work(s);
    checkpoint_drop(&s->cp);
    shard_step(s);
}

static void shard_stop(shard_t *s, int handoff)
{
    if (s->state == SHARD_LOST || s->state == SHARD_CLOSING || s->state == SHARD_STOPPING ||
        s->state == SHARD_RELEASING)
        return;
    /* no shutdownRequested for a shard that never ran or stopped on an error */
    if (s->state == SHARD_HALTED || s->state == SHARD_ENDING) s->called_shutdown = 1;
    s->handoff = handoff;
    shard_transition(s, SHARD_STOPPING);
    shard_stop_work(s);
    shard_step(s);
}

void shard_shutdown(shard_t *s)
{
    shard_stop(s, 0);
}

void shard_handoff(shard_t *s)
{
    if (s->state == SHARD_LOST || s->state == SHARD_CLOSING) return;
    log_info("shard_handoff", "stream=%s shard=%s worker=%s action=\"finish batch, shutdownRequested, checkpoint, "
             "hand over\"", s->stream, s->id, s->env->worker_id);
    if (s->state == SHARD_STOPPING || s->state == SHARD_RELEASING) {
        s->handoff = 1; /* already stopping: hand over instead of releasing */
        return;
    }
    shard_stop(s, 1);
}

int shard_resume(shard_t *s, const char *why, int skip)
{
    if (s->state != SHARD_HALTED) return 0;
    char q[1024];
    if (skip && s->halt_first) {
        /* the records it stopped at are given up on, as a skip would */
        s->stats.skipped += (int64_t)s->halt_count;
        shard_metrics_skipped(&s->metrics, s->halt_count);
        log_warn("records_skipped", "stream=%s shard=%s first=%s last=%s count=%zu reason=%s", s->stream, s->id,
                 s->halt_first, s->halt_last, s->halt_count, log_quote(why, q, sizeof q));
        xstrset(&s->done_seq, s->halt_last);
        s->done_sub = s->halt_last_sub;
        shard_checkpoint_done(s);
    } else if (skip) {
        log_info("shard_resume_nothing_to_skip", "stream=%s shard=%s reason=\"the halt was not on records\"",
                 s->stream, s->id);
    }
    log_info("shard_resumed", "stream=%s shard=%s worker=%s reason=%s from=%s", s->stream, s->id, s->env->worker_id,
             log_quote(why, q, sizeof q), s->done_seq ? s->done_seq : checkpoint_written(&s->cp, NULL));
    shard_forget_halt_at(s);
    sched_timer_stop(s->env->sched, &s->halt_timer);
    xstrset(&s->halt_error, NULL);
    breaker_reset(s->breaker);
    shard_outputs_resume(s);
    /* read again after the last record finished (or the checkpoint) */
    int64_t sub = s->done_sub;
    const char *from = s->done_seq ? s->done_seq : checkpoint_written(&s->cp, &sub);
    fetch_restart(&s->fetch, from, sub);
    shard_transition(s, s->initialized ? SHARD_RUNNING : SHARD_STARTING);
    shard_step(s);
    return 1;
}

/* A request written into the lease row (`shardrun resume`): acted on once. */
void shard_control(shard_t *s, const char *control)
{
    if (!control || (s->control_seen && !strcmp(s->control_seen, control))) return;
    xstrset(&s->control_seen, control);
    cJSON *o = cJSON_Parse(control);
    const cJSON *action = cJSON_GetObjectItemCaseSensitive(o, "action");
    const cJSON *by = cJSON_GetObjectItemCaseSensitive(o, "by");
    char why[512], q[600];
    snprintf(why, sizeof why, "shardrun resume%s by %s", cJSON_IsString(action) && !strcmp(action->valuestring, "skip")
             ? " --skip" : "", cJSON_IsString(by) ? by->valuestring : "?");
    if (!cJSON_IsString(action) || (strcmp(action->valuestring, "resume") && strcmp(action->valuestring, "skip"))) {
        log_warn("control_ignored", "stream=%s shard=%s control=%s reason=\"not a request this version knows\"",
                 s->stream, s->id, log_quote(control, q, sizeof q));
    } else if (!shard_resume(s, why, !strcmp(action->valuestring, "skip"))) {
        log_info("control_ignored", "stream=%s shard=%s state=%s reason=\"not halted\" request=%s", s->stream, s->id,
                 shard_state_name(s->state), log_quote(why, q, sizeof q));
    }
    cJSON_Delete(o);
}

void shard_settings_changed(shard_t *s)
{
    proc_limits_t limits = {s->cfg->process_timeout_ms, s->cfg->memory_limit_mb,
                            s->cfg->max_emit_buffer_mb * 1024 * 1024};
    proc_state_set_limits(s->ps, &limits);
    ticker_set_interval(&s->tick, s->cfg->timer_interval_ms);
    fetch_options_t fo = shard_fetch_options(s);
    fetch_set_options(&s->fetch, &fo);
    checkpoint_set_interval(&s->cp, s->cfg->checkpoint_interval_ms);
}

void shard_set_script(shard_t *s, proc_script_t *script)
{
    if (script == s->script) return;
    proc_script_ref(script);
    proc_script_unref(s->previous);
    s->previous = s->script;
    s->script = script;
    s->fails_since_swap = 0;
    proc_state_set_script(s->ps, script);
}

/* What status shows: the state, and within it what the shard is doing. */
static const char *shard_activity(const shard_t *s)
{
    if (s->state != SHARD_RUNNING) return shard_state_name(s->state);
    if (s->final) return "dead_lettering";
    if (shard_outputs_full(s)) return "waiting_for_outputs";
    if (shard_waiting(s) && s->queue.head && s->queue.head->failures > 0) return "retrying";
    if (fetch_backoff_error(&s->fetch) && !s->job_busy && !s->queue.head) return "backing_off"; /* throttled, network */
    if (!s->job_busy && !s->queue.head && fetch_caught_up(&s->fetch)) return "idle";
    return "processing";
}

/* How far behind the shard's processing is: while records wait here (being
 * processed, retried, dead-lettered, queued) the age of the oldest of them;
 * else what the source said of the last read. */
static int64_t shard_millis_behind(const shard_t *s)
{
    const piece_t *p = s->current ? s->current : s->final ? s->final : s->queue.head;
    if (p && p->batch->count) {
        int64_t age = clock_wall_ms() - p->batch->recs[0].arrival_ms;
        return age > 0 ? age : 0;
    }
    int64_t mb = fetch_millis_behind(&s->fetch);
    return mb > 0 ? mb : 0;
}

char *shard_describe(const shard_t *s, const char *reload_error)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) xalloc_oom(0);
    const shard_stats_t *st = &s->stats;
    proc_script_t *script = proc_state_script(s->ps);
    cJSON_AddStringToObject(o, "state", shard_activity(s));
    if (s->halt_error) cJSON_AddStringToObject(o, "error", s->halt_error);
    if (s->state == SHARD_RUNNING && shard_waiting(s) && s->queue.head && s->queue.head->failures > 0) {
        cJSON_AddNumberToObject(o, "attempt", (double)s->queue.head->failures + 1);
        cJSON_AddNumberToObject(o, "nextTryAtMs", (double)s->wait_until_ms);
        if (s->last_error) cJSON_AddStringToObject(o, "lastError", s->last_error);
    }
    if (script) {
        cJSON_AddStringToObject(o, "version", script->hash);
        cJSON_AddNumberToObject(o, "loadedAtMs", (double)script->loaded_ms);
    }
    if (reload_error) cJSON_AddStringToObject(o, "reloadError", reload_error);
    if (fetch_backoff_error(&s->fetch)) cJSON_AddStringToObject(o, "readError", fetch_backoff_error(&s->fetch));
    cJSON_AddNumberToObject(o, "millisBehind", (double)shard_millis_behind(s));
    cJSON_AddNumberToObject(o, "records", (double)st->records);
    cJSON_AddNumberToObject(o, "batchesFailed", (double)st->batches_failed);
    cJSON_AddNumberToObject(o, "retries", (double)st->retries);
    cJSON_AddNumberToObject(o, "skipped", (double)st->skipped);
    cJSON_AddNumberToObject(o, "deadLettered", (double)st->dead_lettered);
    cJSON_AddNumberToObject(o, "deadLetterDataOmitted", (double)st->dead_letter_data_omitted);
    cJSON_AddNumberToObject(o, "timeouts", (double)st->timeouts);
    cJSON_AddNumberToObject(o, "memoryCapHits", (double)st->memory_cap_hits);
    cJSON_AddNumberToObject(o, "breakerTrips", (double)st->breaker_trips);
    if (s->out.nq) {
        const outputs_stats_t *os = &s->out.stats;
        cJSON_AddNumberToObject(o, "emitted", (double)os->emitted);
        cJSON_AddNumberToObject(o, "emitsUnacknowledged", (double)(outputs_emitted(&s->out) - outputs_acked(&s->out)));
        cJSON_AddNumberToObject(o, "emitBytes", (double)outputs_bytes(&s->out));
        cJSON_AddNumberToObject(o, "outputsSkipped", (double)os->skipped);
        cJSON_AddNumberToObject(o, "outputsDeadLettered", (double)os->dead_lettered);
        if (outputs_last_error(&s->out)) cJSON_AddStringToObject(o, "outputError", outputs_last_error(&s->out));
        if (checkpoint_waiting_outputs(&s->cp)) cJSON_AddBoolToObject(o, "checkpointWaitsForOutputs", 1);
    }
    if (st->timer_failures) cJSON_AddNumberToObject(o, "timerFailures", (double)st->timer_failures);
    char *json = cJSON_PrintUnformatted(o); /* freed by the caller */
    cJSON_Delete(o);
    if (!json) xalloc_oom(0);
    return json;
}

int shard_caught_up(shard_t *s)
{
    if (s->state == SHARD_HALTED) return 1;
    int idle = s->state == SHARD_RUNNING && !s->job_busy && !s->queue.head && !s->final && fetch_nothing_coming(&s->fetch) &&
               fetch_caught_up(&s->fetch) && !fetch_ended(&s->fetch) && !shard_waiting(s) &&
               outputs_acked(&s->out) == outputs_emitted(&s->out);
    /* caught up but for a coalesced checkpoint: write it now rather than at its timer */
    if (idle) checkpoint_flush(&s->cp);
    return idle && checkpoint_idle(&s->cp);
}

void shard_free(shard_t *s)
{
    if (!s) return;
    sched_timer_stop(s->env->sched, &s->wait_timer);
    sched_timer_stop(s->env->sched, &s->job_timer);
    sched_timer_stop(s->env->sched, &s->halt_timer);
    sched_timer_stop(s->env->sched, &s->gather_timer);
    ticker_stop(&s->tick);
    pieces_drop_all(&s->queue);
    if (s->current) pieces_free(&s->queue, s->current);
    if (s->final) pieces_free(&s->queue, s->final);
    fetch_clear(&s->fetch);
    checkpoint_clear(&s->cp);
    outputs_clear(&s->out);
    shard_metrics_clear(&s->metrics);
    proc_job_reset(&s->job);
    proc_state_free(s->ps);
    proc_script_unref(s->script);
    proc_script_unref(s->previous);
    free(s->key);
    free(s->stream);
    free(s->id);
    free(s->done_seq);
    free(s->halt_error);
    free(s->halt_first);
    free(s->halt_last);
    free(s->control_seen);
    free(s->last_error);
    free(s->final_error);
    free(s->final_tb);
    free(s);
}
