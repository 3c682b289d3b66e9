#include "source_local.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/defer.h"
#include "streamdb.h"
#include "base/xalloc.h"

typedef struct source_local {
    source_t base;
    streamdb_t *db;
    defer_queue_t *defer;
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
    case REPLY_PUT: ((source_put_cb)r->cb)(r->ud, r->error, msg); break;
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

static void local_put(source_t *s, const char *stream, const source_put_record_t *recs, size_t n, source_put_cb cb,
                      void *ud)
{
    source_local_t *ls = (source_local_t *)s;
    local_reply_t *r = local_reply_new(REPLY_PUT, (void *)cb, ud);
    int rc = streamdb_begin(ls->db, &r->err);
    for (size_t i = 0; i < n && !rc; i++) {
        char shard[32], seq[24];
        rc = streamdb_put(ls->db, stream, recs[i].pkey, strlen(recs[i].pkey), recs[i].data, recs[i].data_len,
                          clock_wall_ms(), shard, seq, &r->err);
    }
    if (!rc) rc = streamdb_commit(ls->db, &r->err);
    else streamdb_rollback(ls->db);
    if (rc) r->error = local_classify(&r->err);
    defer_call(ls->defer, local_deliver, r);
}

static int64_t local_records_behind(source_t *s, const char *stream, const char *shard, const char *checkpoint)
{
    return streamdb_records_behind(((source_local_t *)s)->db, stream, shard, checkpoint);
}

static void local_destroy(source_t *s)
{
    source_local_t *ls = (source_local_t *)s;
    defer_queue_free(ls->defer, local_drop);
    streamdb_close(ls->db);
    free(ls);
}

static const source_ops_t source_local_ops = {
    .name = "local",
    .keeps_max_bytes = 1,
    .list_shards = local_list_shards,
    .get_iterator = local_get_iterator,
    .get_records = local_get_records,
    .put = local_put,
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
    ls->defer = defer_queue_new(loop);
    return &ls->base;
}
