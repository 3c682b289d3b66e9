/* simproc: the simulated processor (what a processor thread and the Lua
 * script would do with a job).
 *
 * A job comes back after a delay drawn from the seed (now and then longer
 * than a lease: a slow batch), with a result drawn from the seed too. A
 * batch's decision is of every kind: nil (processed, hold the checkpoint),
 * "checkpoint", {checkpoint = record}, {failed = record} and a raised error;
 * initialize, shardEnded and shutdownRequested fail now and then. The
 * stream's policy retries forever, so a failure never skips a record. The
 * records a decision covers are told to the stream (simsource_processed)
 * as finished when the job comes back: that is the truth the checkpoint
 * invariant is checked against. A dispatch (a batch submitted) is told to
 * simcheck when it happens. */
#ifndef SHARDRUN_SIMPROC_H
#define SHARDRUN_SIMPROC_H

#include "proc/processor.h"
#include "sim.h"

/* Runs the job on w's processor; shard_job_done gets it back later. */
void simproc_submit(simworker_t *w, proc_job_t *job);
/* Frees the jobs still out (the worker is gone: they never come back). */
void simproc_drop(simworker_t *w);

#endif
