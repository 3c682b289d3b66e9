#include "shardsync.h"

#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "record/seqnum.h"
#include "base/xalloc.h"

/* A lease this run creates. Its children wait for it: a child's row never
 * exists without its parents' rows (a worker would take a missing parent
 * for a finished one). */
typedef struct sync_create {
    struct shardsync *ss;          /* the create's callback gets this create */
    size_t stream;                 /* index in cfg->streams */
    const source_shard_t *shard;   /* in ss->lists[stream] */
    const char *checkpoint;        /* a SEQNUM_* sentinel */
    size_t waiting;                /* parents in this run not created yet */
    int state;                     /* CREATE_* */
    size_t *children;              /* indexes in ss->creates */
    size_t nchildren;
} sync_create_t;

enum { CREATE_WAITING, CREATE_SENT, CREATE_DONE, CREATE_SKIPPED };

/* A parent and one of its children, as a listing showed them. */
typedef struct sync_link {
    char *parent, *child;
} sync_link_t;

/* The shard ids a listing of one stream showed, sorted; and its links,
 * sorted by parent. */
typedef struct sync_known {
    char **ids;
    size_t n;
    sync_link_t *links;
    size_t nlinks;
    int listed;                    /* a listing succeeded at least once */
} sync_known_t;

/* A listing's callback context: one per stream, in the shardsync (no
 * allocation per request, so nothing leaks when a request is dropped). */
typedef struct list_ctx {
    struct shardsync *ss;
    size_t idx;
} list_ctx_t;

struct shardsync {
    sched_t *sched;
    source_t *source;
    lease_store_t *store;
    const config_t *cfg;
    void (*synced)(void *ud);
    void (*failed)(void *ud, int status, const char *msg);
    void *ud;
    source_shard_list_t **lists;   /* per configured stream, from this run */
    list_ctx_t *list_ctx;          /* per configured stream */
    sync_known_t *known;           /* per configured stream, from the last successful listing */
    sync_create_t *creates;        /* this run's, parents before children */
    size_t ncreates, creates_cap;
    size_t pending;                /* list requests in flight */
    lease_list_t *table;           /* this run's scan, until the listings are in */
    int64_t scan_sent_ms;          /* when this run's scan was sent */
    int running;
    int again;                     /* a run was asked for during this one */
    size_t writes;                 /* creates/deletes in flight */
    int64_t runs;
    int reported_conflict;         /* a lease of another stream under our key was logged */
    /* the lease keys that started rows of one table name as parents, sorted
     * (shardsync_resurrected; dropped by shardsync_table_gone) */
    const lease_list_t *indexed;
    char **started_parents;
    size_t nstarted_parents;
};

static const config_stream_t *shardsync_stream_cfg(const config_t *cfg, const char *stream)
{
    int idx = config_stream_index(cfg, stream);
    return idx >= 0 ? &cfg->streams[idx] : NULL;
}

char *shardsync_lease_key(const config_t *cfg, const char *stream, const char *shard)
{
    const config_stream_t *cs = shardsync_stream_cfg(cfg, stream);
    const char *kcl = cs ? cs->kcl_stream_identifier : NULL;
    if (!kcl && cfg->nstreams == 1) return xstrdup(shard);
    size_t n = strlen(kcl ? kcl : stream) + strlen(shard) + 2;
    char *k = xmalloc(n); /* owned by the caller */
    snprintf(k, n, "%s:%s", kcl ? kcl : stream, shard);
    return k;
}

/* The KCL's multi-stream rows name their stream by its identifier
 * ("account:stream:epoch", in streamName or as the leaseKey's prefix). */
static const char *shardsync_kcl_stream(const config_t *cfg, const lease_t *l)
{
    for (size_t i = 0; i < cfg->nstreams; i++) {
        const char *id = cfg->streams[i].kcl_stream_identifier;
        size_t n = id ? strlen(id) : 0;
        if (!id) continue;
        if (l->stream ? !strcmp(l->stream, id) : l->key && !strncmp(l->key, id, n) && l->key[n] == ':')
            return cfg->streams[i].name;
    }
    return NULL;
}

const char *shardsync_lease_stream(const config_t *cfg, const lease_t *l)
{
    const char *kcl = shardsync_kcl_stream(cfg, l);
    if (kcl) return kcl;
    if (l->stream) return l->stream;
    return cfg->nstreams == 1 ? cfg->streams[0].name : NULL;
}

static int shardsync_str_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* 1: the last listing of the stream showed the shard; 0: it did not (gone
 * past retention); -1: no listing yet. */
static int shardsync_listed(const shardsync_t *ss, const char *stream, const char *shard)
{
    int idx = config_stream_index(ss->cfg, stream);
    if (idx < 0 || !ss->known[idx].listed) return -1;
    const sync_known_t *k = &ss->known[idx];
    return bsearch(&shard, k->ids, k->n, sizeof *k->ids, shardsync_str_cmp) != NULL;
}

/* A lease that moved past its initial position has started: its parents
 * were finished then (and may have been cleaned up since). */
static int shardsync_started(const lease_t *l)
{
    return l->checkpoint && (!seqnum_is_sentinel(l->checkpoint) || !strcmp(l->checkpoint, SEQNUM_SHARD_END));
}

/* Its parents do not matter: it has started, or it starts at LATEST (a
 * stream first seen at LATEST gives its closed shards no lease). */
static int shardsync_parents_moot(const lease_t *l)
{
    return shardsync_started(l) || (l->checkpoint && !strcmp(l->checkpoint, SEQNUM_LATEST));
}

/* The parents' rows: 1 all finished or started, 0 one is unfinished, and
 * with ss: a missing row counts as finished only when the stream's last
 * listing no longer shows it. Without ss (status), missing rows are not judged. */
static int shardsync_parents_check(const config_t *cfg, const shardsync_t *ss, const lease_t *l,
                                   const lease_list_t *all)
{
    const char *stream = shardsync_lease_stream(cfg, l);
    if (!l->nparents || shardsync_parents_moot(l)) return 1;
    if (!stream) return 0;
    for (size_t i = 0; i < l->nparents; i++) {
        char *key = shardsync_lease_key(cfg, stream, l->parents[i]);
        const lease_t *p = lease_list_find(all, key);
        free(key);
        if (p && (!p->checkpoint || strcmp(p->checkpoint, SEQNUM_SHARD_END))) return 0;
        if (!p && ss && shardsync_listed(ss, stream, l->parents[i]) != 0) return 0;
    }
    return 1;
}

int shardsync_parents_done(const shardsync_t *ss, const lease_t *l, const lease_list_t *all)
{
    return shardsync_parents_check(ss->cfg, ss, l, all);
}

int shardsync_parent_rows_done(const config_t *cfg, const lease_t *l, const lease_list_t *all)
{
    return shardsync_parents_check(cfg, NULL, l, all);
}

void shardsync_table_gone(shardsync_t *ss, const lease_list_t *all)
{
    if (all && all != ss->indexed) return;
    for (size_t i = 0; i < ss->nstarted_parents; i++) free(ss->started_parents[i]);
    free(ss->started_parents);
    ss->started_parents = NULL;
    ss->nstarted_parents = 0;
    ss->indexed = NULL;
}

/* The index of `all`: every lease key a started row names as a parent.
 * O(n log n), once per table. */
static void shardsync_index(shardsync_t *ss, const lease_list_t *all)
{
    shardsync_table_gone(ss, NULL);
    size_t n = 0;
    for (size_t i = 0; i < all->count; i++) n += all->leases[i].nparents;
    ss->started_parents = xcalloc(n ? n : 1, sizeof *ss->started_parents); /* dropped by shardsync_table_gone */
    for (size_t i = 0; i < all->count; i++) {
        const lease_t *l = &all->leases[i];
        const char *stream = shardsync_lease_stream(ss->cfg, l);
        if (l->invalid || !stream || !shardsync_started(l)) continue;
        for (size_t k = 0; k < l->nparents; k++)
            ss->started_parents[ss->nstarted_parents++] = shardsync_lease_key(ss->cfg, stream, l->parents[k]);
    }
    qsort(ss->started_parents, ss->nstarted_parents, sizeof *ss->started_parents, shardsync_str_cmp);
    ss->indexed = all;
}

/* 1 if a descendant of shard `id` (by the stream's last listing) has a row
 * that started: rows of the generations between may be deleted already. */
static int shardsync_listed_descendant_started(const shardsync_t *ss, int idx, const char *stream, const char *id,
                                               const lease_list_t *all, int depth)
{
    const sync_known_t *k = &ss->known[idx];
    if (depth > 64) return 0;
    size_t lo = 0, hi = k->nlinks; /* the first link from id, then the rest */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(k->links[mid].parent, id) < 0) lo = mid + 1;
        else hi = mid;
    }
    for (size_t i = lo; i < k->nlinks && !strcmp(k->links[i].parent, id); i++) {
        char *key = shardsync_lease_key(ss->cfg, stream, k->links[i].child);
        const lease_t *child = lease_list_find(all, key);
        free(key);
        if (child && !child->invalid && shardsync_started(child)) return 1;
        if (shardsync_listed_descendant_started(ss, idx, stream, k->links[i].child, all, depth + 1)) return 1;
    }
    return 0;
}

int shardsync_resurrected(shardsync_t *ss, const lease_t *l, const lease_list_t *all)
{
    if (l->invalid || !l->key || !l->shard || !l->checkpoint || shardsync_started(l)) return 0;
    if (ss->indexed != all) shardsync_index(ss, all);
    const char *key = l->key;
    if (bsearch(&key, ss->started_parents, ss->nstarted_parents, sizeof *ss->started_parents, shardsync_str_cmp))
        return 1;
    const char *stream = shardsync_lease_stream(ss->cfg, l);
    int idx = config_stream_index(ss->cfg, stream);
    return idx >= 0 && shardsync_listed_descendant_started(ss, idx, stream, l->shard, all, 0);
}

shardsync_t *shardsync_new(sched_t *sched, source_t *source, lease_store_t *store, const config_t *cfg,
                           void (*synced)(void *ud), void (*failed)(void *ud, int status, const char *msg), void *ud)
{
    shardsync_t *ss = xcalloc(1, sizeof *ss); /* owned by the caller: shardsync_free */
    ss->sched = sched;
    ss->source = source;
    ss->store = store;
    ss->cfg = cfg;
    ss->synced = synced;
    ss->failed = failed;
    ss->ud = ud;
    ss->lists = xcalloc(cfg->nstreams, sizeof *ss->lists);
    ss->list_ctx = xcalloc(cfg->nstreams, sizeof *ss->list_ctx);
    for (size_t i = 0; i < cfg->nstreams; i++) ss->list_ctx[i] = (list_ctx_t){ss, i};
    ss->known = xcalloc(cfg->nstreams, sizeof *ss->known);
    return ss;
}

static void shardsync_clear_lists(shardsync_t *ss)
{
    for (size_t i = 0; i < ss->cfg->nstreams; i++) {
        source_shard_list_free(ss->lists[i]);
        ss->lists[i] = NULL;
    }
    for (size_t i = 0; i < ss->ncreates; i++) free(ss->creates[i].children);
    ss->ncreates = 0;
}

static void shardsync_clear_known(sync_known_t *k)
{
    for (size_t i = 0; i < k->n; i++) free(k->ids[i]);
    free(k->ids);
    for (size_t i = 0; i < k->nlinks; i++) {
        free(k->links[i].parent);
        free(k->links[i].child);
    }
    free(k->links);
    k->ids = NULL;
    k->links = NULL;
    k->n = k->nlinks = 0;
}

static int shardsync_link_cmp(const void *a, const void *b)
{
    return strcmp(((const sync_link_t *)a)->parent, ((const sync_link_t *)b)->parent);
}

/* Remembers which shards a successful listing showed (for missing parents)
 * and their parents (for rows that come back). */
static void shardsync_remember(shardsync_t *ss, size_t idx, const source_shard_list_t *l)
{
    sync_known_t *k = &ss->known[idx];
    shardsync_clear_known(k);
    k->ids = xcalloc(l->count ? l->count : 1, sizeof *k->ids); /* owned by ss->known */
    k->links = xcalloc(2 * l->count + 1, sizeof *k->links);
    for (size_t i = 0; i < l->count; i++) {
        const source_shard_t *sh = &l->shards[i];
        k->ids[i] = xstrdup(sh->id);
        if (sh->parent) k->links[k->nlinks++] = (sync_link_t){xstrdup(sh->parent), xstrdup(sh->id)};
        if (sh->adjacent_parent) k->links[k->nlinks++] = (sync_link_t){xstrdup(sh->adjacent_parent), xstrdup(sh->id)};
    }
    k->n = l->count;
    qsort(k->ids, k->n, sizeof *k->ids, shardsync_str_cmp);
    qsort(k->links, k->nlinks, sizeof *k->links, shardsync_link_cmp);
    k->listed = 1;
}

void shardsync_free(shardsync_t *ss)
{
    if (!ss) return;
    shardsync_table_gone(ss, NULL);
    lease_list_free(ss->table);
    shardsync_clear_lists(ss);
    for (size_t i = 0; i < ss->cfg->nstreams; i++) shardsync_clear_known(&ss->known[i]);
    free(ss->known);
    free(ss->creates);
    free(ss->lists);
    free(ss->list_ctx);
    free(ss);
}

int shardsync_busy(const shardsync_t *ss) { return ss->running; }
int64_t shardsync_runs(const shardsync_t *ss) { return ss->runs; }

static void shardsync_finish(shardsync_t *ss)
{
    if (ss->pending || ss->writes) return;
    shardsync_clear_lists(ss);
    ss->running = 0;
    ss->runs++;
    if (ss->synced) ss->synced(ss->ud);
    if (ss->again) {
        ss->again = 0;
        shardsync_run(ss);
    }
}

static void shardsync_write_done(void *ud, lease_status_t st, const char *msg, const lease_t *updated)
{
    shardsync_t *ss = ud;
    ss->writes--;
    if (st != LEASE_OK && st != LEASE_CONFLICT) {
        char q[512];
        log_warn("shard_sync_write_failed", "status=%s error=%s", lease_status_name(st), log_quote(msg, q, sizeof q));
    }
    shardsync_finish(ss);
}

static void shardsync_send_create(shardsync_t *ss, size_t idx);

/* A failed create: its descendants are not created in this run either. */
static void shardsync_skip_create(shardsync_t *ss, size_t idx)
{
    sync_create_t *c = &ss->creates[idx];
    if (c->state == CREATE_SKIPPED) return;
    c->state = CREATE_SKIPPED;
    for (size_t i = 0; i < c->nchildren; i++) shardsync_skip_create(ss, c->children[i]);
}

static void shardsync_create_done(void *ud, lease_status_t st, const char *msg, const lease_t *updated)
{
    sync_create_t *c = ud; /* ss->creates does not move during a run */
    shardsync_t *ss = c->ss;
    size_t idx = (size_t)(c - ss->creates);
    ss->writes--;
    if (st == LEASE_OK || st == LEASE_CONFLICT) { /* CONFLICT: a peer created it first */
        c->state = CREATE_DONE;
        for (size_t i = 0; i < c->nchildren; i++) {
            sync_create_t *child = &ss->creates[c->children[i]];
            if (child->state == CREATE_WAITING && --child->waiting == 0) shardsync_send_create(ss, c->children[i]);
        }
    } else {
        char q[512];
        log_warn("shard_sync_write_failed", "stream=%s shard=%s status=%s error=%s action=\"children wait for the "
                 "next sync\"", ss->cfg->streams[c->stream].name, c->shard->id, lease_status_name(st),
                 log_quote(msg, q, sizeof q));
        shardsync_skip_create(ss, idx);
    }
    shardsync_finish(ss);
}

/* 1 if some shard descending from `id` has a lease that started (so `id`
 * was finished, and its row cleaned up). A descendant's lease that has not
 * started waits for this one: it gets its row again. */
static int shardsync_descendant_leased(shardsync_t *ss, const config_stream_t *cs, const source_shard_list_t *l,
                                       const char *id, const lease_list_t *all, int depth)
{
    if (depth > 64) return 0;
    for (size_t i = 0; i < l->count; i++) {
        const source_shard_t *c = &l->shards[i];
        if (!(c->parent && !strcmp(c->parent, id)) && !(c->adjacent_parent && !strcmp(c->adjacent_parent, id)))
            continue;
        char *key = shardsync_lease_key(ss->cfg, cs->name, c->id);
        const lease_t *row = lease_list_find(all, key);
        int leased = row && !row->invalid && shardsync_parents_moot(row);
        free(key);
        if (leased || shardsync_descendant_leased(ss, cs, l, c->id, all, depth + 1)) return 1;
    }
    return 0;
}

static int shardsync_stream_has_leases(shardsync_t *ss, const config_stream_t *cs, const lease_list_t *all)
{
    for (size_t i = 0; i < all->count; i++) {
        const char *stream = shardsync_lease_stream(ss->cfg, &all->leases[i]);
        if (stream && !strcmp(stream, cs->name)) return 1;
    }
    return 0;
}

/* The run's scan is older than lease_duration (the run was slow, or the
 * worker paused): what it says is missing may have been created, finished
 * and deleted since, and creating it now would bring a finished row back.
 * The next run decides again. */
static int shardsync_stale(shardsync_t *ss)
{
    int64_t limit = ss->cfg->lease_duration_ms;
    return limit > 0 && sched_now_ms(ss->sched) - ss->scan_sent_ms >= limit;
}

static void shardsync_send_create(shardsync_t *ss, size_t idx)
{
    sync_create_t *c = &ss->creates[idx];
    if (shardsync_stale(ss)) {
        log_warn("shard_sync_stale", "stream=%s shard=%s scan_age_ms=%lld action=\"not created: the next sync "
                 "decides again\"", ss->cfg->streams[c->stream].name, c->shard->id,
                 (long long)(sched_now_ms(ss->sched) - ss->scan_sent_ms));
        shardsync_skip_create(ss, idx);
        return;
    }
    const config_stream_t *cs = &ss->cfg->streams[c->stream];
    const source_shard_t *sh = c->shard;
    const char *checkpoint = c->checkpoint;
    c->state = CREATE_SENT;
    lease_t l = {0};
    char *parents[2];
    l.key = shardsync_lease_key(ss->cfg, cs->name, sh->id);
    /* in the KCL's multi-stream form, streamName holds the stream identifier */
    l.stream = (char *)(cs->kcl_stream_identifier ? cs->kcl_stream_identifier : cs->name);
    l.shard = sh->id;
    l.checkpoint = (char *)checkpoint;
    if (sh->parent) parents[l.nparents++] = sh->parent;
    if (sh->adjacent_parent) parents[l.nparents++] = sh->adjacent_parent;
    l.parents = parents;
    l.start_hash = sh->start_hash;
    l.end_hash = sh->end_hash;
    log_info("lease_created", "stream=%s shard=%s lease=%s checkpoint=%s parents=%zu", cs->name, sh->id, l.key,
             checkpoint, l.nparents);
    ss->writes++;
    ss->store->ops->create(ss->store, &l, shardsync_create_done, c);
    free(l.key);
}

/* Queues a create; shardsync_send_creates sends them, parents first. */
static void shardsync_create(shardsync_t *ss, size_t stream, const source_shard_t *sh, const char *checkpoint)
{
    if (ss->ncreates == ss->creates_cap) {
        ss->creates_cap = ss->creates_cap ? ss->creates_cap * 2 : 16;
        ss->creates = xrealloc(ss->creates, ss->creates_cap * sizeof *ss->creates);
    }
    ss->creates[ss->ncreates++] = (sync_create_t){.ss = ss, .stream = stream, .shard = sh, .checkpoint = checkpoint};
}

typedef struct create_ref {
    size_t stream;
    const char *id;
    size_t idx;
} create_ref_t;

static int shardsync_ref_cmp(const void *a, const void *b)
{
    const create_ref_t *x = a, *y = b;
    if (x->stream != y->stream) return x->stream < y->stream ? -1 : 1;
    return strcmp(x->id, y->id);
}

/* Links each queued create to the queued creates of its parents and sends
 * those whose parents are not being created: the rest follow as their
 * parents' creates succeed (a tree of waves, each wave concurrent). */
static void shardsync_send_creates(shardsync_t *ss)
{
    size_t n = ss->ncreates;
    create_ref_t *refs = xcalloc(n ? n : 1, sizeof *refs);
    for (size_t i = 0; i < n; i++) refs[i] = (create_ref_t){ss->creates[i].stream, ss->creates[i].shard->id, i};
    qsort(refs, n, sizeof *refs, shardsync_ref_cmp);
    for (size_t i = 0; i < n; i++) {
        sync_create_t *c = &ss->creates[i];
        const char *parents[2] = {c->shard->parent, c->shard->adjacent_parent};
        for (int k = 0; k < 2; k++) {
            if (!parents[k]) continue;
            create_ref_t key = {c->stream, parents[k], 0};
            create_ref_t *p = bsearch(&key, refs, n, sizeof *refs, shardsync_ref_cmp);
            if (!p) continue;
            sync_create_t *pc = &ss->creates[p->idx];
            pc->children = xrealloc(pc->children, (pc->nchildren + 1) * sizeof *pc->children);
            pc->children[pc->nchildren++] = i;
            c->waiting++;
        }
    }
    free(refs);
    for (size_t i = 0; i < n; i++)
        if (ss->creates[i].state == CREATE_WAITING && ss->creates[i].waiting == 0) shardsync_send_create(ss, i);
}

/* A finished parent is deleted once every child has a lease that started
 * (is owned, or has moved past its initial position). */
static void shardsync_cleanup(shardsync_t *ss, const config_stream_t *cs, const source_shard_list_t *l,
                              const lease_list_t *all)
{
    for (size_t i = 0; i < all->count; i++) {
        const lease_t *p = &all->leases[i];
        const char *stream = shardsync_lease_stream(ss->cfg, p);
        if (p->invalid || !stream || strcmp(stream, cs->name)) continue;
        if (shardsync_resurrected(ss, p, all)) {
            log_warn("lease_deleted", "stream=%s shard=%s lease=%s checkpoint=%s reason=\"finished before (a child "
                     "started), its row came back: a create sent before it finished was carried out after its "
                     "row was deleted\"", cs->name, p->shard, p->key, p->checkpoint);
            ss->writes++;
            ss->store->ops->remove(ss->store, p, shardsync_write_done, ss);
            continue;
        }
        if (strcmp(p->checkpoint, SEQNUM_SHARD_END)) continue;
        size_t children = 0, started = 0;
        for (size_t j = 0; j < l->count; j++) {
            const source_shard_t *c = &l->shards[j];
            if (!(c->parent && !strcmp(c->parent, p->shard)) &&
                !(c->adjacent_parent && !strcmp(c->adjacent_parent, p->shard)))
                continue;
            children++;
            char *key = shardsync_lease_key(ss->cfg, cs->name, c->id);
            const lease_t *cl = lease_list_find(all, key);
            free(key);
                /* started = moved past its initial position: a child merely owned
             * could be released again, and would then wait for this row */
            if (cl && !cl->invalid && shardsync_started(cl)) started++;
        }
        if (children > 0 && started == children) {
            log_info("lease_deleted", "stream=%s shard=%s lease=%s reason=\"finished, all children started\"",
                     cs->name, p->shard, p->key);
            ss->writes++;
            ss->store->ops->remove(ss->store, p, shardsync_write_done, ss);
        }
    }
}

/* A row under one of this stream's keys that names another stream: the
 * stream was renamed (or another one configured) under the same application.
 * Never a silent no-op: at start the worker exits 2, later it is logged. */
static int shardsync_foreign_row(shardsync_t *ss, const config_stream_t *cs, const source_shard_list_t *l,
                                 const lease_list_t *all)
{
    for (size_t i = 0; i < l->count; i++) {
        char *key = shardsync_lease_key(ss->cfg, cs->name, l->shards[i].id);
        const lease_t *row = lease_list_find(all, key);
        free(key);
        /* compared as mapped: a KCL multi-stream row names its stream by its identifier */
        const char *owner = row && row->stream ? shardsync_lease_stream(ss->cfg, row) : NULL;
        if (!row || row->invalid || !owner || !strcmp(owner, cs->name)) continue;
        const config_t *cfg = ss->cfg;
        char msg[2048];
        snprintf(msg, sizeof msg, "lease %s in %s %s belongs to stream %s, but this config runs stream %s under "
                 "the same application %s (a renamed stream?): give the new stream its own application name, "
                 "or delete the old leases (%s%s%s) if stream %s's checkpoints are no longer needed",
                 row->key, cfg->leases.type == BACKEND_LOCAL ? "lease file" : "DynamoDB table",
                 cfg->leases.type == BACKEND_LOCAL ? cfg->leases.path : cfg->leases.table, row->stream, cs->name,
                 cfg->application, cfg->leases.type == BACKEND_LOCAL ? "table " : "table ", cfg->leases.table,
                 cfg->leases.type == BACKEND_LOCAL ? " in that file" : "", row->stream);
        if (ss->runs == 0 && ss->failed) {
            ss->failed(ss->ud, 2, msg);
            return 1;
        }
        if (!ss->reported_conflict) {
            char q[2048];
            log_error("lease_stream_mismatch", "stream=%s lease=%s lease_stream=%s error=%s action=skipped",
                      cs->name, row->key, row->stream, log_quote(msg, q, sizeof q));
            ss->reported_conflict = 1;
        }
        return 0;
    }
    return 0;
}

static void shardsync_reconcile_stream(shardsync_t *ss, size_t idx, const source_shard_list_t *l,
                                       const lease_list_t *all)
{
    const config_stream_t *cs = &ss->cfg->streams[idx];
    int first = !shardsync_stream_has_leases(ss, cs, all);
    const char *initial = cs->initial_position == POS_LATEST         ? SEQNUM_LATEST
                          : cs->initial_position == POS_AT_TIMESTAMP ? SEQNUM_AT_TIMESTAMP
                                                                     : SEQNUM_TRIM_HORIZON;
    /* Queued here, sent by shardsync_send_creates: parents before children. */
    for (size_t i = 0; i < l->count; i++) {
        const source_shard_t *sh = &l->shards[i];
        char *key = shardsync_lease_key(ss->cfg, cs->name, sh->id);
        int exists = lease_list_find(all, key) != NULL;
        free(key);
        if (exists) continue;
        int closed = sh->end_seq != NULL;
        if (closed && shardsync_descendant_leased(ss, cs, l, sh->id, all, 0)) continue;
        if (first) {
            if (cs->initial_position == POS_LATEST && closed) continue;
            /* a shard whose parent gets no lease (LATEST) starts at LATEST too */
            shardsync_create(ss, idx, sh, initial);
        } else {
            shardsync_create(ss, idx, sh, SEQNUM_TRIM_HORIZON);
        }
    }
    shardsync_cleanup(ss, cs, l, all);
}

/* The table and every listing are in: create what is missing, clean up. */
static void shardsync_reconcile(shardsync_t *ss)
{
    lease_list_t *all = ss->table;
    ss->table = NULL;
    for (size_t i = 0; i < ss->cfg->nstreams; i++) {
        if (!ss->lists[i]) continue;
        if (shardsync_foreign_row(ss, &ss->cfg->streams[i], ss->lists[i], all)) {
            shardsync_table_gone(ss, all);
            lease_list_free(all);
            return; /* the worker stops: no run to finish */
        }
        shardsync_reconcile_stream(ss, i, ss->lists[i], all);
    }
    shardsync_send_creates(ss);
    shardsync_table_gone(ss, all);
    lease_list_free(all);
    shardsync_finish(ss);
}

static void shardsync_on_shards(void *ud, source_err_t err, const char *msg, source_shard_list_t *shards)
{
    list_ctx_t *ctx = ud;
    shardsync_t *ss = ctx->ss;
    size_t idx = ctx->idx;
    ss->pending--;
    if (err) {
        char q[512];
        log_error("shard_sync_failed", "stream=%s step=list_shards status=%s error=%s", ss->cfg->streams[idx].name,
                  source_err_name(err), log_quote(msg, q, sizeof q));
        if ((err == SOURCE_EFATAL || err == SOURCE_ENOTFOUND) && ss->runs == 0 && ss->failed) {
            ss->failed(ss->ud, 1, msg ? msg : source_err_name(err));
            return; /* the worker stops: no run to finish */
        }
    } else {
        ss->lists[idx] = shards;
        shardsync_remember(ss, idx, shards);
    }
    if (ss->pending == 0) shardsync_reconcile(ss);
}

/* The table comes first, the listings after it: a row deleted before the
 * scan belongs to a shard that finished and whose children started before
 * then, which every later listing shows (so the shard is not given a row
 * again). The other order could pair a listing from before a split with a
 * table from after the parent's row was deleted, and create it again. */
static void shardsync_on_table(void *ud, lease_status_t st, const char *msg, lease_list_t *all)
{
    shardsync_t *ss = ud;
    ss->pending--;
    if (st != LEASE_OK) {
        char q[512];
        log_warn("shard_sync_failed", "step=scan status=%s error=%s", lease_status_name(st),
                 log_quote(msg, q, sizeof q));
        shardsync_finish(ss);
        return;
    }
    ss->table = all;
    ss->pending = ss->cfg->nstreams;
    for (size_t i = 0; i < ss->cfg->nstreams; i++)
        source_list_shards(ss->source, ss->cfg->streams[i].name, shardsync_on_shards, &ss->list_ctx[i]);
}

void shardsync_run(shardsync_t *ss)
{
    if (ss->running) {
        ss->again = 1;
        return;
    }
    ss->running = 1;
    ss->pending = 1;
    ss->scan_sent_ms = sched_now_ms(ss->sched);
    ss->store->ops->list(ss->store, shardsync_on_table, ss);
}
