/* shard_policy: the error policy's steps for one shard (DESIGN.md section 5):
 * retry after backoff, bisect, and the final skip / dead-letter / halt; and
 * the hot-reload rollback that counts failed batches. The decisions
 * themselves are policy.c's; this file carries them out on the shard. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "deadletter.h"
#include "base/log.h"
#include "policy.h"
#include "shard_internal.h"
#include "base/xalloc.h"

static void shard_dead_lettered(shard_t *s, batch_t *b, const char *where, const char *error)
{
    char q[2048];
    s->stats.dead_lettered += (int64_t)b->count;
    log_warn("records_dead_lettered", "stream=%s shard=%s first=%s last=%s count=%zu destination=%s error=%s",
             s->stream, s->id, batch_seq(b, 0), batch_seq(b, b->count - 1), b->count, where,
             log_quote(error, q, sizeof q));
    shard_remember_done(s, b, b->count - 1);
    shard_checkpoint(s, s->done_seq, s->done_sub);
}

/* A dead-letter write (file or stream) answered: on success the checkpoint
 * moves past the records; on failure the write is tried again later. */
static void shard_dl_finish(shard_t *s, const char *failure, const char *destination)
{
    s->dl_busy = 0;
    free(s->dl_lines);
    free(s->dl_recs);
    s->dl_lines = NULL;
    s->dl_recs = NULL;
    if (s->phase == SHARD_CLOSING) {
        shard_maybe_free(s);
        return;
    }
    batch_t *b = s->final;
    if (!b) return; /* dropped meanwhile (lease lost, shutdown): nothing was checkpointed */
    if (failure) {
        char q[1024];
        log_error("dead_letter_failed", "stream=%s shard=%s first=%s last=%s count=%zu destination=%s error=%s "
                  "action=\"retry the write; no checkpoint past these records\"", s->stream, s->id, batch_seq(b, 0),
                  batch_seq(b, b->count - 1), b->count, destination, log_quote(failure, q, sizeof q));
        shard_retry_later(s, policy_backoff_ms(&s->cfg->policy, 2, &s->seed));
        return;
    }
    s->final = NULL;
    if (s->phase == SHARD_RUNNING) shard_dead_lettered(s, b, destination, s->final_error);
    shard_release_batch(s, b);
    shard_dispatch(s);
}

static void shard_dl_stream_done(void *ud, source_err_t err, const char *msg)
{
    shard_t *s = ud;
    shard_dl_finish(s, err ? (msg ? msg : "put failed") : NULL, s->cfg->policy.dead_letter_stream);
}

static void shard_dl_file_done(void *ud, int rc, const char *msg)
{
    shard_t *s = ud;
    shard_dl_finish(s, rc ? (msg ? msg : "write failed") : NULL, s->cfg->policy.dead_letter_file);
}

/* Appends one dead-letter JSON line per record of b to `lines`; `ends`
 * (NULL, or b->count entries) gets where each line ends, newline excluded. */
static void shard_dead_letter_lines(const shard_t *s, const batch_t *b, const char *error, const char *tb,
                                    buf_t *lines, size_t *ends)
{
    deadletter_info_t info = {s->stream, s->id, s->env->worker_id, error, tb, s->attempts + 1};
    for (size_t i = 0; i < b->count; i++) {
        deadletter_format(lines, &info, b, i);
        if (ends) ends[i] = lines->len - 1;
    }
}

/* Puts the failed records, as dead-letter JSON lines, to the dead-letter
 * stream through the source; the checkpoint waits for its answer. */
static void shard_dead_letter_to_stream(shard_t *s, batch_t *b, const char *error, const char *tb)
{
    buf_t lines = BUF_INIT;
    size_t *ends = xcalloc(b->count, sizeof *ends);
    shard_dead_letter_lines(s, b, error, tb, &lines, ends);
    s->dl_lines = buf_detach(&lines);                        /* freed in shard_dl_finish */
    s->dl_recs = xcalloc(b->count, sizeof *s->dl_recs);       /* freed in shard_dl_finish */
    for (size_t i = 0, start = 0; i < b->count; i++) {
        s->dl_recs[i].data = s->dl_lines + start;
        s->dl_recs[i].data_len = ends[i] - start;
        s->dl_recs[i].pkey = b->recs[i].pkey_len ? batch_pkey(b, i) : "deadletter";
        start = ends[i] + 1;
    }
    free(ends);
    s->dl_busy = 1;
    s->env->source->ops->put(s->env->source, s->cfg->policy.dead_letter_stream, s->dl_recs, b->count,
                             shard_dl_stream_done, s);
}

/* Writes the failed records, as dead-letter JSON lines, to the dead-letter
 * file on the writer's thread; the checkpoint waits for its answer. */
static void shard_dead_letter_to_file(shard_t *s, batch_t *b, const char *error, const char *tb)
{
    buf_t lines = BUF_INIT;
    shard_dead_letter_lines(s, b, error, tb, &lines, NULL);
    s->dl_busy = 1;
    deadletter_writer_append(s->env->dead_letters, &s->cfg->policy, &lines, shard_dl_file_done, s);
}

/* The records the policy gave up on: skip, dead-letter or halt. Returns 0
 * when the shard may go on past them (they are checkpointed), 1 when a
 * dead-letter write is in flight (the batch is held until it answers), -1
 * when the shard halted. */
static int shard_final(shard_t *s, batch_t *b, const char *error, const char *tb)
{
    const policy_config_t *p = &s->cfg->policy;
    char q[2048];
    if (p->final == FINAL_HALT || p->final == FINAL_RETRY) {
        char why[4096];
        snprintf(why, sizeof why, "%s%s%s (records %s..%s, %zu records, attempts %lld)", error, tb && *tb ? "\n" : "",
                 tb ? tb : "", batch_seq(b, 0), batch_seq(b, b->count - 1), b->count, (long long)s->attempts + 1);
        shard_halt(s, why);
        return -1;
    }
    if (p->final == FINAL_DEAD_LETTER) {
        if (p->dead_letter_stream) shard_dead_letter_to_stream(s, b, error, tb);
        else shard_dead_letter_to_file(s, b, error, tb);
        return 1;
    }
    s->stats.skipped += (int64_t)b->count;
    log_warn("records_skipped", "stream=%s shard=%s first=%s last=%s count=%zu error=%s", s->stream, s->id,
             batch_seq(b, 0), batch_seq(b, b->count - 1), b->count, log_quote(error, q, sizeof q));
    shard_remember_done(s, b, b->count - 1);
    shard_checkpoint(s, s->done_seq, s->done_sub);
    return 0;
}

static void shard_set_final(shard_t *s, batch_t *b, const char *error, const char *tb)
{
    s->final = b;
    shard_set_str(&s->final_error, error);
    shard_set_str(&s->final_tb, tb ? tb : "");
}

void shard_retry_later(shard_t *s, int64_t delay_ms)
{
    ev_timer_stop(s->env->loop, &s->retry_timer);
    ev_timer_set(&s->retry_timer, (double)delay_ms / 1000.0, 0.0);
    ev_timer_start(s->env->loop, &s->retry_timer);
}

/* Records [from, n) of the current batch failed: the error policy decides
 * (DESIGN.md section 5). Nothing past them is checkpointed until they are
 * processed, skipped (logged, counted) or durably dead-lettered. */
void shard_batch_failed(shard_t *s, proc_job_t *job)
{
    batch_t *b = s->current;
    size_t from = job->decision == DEC_FAILED ? job->index : 0;
    const policy_config_t *p = &s->cfg->policy;
    const char *error = job->error ? job->error : "error";
    char q[2048], tq[2048]; /* one buffer per quoted field: both are read when the line is written */
    s->stats.batches_failed++;
    shard_maybe_rollback(s);
    if (job->timed_out) s->stats.timeouts++;
    if (job->out_of_memory) s->stats.memory_cap_hits++;
    batch_t *failing = from ? batch_slice(b, from, b->count) : b;
    if (from) shard_account(s, failing);
    else s->current = NULL; /* ownership moves to the policy */
    policy_step_t step = policy_next(p, s->attempts, failing->count, s->current_bisected,
                                     failing->recs[0].arrival_ms, clock_wall_ms());
    log_warn("batch_failed", "stream=%s shard=%s first=%s last=%s count=%zu attempt=%lld next=%s error=%s%s%s",
             s->stream, s->id, batch_seq(failing, 0), batch_seq(failing, failing->count - 1), failing->count,
             (long long)s->attempts + 1, policy_step_name(step), log_quote(error, q, sizeof q),
             job->traceback ? " traceback=" : "", job->traceback ? log_quote(job->traceback, tq, sizeof tq) : "");
    if (step == POLICY_RETRY) {
        s->attempts++;
        s->stats.retries++;
        s->retry = failing;
        s->retry_bisected = 0;
        shard_retry_later(s, policy_backoff_ms(p, s->attempts, &s->seed));
        return;
    }
    if (step == POLICY_BISECT) {
        size_t half = failing->count / 2;
        batch_t *second = batch_slice(failing, half, failing->count);
        batch_t *first = batch_slice(failing, 0, half);
        shard_release_batch(s, failing);
        shard_push_front(s, second, 1);
        shard_push_front(s, first, 1);
        s->attempts = 0;
        return;
    }
    int rc = shard_final(s, failing, error, job->traceback);
    s->attempts = 0;
    if (rc > 0) {
        shard_set_final(s, failing, error, job->traceback); /* held until written */
        return;
    }
    shard_release_batch(s, failing);
}

void shard_on_retry_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    shard_t *s = t->data;
    if (s->final && !s->dl_busy && s->phase == SHARD_RUNNING) {
        /* the dead-letter write failed before: try it again */
        batch_t *b = s->final;
        s->final = NULL; /* ours again: a halt meanwhile must not free it twice */
        int rc = shard_final(s, b, s->final_error, s->final_tb);
        if (rc > 0) {
            s->final = b;
            return;
        }
        shard_release_batch(s, b);
    }
    if (s->phase == SHARD_INIT && !s->job_busy) {
        shard_submit(s, JOB_INIT);
        return;
    }
    shard_dispatch(s);
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

/* reload.rollback_after_failures: a new version that fails N batches in a
 * row on this shard gives way to the previous one, on this shard. */
void shard_maybe_rollback(shard_t *s)
{
    int64_t n = s->env->rollback_after_failures;
    if (n <= 0 || !s->previous || ++s->fails_since_swap < n) return;
    log_warn("reload_rolled_back", "stream=%s shard=%s from=%s to=%s failures=%lld", s->stream, s->id,
             s->script->hash, s->previous->hash, (long long)s->fails_since_swap);
    proc_script_t *bad = s->script;
    s->script = s->previous;
    s->previous = NULL;
    s->fails_since_swap = 0;
    proc_state_set_script(s->ps, s->script);
    proc_script_unref(bad);
}
