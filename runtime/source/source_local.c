#include "source_local.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/defer.h"
#include "base/log.h"
#include "base/tpool.h"
#include "base/xalloc.h"
#include "doorbell.h"
#include "record/seqnum.h"
#include "streamdb.h"

#define LOCAL_WATCH_BUCKETS 256

/* Reads are short and never wait for a writer (WAL): they run on the loop.
 * Puts take the file's write lock, which another process may hold for
 * seconds (busy timeout): they run on a thread of their own, with a
 * connection of their own, opened there at the first put.
 *
 * Readers are woken by the file's doorbells (doorbell.h) once a writer
 * committed records to their shard; SHARDRUN_LOCAL_WAKE=0 turns that off
 * (readers only poll: the fallback, which tests exercise). */
typedef struct source_local {
    source_t base;
    char *path;
    streamdb_t *db;              /* loop thread */
    defer_queue_t *defer;
    tpool_t *put_thread;         /* NULL until the first put */
    streamdb_t *put_db;          /* put thread only */
    int wake;                    /* 0: no wake-ups (switched off, or the doorbells cannot be watched) */
    doorbell_t *bell;            /* NULL until the first watch */
    source_watch_t *watchers[LOCAL_WATCH_BUCKETS];   /* by shard row id; loop thread */
} source_local_t;

/* One completed request waiting for its callback. */
typedef struct local_reply {
    enum { REPLY_SHARDS, REPLY_ITERATOR, REPLY_RECORDS, REPLY_PUT } kind;
    void *cb;
    void *ud;
    source_err_t error;
    errbuf_t err;
    source_shard_list_t *shards;
    char *iterator;
    source_records_t records;
} local_reply_t;

static void local_deliver(void *arg)
{
    local_reply_t *r = arg;
    const char *msg = r->error ? r->err.msg : NULL;
    switch (r->kind) {
    case REPLY_SHARDS: ((source_shards_cb)r->cb)(r->ud, r->error, msg, r->shards); break;
    case REPLY_ITERATOR: ((source_iterator_cb)r->cb)(r->ud, r->error, msg, r->iterator); break;
    case REPLY_RECORDS:
        r->records.error = r->error;
        r->records.message = msg;
        ((source_records_cb)r->cb)(r->ud, &r->records);
        break;
    case REPLY_PUT: {
        source_put_result_t res = {r->error, msg, NULL, 0};
        ((source_put_cb)r->cb)(r->ud, &res);
        break;
    }
    }
    free(r);
}

static void local_drop(void *arg)
{
    local_reply_t *r = arg;
    source_shard_list_free(r->shards);
    free(r->iterator);
    batch_free(r->records.batch);
    free(r->records.next_iterator);
    free(r);
}

static local_reply_t *local_reply_new(int kind, void *cb, void *ud)
{
    local_reply_t *r = xcalloc(1, sizeof *r); /* freed by local_deliver or local_drop */
    r->kind = kind;
    r->cb = cb;
    r->ud = ud;
    return r;
}

/* A missing stream or shard is "not found"; anything else from SQLite is
 * transient (busy, locked) and the caller retries. */
static source_err_t local_classify(const errbuf_t *err)
{
    return strstr(err->msg, "no stream named") || strstr(err->msg, "has no shard") ? SOURCE_ENOTFOUND
                                                                                     : SOURCE_ERETRY;
}

static void local_list_shards(source_t *s, const char *stream, source_shards_cb cb, void *ud)
{
    source_local_t *ls = (source_local_t *)s;
    local_reply_t *r = local_reply_new(REPLY_SHARDS, (void *)cb, ud);
    if (streamdb_shards(ls->db, stream, &r->shards, &r->err)) r->error = local_classify(&r->err);
    defer_call(ls->defer, local_deliver, r);
}

static void local_get_iterator(source_t *s, const char *stream, const char *shard, const source_position_t *pos,
                               source_iterator_cb cb, void *ud)
{
    source_local_t *ls = (source_local_t *)s;
    local_reply_t *r = local_reply_new(REPLY_ITERATOR, (void *)cb, ud);
    int64_t first;
    if (streamdb_iterator(ls->db, stream, shard, pos, &first, &r->err)) {
        r->error = local_classify(&r->err);
        if (strstr(r->err.msg, "invalid sequence")) r->error = SOURCE_EFATAL;
    } else {
        char it[32];
        snprintf(it, sizeof it, "%" PRId64, first);
        r->iterator = xstrdup(it);
    }
    defer_call(ls->defer, local_deliver, r);
}

static void local_get_records(source_t *s, const char *stream, const char *shard, const char *iterator,
                              size_t max, size_t max_bytes, source_records_cb cb, void *ud)
{
    source_local_t *ls = (source_local_t *)s;
    local_reply_t *r = local_reply_new(REPLY_RECORDS, (void *)cb, ud);
    char *end = NULL;
    long long from = strtoll(iterator, &end, 10);
    int64_t next = 0, behind = 0;
    int ended = 0;
    if (!end || *end || from < 0) {
        r->error = SOURCE_EEXPIRED; /* not one of ours: ask for a new one */
        errbuf_set(&r->err, "stream %s shard %s: invalid iterator", stream, shard);
    } else if (streamdb_read(ls->db, stream, shard, from, max, max_bytes, &r->records.batch, &next, &ended, &behind, &r->err)) {
        r->error = local_classify(&r->err);
    } else {
        char it[32];
        snprintf(it, sizeof it, "%" PRId64, next);
        r->records.next_iterator = ended ? NULL : xstrdup(it);
        r->records.millis_behind = behind;
        r->records.bytes = r->records.batch->arena_len;
    }
    defer_call(ls->defer, local_deliver, r);
}

typedef struct local_put_job {
    tpool_job_t job;             /* first: the pool's handle */
    source_local_t *ls;
    char *stream;
    const source_put_record_t *recs;   /* the caller's, alive until the callback */
    size_t n;
    source_put_cb cb;
    void *ud;
    source_err_t error;
    errbuf_t err;
} local_put_job_t;

static void local_put_run(tpool_job_t *job)
{
    local_put_job_t *j = (local_put_job_t *)job;
    source_local_t *ls = j->ls;
    if (!ls->put_db && streamdb_open(ls->path, 0, &ls->put_db, &j->err)) {
        j->error = SOURCE_ERETRY;
        return;
    }
    int rc = streamdb_begin(ls->put_db, &j->err);
    int64_t now = clock_wall_ms();
    for (size_t i = 0; i < j->n && !rc; i++) {
        const source_put_record_t *r = &j->recs[i];
        char shard[32], seq[24];
        hashkey_t h;
        if (r->hash_key && hashkey_parse(r->hash_key, &h)) {
            errbuf_set(&j->err, "stream %s: explicit hash key %.60s is not a decimal number below 2^128", j->stream,
                       r->hash_key);
            rc = STREAMDB_EINVAL;
            break;
        }
        if (!r->hash_key) h = hashkey_of(r->pkey, strlen(r->pkey));
        rc = streamdb_put_hashed(ls->put_db, j->stream, h, r->pkey, strlen(r->pkey), r->data, r->data_len, now, shard,
                                 seq, &j->err);
    }
    if (!rc) rc = streamdb_commit(ls->put_db, &j->err);
    else streamdb_rollback(ls->put_db);
    /* a record over the limit never fits: retrying would only repeat the error */
    if (rc) j->error = rc == STREAMDB_EINVAL ? SOURCE_EFATAL : local_classify(&j->err);
}

static void local_put_done(tpool_job_t *job)
{
    local_put_job_t *j = (local_put_job_t *)job;
    /* one transaction: all written, or none */
    source_put_result_t res = {j->error, j->error ? j->err.msg : NULL, NULL, 0};
    j->cb(j->ud, &res);
    free(j->stream);
    free(j);
}

static void local_put(source_t *s, const char *stream, const source_put_record_t *recs, size_t n, source_put_cb cb,
                      void *ud)
{
    source_local_t *ls = (source_local_t *)s;
    local_put_job_t *j = xcalloc(1, sizeof *j); /* freed in local_put_done */
    j->job = (tpool_job_t){.run = local_put_run, .done = local_put_done};
    j->ls = ls;
    j->stream = xstrdup(stream);
    j->recs = recs;
    j->n = n;
    j->cb = cb;
    j->ud = ud;
    if (!ls->put_thread) ls->put_thread = tpool_new(ls->base.loop, 1, "local_put");
    if (!ls->put_thread) {
        j->error = SOURCE_ERETRY;
        errbuf_set(&j->err, "stream %s: cannot start the put thread", stream);
        local_reply_t *r = local_reply_new(REPLY_PUT, (void *)cb, ud);
        r->error = j->error;
        r->err = j->err;
        free(j->stream);
        free(j);
        defer_call(ls->defer, local_deliver, r);
        return;
    }
    tpool_submit(ls->put_thread, &j->job);
}

/* A doorbell rang: wake the readers of that shard (sid < 0: of every shard). */
static void local_on_bell(void *ud, int64_t sid)
{
    source_local_t *ls = ud;
    for (size_t b = sid < 0 ? 0 : (size_t)sid % LOCAL_WATCH_BUCKETS; b < LOCAL_WATCH_BUCKETS; b++) {
        for (source_watch_t *w = ls->watchers[b], *next; w; w = next) {
            next = w->next; /* the callback may stop watching */
            if (sid < 0 || w->key == sid) w->cb(w);
        }
        if (sid >= 0) break;
    }
}

static int local_watch(source_t *s, const char *stream, const char *shard, source_watch_t *w)
{
    source_local_t *ls = (source_local_t *)s;
    errbuf_t err;
    if (!ls->wake) return -1;
    if (!ls->bell) {
        ls->bell = doorbell_open(ls->base.loop, ls->path, local_on_bell, ls, &err);
        if (!ls->bell) {
            char q[1200];
            log_warn("wake_unavailable", "stream_file=%s error=%s action=\"readers poll every "
                     "idle_time_between_reads_ms\"", ls->path, log_quote(err.msg, q, sizeof q));
            ls->wake = 0;
            return -1;
        }
    }
    int64_t sid;
    if (streamdb_shard_rowid(ls->db, stream, shard, &sid, &err)) return -1; /* the reads will say why */
    source_unwatch(s, w);
    size_t b = (size_t)sid % LOCAL_WATCH_BUCKETS;
    w->key = sid;
    w->prev = NULL;
    w->next = ls->watchers[b];
    if (w->next) w->next->prev = w;
    ls->watchers[b] = w;
    w->active = 1;
    return 0;
}

static void local_unwatch(source_t *s, source_watch_t *w)
{
    source_local_t *ls = (source_local_t *)s;
    if (!w->active) return;
    if (w->prev) w->prev->next = w->next;
    else ls->watchers[(size_t)w->key % LOCAL_WATCH_BUCKETS] = w->next;
    if (w->next) w->next->prev = w->prev;
    w->next = w->prev = NULL;
    w->active = 0;
}

static int64_t local_records_behind(source_t *s, const char *stream, const char *shard, const char *checkpoint)
{
    return streamdb_records_behind(((source_local_t *)s)->db, stream, shard, checkpoint);
}

static void local_destroy(source_t *s)
{
    source_local_t *ls = (source_local_t *)s;
    tpool_free(ls->put_thread); /* waits for a put in progress; its callback is not delivered */
    doorbell_close(ls->bell);
    streamdb_close(ls->put_db);
    defer_queue_free(ls->defer, local_drop);
    streamdb_close(ls->db);
    free(ls->path);
    free(ls);
}

static const source_ops_t source_local_ops = {
    .name = "local",
    .keeps_max_bytes = 1,
    .list_shards = local_list_shards,
    .get_iterator = local_get_iterator,
    .get_records = local_get_records,
    .put = local_put,
    .watch = local_watch,
    .unwatch = local_unwatch,
    .records_behind = local_records_behind,
    .destroy = local_destroy,
};

source_t *source_local_new(struct ev_loop *loop, const char *path, errbuf_t *err)
{
    streamdb_t *db = NULL;
    if (streamdb_open(path, 0, &db, err)) return NULL;
    source_local_t *ls = xcalloc(1, sizeof *ls); /* owned by the caller: source_destroy */
    ls->base.ops = &source_local_ops;
    ls->base.loop = loop;
    ls->db = db;
    ls->path = xstrdup(path);
    ls->defer = defer_queue_new(loop);
    const char *wake = getenv("SHARDRUN_LOCAL_WAKE");
    ls->wake = !(wake && !strcmp(wake, "0"));
    return &ls->base;
}
