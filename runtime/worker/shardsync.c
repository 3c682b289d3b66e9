#include "shardsync.h"

#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "record/seqnum.h"
#include "base/xalloc.h"

struct shardsync {
    source_t *source;
    lease_store_t *store;
    const config_t *cfg;
    void (*synced)(void *ud);
    void (*failed)(void *ud, const char *msg);
    void *ud;
    source_shard_list_t **lists;   /* per configured stream, from this run */
    size_t pending;                /* list requests in flight */
    int running;
    int again;                     /* a run was asked for during this one */
    size_t writes;                 /* creates/deletes in flight */
    int64_t runs;
};

char *shardsync_lease_key(const config_t *cfg, const char *stream, const char *shard)
{
    if (cfg->nstreams == 1) return xstrdup(shard);
    size_t n = strlen(stream) + strlen(shard) + 2;
    char *k = xmalloc(n); /* owned by the caller */
    snprintf(k, n, "%s:%s", stream, shard);
    return k;
}

const char *shardsync_lease_stream(const config_t *cfg, const lease_t *l)
{
    if (l->stream) return l->stream;
    return cfg->nstreams == 1 ? cfg->streams[0].name : NULL;
}

int shardsync_parents_done(const config_t *cfg, const lease_t *l, const lease_list_t *all)
{
    const char *stream = shardsync_lease_stream(cfg, l);
    for (size_t i = 0; i < l->nparents && stream; i++) {
        char *key = shardsync_lease_key(cfg, stream, l->parents[i]);
        const lease_t *p = lease_list_find(all, key);
        free(key);
        if (p && (!p->checkpoint || strcmp(p->checkpoint, SEQNUM_SHARD_END))) return 0;
    }
    return 1;
}

shardsync_t *shardsync_new(source_t *source, lease_store_t *store, const config_t *cfg,
                           void (*synced)(void *ud), void (*failed)(void *ud, const char *msg), void *ud)
{
    shardsync_t *ss = xcalloc(1, sizeof *ss); /* owned by the caller: shardsync_free */
    ss->source = source;
    ss->store = store;
    ss->cfg = cfg;
    ss->synced = synced;
    ss->failed = failed;
    ss->ud = ud;
    ss->lists = xcalloc(cfg->nstreams, sizeof *ss->lists);
    return ss;
}

static void shardsync_clear_lists(shardsync_t *ss)
{
    for (size_t i = 0; i < ss->cfg->nstreams; i++) {
        source_shard_list_free(ss->lists[i]);
        ss->lists[i] = NULL;
    }
}

void shardsync_free(shardsync_t *ss)
{
    if (!ss) return;
    shardsync_clear_lists(ss);
    free(ss->lists);
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

/* 1 if some shard descending from `id` has a lease already. */
static int shardsync_descendant_leased(shardsync_t *ss, const config_stream_t *cs, const source_shard_list_t *l,
                                       const char *id, const lease_list_t *all, int depth)
{
    if (depth > 64) return 0;
    for (size_t i = 0; i < l->count; i++) {
        const source_shard_t *c = &l->shards[i];
        if (!(c->parent && !strcmp(c->parent, id)) && !(c->adjacent_parent && !strcmp(c->adjacent_parent, id)))
            continue;
        char *key = shardsync_lease_key(ss->cfg, cs->name, c->id);
        int leased = lease_list_find(all, key) != NULL;
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

static void shardsync_create(shardsync_t *ss, const config_stream_t *cs, const source_shard_t *sh,
                             const char *checkpoint)
{
    lease_t l = {0};
    char *parents[2];
    l.key = shardsync_lease_key(ss->cfg, cs->name, sh->id);
    l.stream = (char *)cs->name;
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
    ss->store->ops->create(ss->store, &l, shardsync_write_done, ss);
    free(l.key);
}

/* A finished parent is deleted once every child has a lease that started
 * (is owned, or has moved past its initial position). */
static void shardsync_cleanup(shardsync_t *ss, const config_stream_t *cs, const source_shard_list_t *l,
                              const lease_list_t *all)
{
    for (size_t i = 0; i < all->count; i++) {
        const lease_t *p = &all->leases[i];
        const char *stream = shardsync_lease_stream(ss->cfg, p);
        if (p->invalid || !stream || strcmp(stream, cs->name) || strcmp(p->checkpoint, SEQNUM_SHARD_END)) continue;
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
            if (cl && !cl->invalid && (cl->owner || !seqnum_is_sentinel(cl->checkpoint) ||
                                       !strcmp(cl->checkpoint, SEQNUM_SHARD_END)))
                started++;
        }
        if (children > 0 && started == children) {
            log_info("lease_deleted", "stream=%s shard=%s lease=%s reason=\"finished, all children started\"",
                     cs->name, p->shard, p->key);
            ss->writes++;
            ss->store->ops->remove(ss->store, p, shardsync_write_done, ss);
        }
    }
}

static void shardsync_reconcile_stream(shardsync_t *ss, const config_stream_t *cs, const source_shard_list_t *l,
                                       const lease_list_t *all)
{
    int first = !shardsync_stream_has_leases(ss, cs, all);
    const char *initial = cs->initial_position == POS_LATEST         ? SEQNUM_LATEST
                          : cs->initial_position == POS_AT_TIMESTAMP ? SEQNUM_AT_TIMESTAMP
                                                                     : SEQNUM_TRIM_HORIZON;
    /* The list is in creation order, so parents are created before children. */
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
            shardsync_create(ss, cs, sh, initial);
        } else {
            shardsync_create(ss, cs, sh, SEQNUM_TRIM_HORIZON);
        }
    }
    shardsync_cleanup(ss, cs, l, all);
}

static void shardsync_on_table(void *ud, lease_status_t st, const char *msg, lease_list_t *all)
{
    shardsync_t *ss = ud;
    ss->pending--;
    if (st != LEASE_OK) {
        char q[512];
        log_warn("shard_sync_failed", "step=scan status=%s error=%s", lease_status_name(st),
                 log_quote(msg, q, sizeof q));
    } else {
        for (size_t i = 0; i < ss->cfg->nstreams; i++)
            if (ss->lists[i]) shardsync_reconcile_stream(ss, &ss->cfg->streams[i], ss->lists[i], all);
        lease_list_free(all);
    }
    shardsync_finish(ss);
}

typedef struct list_ctx {
    shardsync_t *ss;
    size_t idx;
} list_ctx_t;

static void shardsync_on_shards(void *ud, source_err_t err, const char *msg, source_shard_list_t *shards)
{
    list_ctx_t *ctx = ud;
    shardsync_t *ss = ctx->ss;
    size_t idx = ctx->idx;
    free(ctx);
    ss->pending--;
    if (err) {
        char q[512];
        log_error("shard_sync_failed", "stream=%s step=list_shards status=%s error=%s", ss->cfg->streams[idx].name,
                  source_err_name(err), log_quote(msg, q, sizeof q));
        if ((err == SOURCE_EFATAL || err == SOURCE_ENOTFOUND) && ss->runs == 0 && ss->failed) {
            ss->failed(ss->ud, msg ? msg : source_err_name(err));
            return; /* the worker stops: no run to finish */
        }
    } else {
        ss->lists[idx] = shards;
    }
    if (ss->pending == 0) {
        ss->pending++;
        ss->store->ops->list(ss->store, shardsync_on_table, ss);
    }
}

void shardsync_run(shardsync_t *ss)
{
    if (ss->running) {
        ss->again = 1;
        return;
    }
    ss->running = 1;
    ss->pending = ss->cfg->nstreams;
    for (size_t i = 0; i < ss->cfg->nstreams; i++) {
        list_ctx_t *ctx = xcalloc(1, sizeof *ctx); /* freed in shardsync_on_shards */
        ctx->ss = ss;
        ctx->idx = i;
        source_list_shards(ss->source, ss->cfg->streams[i].name, shardsync_on_shards, ctx);
    }
}
