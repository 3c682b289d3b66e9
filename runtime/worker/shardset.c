#include "shardset.h"

#include <stdlib.h>
#include <string.h>

#include "base/xalloc.h"

shard_t *shardset_find(const shardset_t *ss, const char *key)
{
    for (size_t i = 0; i < ss->nshards; i++)
        if (!strcmp(shard_key(ss->shards[i]), key)) return ss->shards[i];
    return NULL;
}

int shardset_runnable(const shardset_t *ss, const lease_t *lease, const lease_list_t *all)
{
    return config_stream_index(ss->cfg, shardsync_lease_stream(ss->cfg, lease)) >= 0 &&
           shardsync_parents_done(ss->sync, lease, all) && !shardsync_resurrected(ss->sync, lease, all);
}

/* ---- coordinator events ---------------------------------------------------- */

static void shardset_acquired(void *ud, const lease_t *lease)
{
    shardset_t *ss = ud;
    int idx = config_stream_index(ss->cfg, shardsync_lease_stream(ss->cfg, lease));
    if (idx < 0 || ss->stopping) {
        lease_coord_release(ss->coord, lease->key, NULL, NULL);
        return;
    }
    if (ss->nshards == ss->cap) {
        ss->cap = ss->cap ? ss->cap * 2 : 16;
        ss->shards = xrealloc(ss->shards, ss->cap * sizeof *ss->shards);
    }
    shard_t *s = shard_new(&ss->env, &ss->cfg->streams[idx], ss->scripts[idx], &ss->breakers[idx], lease);
    ss->shards[ss->nshards++] = s;
    shard_start(s);
}

static void shardset_lost(void *ud, const char *key)
{
    shardset_t *ss = ud;
    shard_t *s = shardset_find(ss, key);
    if (s) shard_lost(s);
}

static int shardset_eligible(void *ud, const lease_t *lease, const lease_list_t *all)
{
    shardset_t *ss = ud;
    /* a lease we run counts; one whose earlier shard object is still closing does not */
    return !ss->stopping && shardset_runnable(ss, lease, all) &&
           (lease_coord_owned(ss->coord, lease->key) || !shardset_find(ss, lease->key));
}

static void shardset_scanned(void *ud, const lease_list_t *all)
{
    shardset_t *ss = ud;
    if (ss->host.scanned) ss->host.scanned(ss->host_ud, all);
    shardsync_table_gone(ss->sync, all); /* the coordinator frees it next */
}

static char *shardset_describe(void *ud, const char *key)
{
    shardset_t *ss = ud;
    shard_t *s = shardset_find(ss, key);
    return s && ss->host.describe ? ss->host.describe(ss->host_ud, s) : NULL;
}

static void shardset_handoff_requested(void *ud, const char *key, const char *to)
{
    shardset_t *ss = ud;
    shard_t *s = shardset_find(ss, key);
    if (s) shard_handoff(s);
    else lease_coord_handoff(ss->coord, key, NULL, NULL);
}

static void shardset_store_unusable(void *ud, const char *msg)
{
    shardset_t *ss = ud;
    if (ss->host.store_unusable) ss->host.store_unusable(ss->host_ud, msg);
}

static const lease_coord_handler_t shardset_handler = {
    shardset_acquired, shardset_lost, shardset_eligible, shardset_scanned, shardset_describe,
    shardset_handoff_requested, shardset_store_unusable,
};

const lease_coord_handler_t *shardset_coord_handler(void)
{
    return &shardset_handler;
}

/* ---- shard events ------------------------------------------------------------ */

static void shardset_shard_closed(void *ud, shard_t *s)
{
    shardset_t *ss = ud;
    for (size_t i = 0; i < ss->nshards; i++) {
        if (ss->shards[i] == s) {
            ss->shards[i] = ss->shards[--ss->nshards];
            break;
        }
    }
    lease_coord_forget(ss->coord, shard_key(s));
    shard_free(s);
    ss->host.closed(ss->host_ud);
}

static void shardset_shard_ended(void *ud, shard_t *s)
{
    shardset_t *ss = ud;
    shardsync_run(ss->sync); /* the children need leases now */
}

/* Held, no release queued, and not expired by this worker's clock (the
 * deadline counts from when the last successful renewal was sent). */
static int shardset_may_dispatch(void *ud, const char *key)
{
    shardset_t *ss = ud;
    return lease_coord_may_dispatch(ss->coord, key);
}

static void shardset_submit(void *ud, proc_job_t *job)
{
    shardset_t *ss = ud;
    ss->host.submit(ss->host_ud, job);
}

static void shardset_halt_worker(void *ud, shard_t *s)
{
    shardset_t *ss = ud;
    ss->host.halt_worker(ss->host_ud, s);
}

static void shardset_tripped(void *ud, shard_t *s, const char *why)
{
    shardset_t *ss = ud;
    ss->host.tripped(ss->host_ud, s, why);
}

/* ---- life ------------------------------------------------------------------------ */

void shardset_init(shardset_t *ss, const config_t *cfg, proc_script_t **scripts, breaker_t *breakers,
                   const shard_env_t *env, const shardset_host_t *host, void *host_ud)
{
    memset(ss, 0, sizeof *ss);
    ss->cfg = cfg;
    ss->scripts = scripts;
    ss->breakers = breakers;
    ss->host = *host;
    ss->host_ud = host_ud;
    ss->env = *env;
    ss->env.ud = ss;
    ss->env.submit = shardset_submit;
    ss->env.may_dispatch = shardset_may_dispatch;
    ss->env.closed = shardset_shard_closed;
    ss->env.ended = shardset_shard_ended;
    ss->env.halt_worker = shardset_halt_worker;
    ss->env.tripped = shardset_tripped;
}

void shardset_attach(shardset_t *ss, lease_coord_t *coord, shardsync_t *sync)
{
    ss->coord = coord;
    ss->env.coord = coord;
    ss->sync = sync;
}

void shardset_free(shardset_t *ss)
{
    for (size_t i = 0; i < ss->nshards; i++) shard_free(ss->shards[i]);
    free(ss->shards);
    ss->shards = NULL;
    ss->nshards = ss->cap = 0;
}

void shardset_synced(shardset_t *ss)
{
    if (!ss->stopping) lease_coord_scan_now(ss->coord);
}

void shardset_stop(shardset_t *ss)
{
    if (ss->stopping) return;
    ss->stopping = 1;
    lease_coord_stop_taking(ss->coord);
    /* shards remove themselves from the array as they close */
    size_t n = ss->nshards;
    shard_t **copy = xmalloc((n ? n : 1) * sizeof *copy);
    if (n) memcpy(copy, ss->shards, n * sizeof *copy);
    for (size_t i = 0; i < n; i++) shard_shutdown(copy[i]);
    free(copy);
}
