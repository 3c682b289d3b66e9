#include "simcheck.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/xalloc.h"
#include "simsource.h"
#include "simstore.h"
#include "simworker.h"

/* A checkpoint position, compared by the checker's own rules. */
typedef struct pos {
    int rank;                    /* -1 an initial-position sentinel, 0 a record, 1 SHARD_END */
    uint64_t seq;
    int64_t sub;
} pos_t;

/* What the checker knows of one lease (one shard). */
typedef struct truth {
    int64_t *deadline;           /* per worker: deadline(W, K), 0 when none */
    unsigned char *gave_up;      /* per worker: its last release or handoff of K was carried out */
    size_t nworkers;
    int last;                    /* the last worker that dispatched K, -1 none */
    int64_t last_ms;
    int seen;                    /* a checkpoint was seen */
    pos_t max;                   /* the furthest checkpoint seen, ever (a row deleted keeps it) */
    char max_text[64];
    int life_seen;               /* the same for the row as it is now (since it was created) */
    pos_t life_max;
    char life_text[64];
} truth_t;

struct simcheck {
    sim_t *sim;
    truth_t *t;                  /* per shard, by the stream's index */
    size_t n;
    uint64_t version;            /* the store's, at the last row check */
    simcheck_counts_t counts;
};

simcheck_t *simcheck_new(sim_t *sim)
{
    simcheck_t *c = xcalloc(1, sizeof *c); /* the run's: simcheck_free */
    c->sim = sim;
    return c;
}

void simcheck_free(simcheck_t *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free(c->t[i].deadline);
        free(c->t[i].gave_up);
    }
    free(c->t);
    free(c);
}

simcheck_counts_t simcheck_counts(const simcheck_t *c) { return c->counts; }

static pos_t pos_of(const char *cp, int64_t sub)
{
    if (!cp) return (pos_t){-1, 0, 0};
    if (!strcmp(cp, "SHARD_END")) return (pos_t){1, 0, 0};
    char *end;
    uint64_t v = strtoull(cp, &end, 10);
    if (!*cp || *end) return (pos_t){-1, 0, 0};
    return (pos_t){0, v, sub};
}

static int pos_cmp(pos_t a, pos_t b)
{
    if (a.rank != b.rank) return a.rank < b.rank ? -1 : 1;
    if (a.rank) return 0;
    if (a.seq != b.seq) return a.seq < b.seq ? -1 : 1;
    return (a.sub > b.sub) - (a.sub < b.sub);
}

/* The truth of the lease of shard `key`, grown to the stream and workers. */
static truth_t *truth_of(simcheck_t *c, const char *key, size_t *shard)
{
    sim_t *sim = c->sim;
    size_t idx;
    if (!simsource_find(sim->source, key, &idx)) return NULL;
    if (idx >= c->n) {
        size_t n = simsource_count(sim->source);
        c->t = xrealloc(c->t, n * sizeof *c->t);
        memset(&c->t[c->n], 0, (n - c->n) * sizeof *c->t);
        for (size_t i = c->n; i < n; i++) c->t[i].last = -1;
        c->n = n;
    }
    truth_t *t = &c->t[idx];
    if (t->nworkers < sim->nworkers) {
        t->deadline = xrealloc(t->deadline, sim->nworkers * sizeof *t->deadline);
        t->gave_up = xrealloc(t->gave_up, sim->nworkers);
        for (size_t i = t->nworkers; i < sim->nworkers; i++) {
            t->deadline[i] = 0;
            t->gave_up[i] = 0;
        }
        t->nworkers = sim->nworkers;
    }
    if (shard) *shard = idx;
    return t;
}

static const char *worker_id(sim_t *sim, int w)
{
    return w >= 0 && (size_t)w < sim->nworkers ? sim->workers[w]->id : "-";
}

static int names(const lease_t *row, const char *id)
{
    return row && row->owner && !strcmp(row->owner, id);
}

void simcheck_write(sim_t *sim, int worker, int kind, const lease_t *before, int64_t sent_ms, lease_status_t st,
                    const lease_t *after)
{
    simcheck_t *c = sim->check;
    const lease_t *row = after ? after : before;
    if (st != LEASE_OK || !row) return;
    truth_t *t = truth_of(c, row->key, NULL);
    if (!t) {
        sim_fail(sim, "lease %s: a %d write on a lease of no shard of the stream", row->key, kind);
        return;
    }
    const char *me = worker_id(sim, worker);
    switch (kind) {
    case LEASE_WRITE_TAKE:
    case LEASE_WRITE_RENEW:
    case LEASE_WRITE_CHECKPOINT:
        if (!names(after, me)) {
            sim_fail(sim, "lease %s: worker %s's %s was carried out, but the row names %s", row->key, me,
                     kind == LEASE_WRITE_TAKE ? "take" : kind == LEASE_WRITE_RENEW ? "renewal" : "checkpoint",
                     after && after->owner ? after->owner : "nobody");
            return;
        }
        if (sent_ms + sim->p.lease_duration_ms > t->deadline[worker])
            t->deadline[worker] = sent_ms + sim->p.lease_duration_ms;
        if (kind == LEASE_WRITE_TAKE) t->gave_up[worker] = 0;
        break;
    case LEASE_WRITE_REMOVE:
        t->life_seen = 0; /* a row created again under the key starts its own life */
        break;
    case LEASE_WRITE_RELEASE:
    case LEASE_WRITE_HANDOFF:
        if (names(before, me)) t->gave_up[worker] = 1;
        /* handed to a worker that may have given it up before: its own again */
        for (size_t k = 0; kind == LEASE_WRITE_HANDOFF && k < sim->nworkers; k++)
            if (names(after, sim->workers[k]->id)) t->gave_up[k] = 0;
        break;
    default:
        break;
    }
}

/* W's lease on the shard is valid now (see simcheck.h). */
static int valid(sim_t *sim, const truth_t *t, int w, const lease_t *row)
{
    if (names(row, worker_id(sim, w))) return 1;
    return sim->now < t->deadline[w] && !t->gave_up[w];
}

void simcheck_dispatch(sim_t *sim, int worker, const char *key, const batch_t *b)
{
    simcheck_t *c = sim->check;
    size_t idx;
    truth_t *t = truth_of(c, key, &idx);
    if (!t) {
        sim_fail(sim, "worker %s dispatched lease %s, a lease of no shard of the stream", worker_id(sim, worker), key);
        return;
    }
    const lease_t *row = lease_list_find(simstore_table(sim->store), key);
    const char *me = worker_id(sim, worker);
    c->counts.inv1++;
    if (!valid(sim, t, worker, row)) {
        sim_fail(sim, "invariant 1: shard %s: worker %s dispatched a batch (first %s) at t=%" PRId64
                 " outside its validity window: store owner=%s counter=%lld, its deadline=%" PRId64
                 " (last send + lease_duration), gave_up=%d",
                 key, me, b->count ? batch_seq(b, 0) : "-", sim->now, row && row->owner ? row->owner : "-",
                 row ? (long long)row->counter : -1LL, t->deadline[worker], t->gave_up[worker]);
        return;
    }
    if (t->last >= 0 && t->last != worker && valid(sim, t, t->last, row)) {
        sim_fail(sim, "invariant 1: shard %s: worker %s dispatched a batch (first %s) at t=%" PRId64
                 " while the window of %s, which dispatched at t=%" PRId64 ", is still open: store owner=%s "
                 "counter=%lld, %s's deadline=%" PRId64 " gave_up=%d; %s's deadline=%" PRId64,
                 key, me, b->count ? batch_seq(b, 0) : "-", sim->now, worker_id(sim, t->last), t->last_ms,
                 row && row->owner ? row->owner : "-", row ? (long long)row->counter : -1LL,
                 worker_id(sim, t->last), t->deadline[t->last], t->gave_up[t->last], me, t->deadline[worker]);
        return;
    }
    t->last = worker;
    t->last_ms = sim->now;
    c->counts.inv2++;
    if (t->seen && b->count && pos_cmp(pos_of(batch_seq(b, 0), b->recs[0].sub_seq), t->max) <= 0) {
        sim_fail(sim, "invariant 2: shard %s: worker %s dispatched record %s/%" PRId64 " at t=%" PRId64
                 ", at or before the checkpoint %s written earlier: a record checkpointed as done is processed "
                 "again", key, me, batch_seq(b, 0), b->recs[0].sub_seq, sim->now, t->max_text);
        return;
    }
    const simshard_t *sh = simsource_shard(sim->source, idx);
    int parents[2] = {sh->parent, sh->adjacent};
    for (int k = 0; k < 2; k++) {
        if (parents[k] < 0) continue;
        c->counts.inv3++;
        const simshard_t *p = simsource_shard(sim->source, (size_t)parents[k]);
        truth_t *pt = truth_of(c, p->id, NULL);
        if (!pt->seen || pt->max.rank != 1)
            sim_fail(sim, "invariant 3: shard %s: worker %s dispatched a batch (first %s) at t=%" PRId64
                     " before its parent %s ended: the parent's checkpoint is %s",
                     key, me, b->count ? batch_seq(b, 0) : "-", sim->now, p->id, pt->seen ? pt->max_text : "none");
    }
}

/* Invariant 2 on one row. */
static void simcheck_row(simcheck_t *c, const lease_t *row)
{
    sim_t *sim = c->sim;
    size_t idx;
    truth_t *t = truth_of(c, row->key, &idx);
    if (!t) return; /* reported when written */
    c->counts.inv2++;
    pos_t p = pos_of(row->checkpoint, row->checkpoint_sub);
    if (t->life_seen && pos_cmp(p, t->life_max) < 0) {
        sim_fail(sim, "invariant 2: shard %s: the checkpoint moved backwards from %s to %s/%" PRId64
                 " (owner=%s counter=%lld)",
                 row->key, t->life_text, row->checkpoint, row->checkpoint_sub, row->owner ? row->owner : "-",
                 (long long)row->counter);
        return;
    }
    const simshard_t *sh = simsource_shard(sim->source, idx);
    if (p.rank == 0) {
        int64_t k = simsource_record_index(sh, row->checkpoint, row->checkpoint_sub);
        if (k < 0) {
            sim_fail(sim, "invariant 2: shard %s: the checkpoint %s/%" PRId64 " names no record of the shard",
                     row->key, row->checkpoint, row->checkpoint_sub);
            return;
        }
        if ((size_t)k >= sh->prefix) {
            sim_fail(sim, "invariant 2: shard %s: the checkpoint %s/%" PRId64 " (record #%" PRId64 ") passes record "
                     "#%zu (%" PRIu64 "/%" PRId64 "), which no worker finished processing (owner=%s)",
                     row->key, row->checkpoint, row->checkpoint_sub, k, sh->prefix, sh->recs[sh->prefix].seq,
                     sh->recs[sh->prefix].sub, row->owner ? row->owner : "-");
            return;
        }
    } else if (p.rank == 1 && (!sh->closed || sh->prefix < sh->n)) {
        sim_fail(sim, "invariant 2: shard %s: checkpoint SHARD_END on a shard %s (%zu of %zu records processed)",
                 row->key, sh->closed ? "closed" : "still open", sh->prefix, sh->n);
        return;
    }
    if (!t->life_seen || pos_cmp(p, t->life_max) > 0) {
        t->life_seen = 1;
        t->life_max = p;
        snprintf(t->life_text, sizeof t->life_text, "%s/%" PRId64, row->checkpoint, row->checkpoint_sub);
    }
    if (!t->seen || pos_cmp(p, t->max) > 0) {
        t->seen = 1;
        t->max = p;
        snprintf(t->max_text, sizeof t->max_text, "%s/%" PRId64, row->checkpoint, row->checkpoint_sub);
    }
}

void simcheck_step(sim_t *sim)
{
    simcheck_t *c = sim->check;
    uint64_t v = simstore_version(sim->store);
    if (v == c->version) return; /* no row changed; the processed records only grew */
    c->version = v;
    const lease_list_t *table = simstore_table(sim->store);
    for (size_t i = 0; i < table->count && !sim->failure[0]; i++) simcheck_row(c, &table->leases[i]);
}

int simcheck_all_ended(sim_t *sim)
{
    simcheck_t *c = sim->check;
    for (size_t i = 0; i < simsource_count(sim->source); i++) {
        const simshard_t *sh = simsource_shard(sim->source, i);
        if (!sh->closed) continue;
        if (i >= c->n || !c->t[i].seen || c->t[i].max.rank != 1) return 0;
    }
    return 1;
}

void simcheck_end(sim_t *sim)
{
    simcheck_t *c = sim->check;
    for (size_t i = 0; i < simsource_count(sim->source) && !sim->failure[0]; i++) {
        const simshard_t *sh = simsource_shard(sim->source, i);
        c->counts.inv4 += sh->n;
        const lease_t *row = lease_list_find(simstore_table(sim->store), sh->id);
        if (sh->prefix < sh->n) {
            size_t missing = 0;
            for (size_t k = sh->prefix; k < sh->n; k++) missing += sh->recs[k].processed == 0;
            sim_fail(sim, "invariant 4: shard %s: %zu of %zu records never processed, the first #%zu (%" PRIu64
                     "/%" PRId64 "); lease owner=%s checkpoint=%s",
                     sh->id, missing, sh->n, sh->prefix, sh->recs[sh->prefix].seq, sh->recs[sh->prefix].sub,
                     row && row->owner ? row->owner : "-", row ? row->checkpoint : "(no row)");
        } else if (sh->closed && (i >= c->n || !c->t[i].seen || c->t[i].max.rank != 1)) {
            sim_fail(sim, "invariant 4: shard %s: closed and every record processed, but its checkpoint never "
                     "reached SHARD_END (it is %s; owner=%s)",
                     sh->id, row ? row->checkpoint : "(no row)", row && row->owner ? row->owner : "-");
        }
    }
}
