#include "simproc.h"

#include <stdlib.h>

#include "base/xalloc.h"
#include "shard/shard.h"
#include "simcheck.h"
#include "simsource.h"
#include "simworker.h"

struct simjob {
    sched_timer_t timer;
    simworker_t *w;
    proc_job_t *job;
    char *shard;                 /* the shard id, for the truth (the shard may be gone by then) */
    simjob_t *next;
};

static void simproc_unlink(simworker_t *w, simjob_t *j)
{
    for (simjob_t **pp = &w->jobs; *pp; pp = &(*pp)->next) {
        if (*pp == j) {
            *pp = j->next;
            return;
        }
    }
}

static void simproc_error(proc_job_t *job, const char *why)
{
    job->decision = DEC_ERROR;
    job->error = xstrdup(why);
}

/* What processRecords decided, and the records it finished. */
static void simproc_process(sim_t *sim, simjob_t *j)
{
    proc_job_t *job = j->job;
    size_t n = job->batch->count, done = n;
    if (sim_fault(sim, 0.08)) {
        simproc_error(job, "simulated error raised by processRecords");
        sim->stats.job_errors++;
        done = 0;
    } else if (sim_fault(sim, 0.06)) {
        sim->stats.job_failed++;
        job->decision = DEC_FAILED;
        job->index = (size_t)sim_range(sim, 0, (int64_t)n - 1);
        job->error = xstrdup("simulated {failed = record}");
        done = job->index;
    } else {
        int64_t r = sim_range(sim, 0, 99);
        if (r < 50) {
            job->decision = DEC_ALL;
        } else if (r < 75) {
            job->decision = DEC_AT;
            job->index = (size_t)sim_range(sim, 0, (int64_t)n - 1);
        } else {
            job->decision = DEC_NONE;
        }
    }
    sim_digest(sim, (uint64_t)job->decision * 7919 + job->index);
    if (done) simsource_processed(sim->source, j->shard, job->batch, done);
}

static void simproc_done(sched_timer_t *t)
{
    simjob_t *j = t->data;
    simworker_t *w = j->w;
    sim_t *sim = w->sim;
    proc_job_t *job = j->job;
    simproc_unlink(w, j);
    proc_job_reset(job);
    switch (job->kind) {
    case JOB_INIT:
        if (sim_fault(sim, 0.05)) simproc_error(job, "simulated error raised by initialize");
        break;
    case JOB_PROCESS:
        simproc_process(sim, j);
        break;
    case JOB_SHARD_ENDED:
        if (sim_fault(sim, 0.05)) simproc_error(job, "simulated error raised by shardEnded");
        else if (sim_fault(sim, 0.03)) job->decision = DEC_NONE; /* did not checkpoint: called again later */
        else job->decision = DEC_ALL;
        break;
    case JOB_SHUTDOWN:
        if (sim_fault(sim, 0.05)) simproc_error(job, "simulated error raised by shutdownRequested");
        else job->decision = sim_chance(sim, 0.8) ? DEC_ALL : DEC_NONE;
        break;
    case JOB_TIMER: /* the simulation configures no timer_interval_ms: never submitted */
    case JOB_LEASE_LOST:
    case JOB_CLOSE:
        break;
    }
    sim_trace(sim, "job_done worker=%s shard=%s kind=%d decision=%d index=%zu", w->id, j->shard, (int)job->kind,
              (int)job->decision, job->index);
    free(j->shard);
    free(j);
    shard_job_done(job->ud, job);
}

static int64_t simproc_delay(sim_t *sim, proc_job_kind_t kind)
{
    if (kind != JOB_PROCESS) return sim_range(sim, 0, 30);
    if (sim_fault(sim, 0.01)) { /* a slow batch */
        sim->stats.slow_jobs++;
        return sim_range(sim, 2000, 2 * sim->p.lease_duration_ms);
    }
    return sim_range(sim, 1, sim_chance(sim, 0.1) ? 1000 : 80);
}

void simproc_submit(simworker_t *w, proc_job_t *job)
{
    sim_t *sim = w->sim;
    shard_t *s = job->ud;
    if (job->kind == JOB_PROCESS) {
        sim_trace(sim, "dispatch worker=%s shard=%s first=%s count=%zu", w->id, shard_id(s), batch_seq(job->batch, 0),
                  job->batch->count);
        simcheck_dispatch(sim, w->idx, shard_key(s), job->batch);
    }
    simjob_t *j = xcalloc(1, sizeof *j); /* freed when it comes back, or by simproc_drop */
    j->w = w;
    j->job = job;
    j->shard = xstrdup(shard_id(s));
    j->next = w->jobs;
    w->jobs = j;
    sched_timer_init(&j->timer, simproc_done, j);
    sched_timer_start(&w->vs.base, &j->timer, simproc_delay(sim, job->kind));
}

void simproc_drop(simworker_t *w)
{
    while (w->jobs) {
        simjob_t *j = w->jobs;
        w->jobs = j->next;
        sched_timer_stop(&w->vs.base, &j->timer);
        free(j->shard);
        free(j);
    }
}
