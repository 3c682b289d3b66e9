/* simsource: the simulated stream, and the source handles workers read it by.
 *
 * One stream of shards holding records: user records (sequence number,
 * sub-sequence number), some grouped as KPL aggregates (sub-records sharing
 * a sequence number). Records are appended while the run's faults last,
 * routed by hash key to the open shard that covers it; shards are split and
 * merged meanwhile (the parents closed, the children linked to them), as
 * Kinesis does.
 *
 * Each worker reads through a handle of its own (a source_t): a request
 * travels to the stream (a world timer), is answered there, and the answer
 * travels back (a timer of the worker's), so a paused worker's answers wait
 * for it and a crashed worker's are dropped. Faults: delays, transient
 * errors (throttling), expired iterators (also real ones, 5 minutes old),
 * and a closed shard's end told one read late.
 *
 * The stream is also the truth about processing: which user records a
 * processor finished at least once (simsource_processed). */
#ifndef SHARDRUN_SIMSOURCE_H
#define SHARDRUN_SIMSOURCE_H

#include "record/batch.h"
#include "sim.h"
#include "source/source.h"

typedef struct simrec {
    uint64_t seq;
    int64_t sub;
    int64_t nsub;          /* sub-records in its aggregate (1: a plain record) */
    uint32_t processed;    /* times a processor finished it */
} simrec_t;

typedef struct simshard {
    char id[32];
    int parent, adjacent;  /* indexes of the parents, -1 for none */
    uint64_t start_hash, end_hash;
    simrec_t *recs;        /* user records in order */
    size_t n, cap;
    int closed;
    size_t prefix;         /* the first `prefix` user records were all processed */
} simshard_t;

simsource_t *simsource_new(sim_t *sim, int nshards);
void simsource_free(simsource_t *src);

/* A worker's handle (source_destroy drops its answers still on their way). */
source_t *simsource_connect(simsource_t *src, simworker_t *w);

/* Appends n user records to the open shards (by hash key). */
void simsource_put(simsource_t *src, int n);
/* Splits an open shard / merges two adjacent open shards: 0 done, -1 none fits. */
int simsource_split(simsource_t *src);
int simsource_merge(simsource_t *src);

size_t simsource_count(const simsource_t *src);
simshard_t *simsource_shard(simsource_t *src, size_t i);
/* The shard with that id (its index in *idx), or NULL. */
simshard_t *simsource_find(simsource_t *src, const char *id, size_t *idx);
/* The index of user record (seq, sub) in sh, or -1. seq is as a checkpoint
 * or a batch writes it. */
int64_t simsource_record_index(const simshard_t *sh, const char *seq, int64_t sub);

/* A processor finished the first n records of b, a batch of shard `id`.
 * Returns 0, or -1 (with sim_fail) when b holds a record the shard does not have. */
int simsource_processed(simsource_t *src, const char *id, const batch_t *b, size_t n);
/* Every user record of every shard was processed at least once. */
int simsource_all_processed(const simsource_t *src);
size_t simsource_records(const simsource_t *src);

#endif
