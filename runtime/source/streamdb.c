#include "streamdb.h"

#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/fspath.h"
#include "doorbell.h"
#include "record/seqnum.h"
#include "base/xalloc.h"

#define STREAMDB_BUSY_MS 5000

/* An open shard's hash range, cached for the puts of one transaction. */
typedef struct route {
    char *stream;
    int64_t sid;
    char shard[32];
    hashkey_t lo, hi;
    int rung;                  /* put to in this transaction: its readers are woken at commit */
} route_t;

struct streamdb {
    sqlite3 *db;
    char *path;
    int in_txn;
    int64_t next_seq;          /* within a transaction: the counter, written at commit */
    route_t *routes;           /* within a transaction: open shards of the streams put to */
    size_t nroutes;
    int64_t *rung;             /* within a transaction: shards (row ids) to ring once it commits */
    size_t nrung, rung_cap;
    sqlite3_stmt *read_stmt;   /* cached: the hot path */
    sqlite3_stmt *put_stmt;
    sqlite3_stmt *shard_stmt;  /* stream, shard -> sid, end_seq */
    sqlite3_stmt *begin_stmt, *commit_stmt;   /* a read's two statements in one transaction */
    size_t arena_per_record;   /* arena bytes per record in the last read: sizes the next read's batch */
};

static void streamdb_drop_routes(streamdb_t *db);

static const char *const streamdb_schema =
    "PRAGMA journal_mode=WAL;"
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
    "INSERT OR IGNORE INTO meta VALUES('next_seq', 1);"
    "CREATE TABLE IF NOT EXISTS streams(name TEXT PRIMARY KEY, created_ms INTEGER NOT NULL,"
    "  next_shard INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS shards(sid INTEGER PRIMARY KEY, stream TEXT NOT NULL,"
    "  shard_id TEXT NOT NULL, parent TEXT, adjacent_parent TEXT, start_hash TEXT NOT NULL,"
    "  end_hash TEXT NOT NULL, start_seq INTEGER NOT NULL, end_seq INTEGER,"
    "  UNIQUE(stream, shard_id));"
    /* one B-tree keyed by (shard, seq): a shard's records are read in one walk */
    "CREATE TABLE IF NOT EXISTS records(sid INTEGER NOT NULL, seq INTEGER NOT NULL,"
    "  arrival_ms INTEGER NOT NULL, pkey BLOB NOT NULL, data BLOB NOT NULL,"
    "  PRIMARY KEY(sid, seq)) WITHOUT ROWID;";

static int64_t streamdb_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Zero-padded decimal, by hand: this runs once per record read. */
void streamdb_format_seq(int64_t seq, char *out)
{
    uint64_t v = seq < 0 ? 0 : (uint64_t)seq;
    for (int i = STREAMDB_SEQ_DIGITS - 1; i >= 0; i--) {
        out[i] = (char)('0' + v % 10);
        v /= 10;
    }
    out[STREAMDB_SEQ_DIGITS] = '\0';
}

/* seq += delta on its formatted digits (delta > 0, small): the records of a
 * shard come in increasing order, a few numbers apart, so the next one is
 * its predecessor with a digit or two changed rather than twenty divisions. */
static void streamdb_seq_add(char *seq, uint64_t delta)
{
    unsigned carry = 0;
    for (int i = STREAMDB_SEQ_DIGITS - 1; i >= 0 && (delta || carry); i--) {
        unsigned d = (unsigned)(seq[i] - '0') + (unsigned)(delta % 10) + carry;
        delta /= 10;
        carry = d >= 10;
        seq[i] = (char)('0' + (carry ? d - 10 : d));
    }
}

static int streamdb_fail(streamdb_t *db, errbuf_t *err, const char *what)
{
    return errbuf_set(err, "%s: %s: %s", db->path, what, sqlite3_errmsg(db->db));
}

static int streamdb_prepare(streamdb_t *db, sqlite3_stmt **st, const char *sql, errbuf_t *err)
{
    if (sqlite3_prepare_v2(db->db, sql, -1, st, NULL) != SQLITE_OK) return streamdb_fail(db, err, "prepare");
    return 0;
}

int streamdb_open(const char *path, int create, streamdb_t **out, errbuf_t *err)
{
    /* a fresh checkout has no data/ folder: creating a stream makes it */
    if (create && fspath_mkdir_parents(path, err)) return -1;
    streamdb_t *db = xcalloc(1, sizeof *db); /* owned by the caller: streamdb_close */
    db->path = xstrdup(path);
    db->arena_per_record = 128; /* until a read says */
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
    if (sqlite3_open_v2(path, &db->db, flags, NULL) != SQLITE_OK) {
        errbuf_set(err, "%s: cannot open stream file: %s%s", path, db->db ? sqlite3_errmsg(db->db) : "out of memory",
                   create ? "" : " (create a stream first: shardrun stream create NAME --shards N)");
        streamdb_close(db);
        return -1;
    }
    sqlite3_busy_timeout(db->db, STREAMDB_BUSY_MS);
    char *msg = NULL;
    if (sqlite3_exec(db->db, streamdb_schema, NULL, NULL, &msg) != SQLITE_OK) {
        if (sqlite3_errcode(db->db) == SQLITE_BUSY)
            errbuf_set(err, "%s: locked by another process for over %d s: %s", path, STREAMDB_BUSY_MS / 1000,
                       msg ? msg : "database is locked");
        else
            errbuf_set(err, "%s: not a usable stream file: %s", path, msg ? msg : "unknown error");
        sqlite3_free(msg);
        streamdb_close(db);
        return -1;
    }
    if (streamdb_prepare(db, &db->read_stmt,
                         "SELECT seq, arrival_ms, pkey, data FROM records WHERE sid=? AND seq>=? "
                         "AND (? IS NULL OR seq<=?) ORDER BY seq LIMIT ?", err) ||
        streamdb_prepare(db, &db->put_stmt,
                         "INSERT INTO records(seq, sid, arrival_ms, pkey, data) VALUES(?,?,?,?,?)", err) ||
        streamdb_prepare(db, &db->shard_stmt, "SELECT sid, end_seq FROM shards WHERE stream=? AND shard_id=?",
                         err) ||
        streamdb_prepare(db, &db->begin_stmt, "BEGIN", err) || streamdb_prepare(db, &db->commit_stmt, "COMMIT", err)) {
        streamdb_close(db);
        return -1;
    }
    *out = db;
    return 0;
}

void streamdb_close(streamdb_t *db)
{
    if (!db) return;
    streamdb_drop_routes(db);
    free(db->rung);
    sqlite3_finalize(db->read_stmt);
    sqlite3_finalize(db->put_stmt);
    sqlite3_finalize(db->shard_stmt);
    sqlite3_finalize(db->begin_stmt);
    sqlite3_finalize(db->commit_stmt);
    sqlite3_close(db->db);
    free(db->path);
    free(db);
}

static int streamdb_exec(streamdb_t *db, const char *sql, errbuf_t *err)
{
    if (sqlite3_exec(db->db, sql, NULL, NULL, NULL) != SQLITE_OK) return streamdb_fail(db, err, sql);
    return 0;
}

/* The shard's readers are woken once the transaction commits (outside
 * one: at once, the statement has committed). */
static void streamdb_ring_later(streamdb_t *db, int64_t sid)
{
    if (!db->in_txn) {
        doorbell_ring(db->path, &sid, 1);
        return;
    }
    if (db->nrung == db->rung_cap) {
        db->rung_cap = db->rung_cap ? db->rung_cap * 2 : 16;
        db->rung = xrealloc(db->rung, db->rung_cap * sizeof *db->rung);
    }
    db->rung[db->nrung++] = sid;
}

static void streamdb_drop_routes(streamdb_t *db)
{
    for (size_t i = 0; i < db->nroutes; i++) free(db->routes[i].stream);
    free(db->routes);
    db->routes = NULL;
    db->nroutes = 0;
}

static int64_t streamdb_next_seq(streamdb_t *db);
static int streamdb_set_next_seq(streamdb_t *db, int64_t v, errbuf_t *err);

/* Puts inside a transaction read the counter and the routes once: the
 * IMMEDIATE transaction holds the write lock, so nobody else changes them. */
int streamdb_begin(streamdb_t *db, errbuf_t *err)
{
    if (streamdb_exec(db, "BEGIN IMMEDIATE", err)) return -1;
    db->in_txn = 1;
    db->next_seq = -1;
    db->nrung = 0;
    return 0;
}

int streamdb_commit(streamdb_t *db, errbuf_t *err)
{
    int rc = 0;
    if (db->in_txn && db->next_seq >= 0) rc = streamdb_set_next_seq(db, db->next_seq, err);
    db->in_txn = 0;
    streamdb_drop_routes(db);
    if (rc) {
        streamdb_rollback(db);
        return -1;
    }
    if (streamdb_exec(db, "COMMIT", err)) {
        db->nrung = 0;
        return -1;
    }
    doorbell_ring(db->path, db->rung, db->nrung); /* after the commit: a reader it wakes sees the records */
    db->nrung = 0;
    return 0;
}

void streamdb_rollback(streamdb_t *db)
{
    db->in_txn = 0;
    db->nrung = 0;
    streamdb_drop_routes(db);
    sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
}

/* Looks up the shard's row id; end_seq = -1 while the shard is open. */
static int streamdb_shard(streamdb_t *db, const char *stream, const char *shard, int64_t *sid, int64_t *end_seq,
                          errbuf_t *err)
{
    sqlite3_stmt *st = db->shard_stmt;
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, stream, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, shard, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *sid = sqlite3_column_int64(st, 0);
        *end_seq = sqlite3_column_type(st, 1) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 1);
        sqlite3_reset(st);
        return 0;
    }
    sqlite3_reset(st);
    if (rc == SQLITE_DONE) return errbuf_set(err, "%s: stream %s has no shard %s", db->path, stream, shard);
    return streamdb_fail(db, err, "shard lookup");
}

static int64_t streamdb_next_seq(streamdb_t *db)
{
    sqlite3_stmt *st = NULL;
    int64_t v = -1;
    if (sqlite3_prepare_v2(db->db, "SELECT value FROM meta WHERE key='next_seq'", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static int streamdb_set_next_seq(streamdb_t *db, int64_t v, errbuf_t *err)
{
    char sql[96];
    snprintf(sql, sizeof sql, "UPDATE meta SET value=%" PRId64 " WHERE key='next_seq'", v);
    return streamdb_exec(db, sql, err);
}

static int streamdb_stream_exists(streamdb_t *db, const char *stream, int64_t *next_shard)
{
    sqlite3_stmt *st = NULL;
    int found = 0;
    if (sqlite3_prepare_v2(db->db, "SELECT next_shard FROM streams WHERE name=?", -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, stream, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) {
        found = 1;
        if (next_shard) *next_shard = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    return found;
}

static int streamdb_insert_shard(streamdb_t *db, const char *stream, int64_t number, const char *parent,
                                 const char *adjacent, hashkey_t start, hashkey_t end, int64_t start_seq,
                                 char *id_out, errbuf_t *err)
{
    char id[32], hs[48], he[48];
    snprintf(id, sizeof id, "shardId-%012" PRId64, number);
    sqlite3_stmt *st = NULL;
    if (streamdb_prepare(db, &st,
                         "INSERT INTO shards(stream, shard_id, parent, adjacent_parent, start_hash, end_hash,"
                         " start_seq) VALUES(?,?,?,?,?,?,?)", err))
        return -1;
    sqlite3_bind_text(st, 1, stream, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, parent, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, adjacent, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, hashkey_format(start, hs), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 6, hashkey_format(end, he), -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 7, start_seq);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return streamdb_fail(db, err, "insert shard");
    if (id_out) strcpy(id_out, id);
    return 0;
}

static int streamdb_set_next_shard(streamdb_t *db, const char *stream, int64_t n, errbuf_t *err)
{
    sqlite3_stmt *st = NULL;
    if (streamdb_prepare(db, &st, "UPDATE streams SET next_shard=? WHERE name=?", err)) return -1;
    sqlite3_bind_int64(st, 1, n);
    sqlite3_bind_text(st, 2, stream, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : streamdb_fail(db, err, "update stream");
}

int streamdb_create_stream(streamdb_t *db, const char *stream, int shards, errbuf_t *err)
{
    if (shards < 1 || shards > 100000) return errbuf_set(err, "stream %s: --shards must be 1..100000", stream);
    if (streamdb_begin(db, err)) return -1;
    int exists = streamdb_stream_exists(db, stream, NULL);
    if (exists != 0) {
        streamdb_rollback(db);
        return exists < 0 ? streamdb_fail(db, err, "lookup stream")
                          : errbuf_set(err, "%s: stream %s already exists", db->path, stream);
    }
    sqlite3_stmt *st = NULL;
    if (streamdb_prepare(db, &st, "INSERT INTO streams(name, created_ms, next_shard) VALUES(?,?,?)", err)) {
        streamdb_rollback(db);
        return -1;
    }
    sqlite3_bind_text(st, 1, stream, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, streamdb_now_ms());
    sqlite3_bind_int64(st, 3, shards);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        streamdb_rollback(db);
        return streamdb_fail(db, err, "insert stream");
    }
    /* Even split of the 128-bit key space, as CreateStream does. */
    hashkey_t width = HASHKEY_MAX / (hashkey_t)shards;
    int64_t next_seq = streamdb_next_seq(db);
    for (int i = 0; i < shards; i++) {
        hashkey_t start = width * (hashkey_t)i;
        hashkey_t end = i == shards - 1 ? HASHKEY_MAX : start + width - 1;
        if (streamdb_insert_shard(db, stream, i, NULL, NULL, start, end, next_seq, NULL, err)) {
            streamdb_rollback(db);
            return -1;
        }
    }
    return streamdb_commit(db, err);
}

int streamdb_list_streams(streamdb_t *db, void (*fn)(void *, const char *, int, int, int64_t), void *ud,
                          errbuf_t *err)
{
    sqlite3_stmt *st = NULL;
    if (streamdb_prepare(db, &st,
                         "SELECT s.name, (SELECT count(*) FROM shards h WHERE h.stream=s.name AND h.end_seq IS NULL),"
                         " (SELECT count(*) FROM shards h WHERE h.stream=s.name),"
                         " (SELECT count(*) FROM records r JOIN shards h ON r.sid=h.sid WHERE h.stream=s.name)"
                         " FROM streams s ORDER BY s.name", err))
        return -1;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        fn(ud, (const char *)sqlite3_column_text(st, 0), sqlite3_column_int(st, 1), sqlite3_column_int(st, 2),
           sqlite3_column_int64(st, 3));
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : streamdb_fail(db, err, "list streams");
}

static char *streamdb_col_dup(sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    return t ? xstrdup((const char *)t) : NULL;
}

int streamdb_shards(streamdb_t *db, const char *stream, source_shard_list_t **out, errbuf_t *err)
{
    int exists = streamdb_stream_exists(db, stream, NULL);
    if (exists < 0) return streamdb_fail(db, err, "lookup stream");
    if (!exists)
        return errbuf_set(err, "%s: no stream named %s (create it: shardrun stream create %s --shards N)", db->path,
                          stream, stream);
    sqlite3_stmt *st = NULL;
    if (streamdb_prepare(db, &st,
                         "SELECT shard_id, parent, adjacent_parent, start_hash, end_hash, start_seq, end_seq"
                         " FROM shards WHERE stream=? ORDER BY sid", err))
        return -1;
    sqlite3_bind_text(st, 1, stream, -1, SQLITE_STATIC);
    source_shard_list_t *l = xcalloc(1, sizeof *l); /* owned by the caller */
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (l->count == cap) {
            cap = cap ? cap * 2 : 8;
            l->shards = xrealloc(l->shards, cap * sizeof *l->shards);
        }
        source_shard_t *s = &l->shards[l->count++];
        char seq[24];
        s->id = streamdb_col_dup(st, 0);
        s->parent = streamdb_col_dup(st, 1);
        s->adjacent_parent = streamdb_col_dup(st, 2);
        s->start_hash = streamdb_col_dup(st, 3);
        s->end_hash = streamdb_col_dup(st, 4);
        streamdb_format_seq(sqlite3_column_int64(st, 5), seq);
        s->start_seq = xstrdup(seq);
        s->end_seq = NULL;
        if (sqlite3_column_type(st, 6) != SQLITE_NULL) {
            streamdb_format_seq(sqlite3_column_int64(st, 6), seq);
            s->end_seq = xstrdup(seq);
        }
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        source_shard_list_free(l);
        return streamdb_fail(db, err, "list shards");
    }
    *out = l;
    return 0;
}

/* Loads the open shards of `stream` into the route cache. */
static int streamdb_load_routes(streamdb_t *db, const char *stream, errbuf_t *err)
{
    sqlite3_stmt *st = NULL;
    if (streamdb_prepare(db, &st,
                         "SELECT sid, shard_id, start_hash, end_hash FROM shards WHERE stream=? AND end_seq IS NULL",
                         err))
        return -1;
    sqlite3_bind_text(st, 1, stream, -1, SQLITE_STATIC);
    int rc, n = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        route_t r = {0};
        if (hashkey_parse((const char *)sqlite3_column_text(st, 2), &r.lo) ||
            hashkey_parse((const char *)sqlite3_column_text(st, 3), &r.hi))
            continue;
        r.stream = xstrdup(stream);
        r.sid = sqlite3_column_int64(st, 0);
        snprintf(r.shard, sizeof r.shard, "%s", (const char *)sqlite3_column_text(st, 1));
        db->routes = xrealloc(db->routes, (db->nroutes + 1) * sizeof *db->routes); /* owned by db */
        db->routes[db->nroutes++] = r;
        n++;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return streamdb_fail(db, err, "list shards");
    return n;
}

static route_t *streamdb_find_route(streamdb_t *db, const char *stream, hashkey_t h)
{
    for (size_t i = 0; i < db->nroutes; i++) {
        route_t *r = &db->routes[i];
        if (!strcmp(r->stream, stream) && h >= r->lo && h <= r->hi) return r;
    }
    return NULL;
}

/* The open shard of `stream` whose range holds h. *first = 1 the first
 * time a transaction routes to it (outside one: always). */
static int streamdb_route(streamdb_t *db, const char *stream, hashkey_t h, int64_t *sid, char *shard_out,
                          int *first, errbuf_t *err)
{
    route_t *r = streamdb_find_route(db, stream, h);
    if (!r) {
        if (streamdb_load_routes(db, stream, err) < 0) return -1;
        r = streamdb_find_route(db, stream, h);
    }
    if (r) {
        *sid = r->sid;
        memcpy(shard_out, r->shard, sizeof r->shard);
        *first = !r->rung;
        r->rung = 1;
    }
    if (!db->in_txn) streamdb_drop_routes(db); /* outside a transaction the shards may change */
    if (r) return 0;
    int exists = streamdb_stream_exists(db, stream, NULL);
    if (exists == 0)
        return errbuf_set(err, "%s: no stream named %s (create it: shardrun stream create %s --shards N)", db->path,
                          stream, stream);
    return errbuf_set(err, "%s: stream %s: no open shard covers the hash key", db->path, stream);
}

int streamdb_put(streamdb_t *db, const char *stream, const void *pkey, size_t pkey_len, const void *data,
                 size_t data_len, int64_t arrival_ms, char *shard_out, char *seq_out, errbuf_t *err)
{
    return streamdb_put_hashed(db, stream, hashkey_of(pkey, pkey_len), pkey, pkey_len, data, data_len, arrival_ms,
                               shard_out, seq_out, err);
}

int streamdb_put_hashed(streamdb_t *db, const char *stream, hashkey_t h, const void *pkey, size_t pkey_len,
                        const void *data, size_t data_len, int64_t arrival_ms, char *shard_out, char *seq_out,
                        errbuf_t *err)
{
    if (pkey_len == 0 || pkey_len > 256)
        return errbuf_set(err, "stream %s: partition key must be 1..256 bytes, got %zu", stream, pkey_len);
    if (data_len > 1024 * 1024) {
        errbuf_set(err, "stream %s: record of %zu bytes is over the 1 MiB limit", stream, data_len);
        return STREAMDB_EINVAL;
    }
    int64_t sid = 0;
    int first = 0;
    if (streamdb_route(db, stream, h, &sid, shard_out, &first, err)) return -1;
    int64_t seq = db->in_txn && db->next_seq >= 0 ? db->next_seq : streamdb_next_seq(db);
    if (seq < 0) return streamdb_fail(db, err, "read sequence counter");
    sqlite3_stmt *st = db->put_stmt;
    sqlite3_reset(st);
    sqlite3_bind_int64(st, 1, seq);
    sqlite3_bind_int64(st, 2, sid);
    sqlite3_bind_int64(st, 3, arrival_ms);
    sqlite3_bind_blob(st, 4, pkey, (int)pkey_len, SQLITE_STATIC);
    sqlite3_bind_blob(st, 5, data_len ? data : "", (int)data_len, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) return streamdb_fail(db, err, "insert record");
    if (db->in_txn) db->next_seq = seq + 1; /* written at commit */
    else if (streamdb_set_next_seq(db, seq + 1, err)) return -1;
    if (first) streamdb_ring_later(db, sid);
    streamdb_format_seq(seq, seq_out);
    return 0;
}

static int streamdb_query_int(streamdb_t *db, const char *sql, int64_t sid, int64_t arg, int64_t *out)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db->db, sql, -1, &st, NULL) != SQLITE_OK) return -1;
    sqlite3_bind_int64(st, 1, sid);
    sqlite3_bind_int64(st, 2, arg);
    int rc = sqlite3_step(st);
    int found = rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL;
    if (found) *out = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? found : -1;
}

static int streamdb_parse_seq(const char *s, int64_t *out)
{
    if (!seqnum_valid(s) || seqnum_cmp(s, "9223372036854775807") > 0) return -1;
    *out = strtoll(s, NULL, 10);
    return 0;
}

int streamdb_iterator(streamdb_t *db, const char *stream, const char *shard, const source_position_t *pos,
                      int64_t *first_seq, errbuf_t *err)
{
    int64_t sid = 0, end_seq = -1, seq = 0;
    if (streamdb_shard(db, stream, shard, &sid, &end_seq, err)) return -1;
    switch (pos->kind) {
    case POS_TRIM_HORIZON:
        *first_seq = 0;
        return 0;
    case POS_LATEST: {
        int64_t next = streamdb_next_seq(db);
        if (next < 0) return streamdb_fail(db, err, "read sequence counter");
        *first_seq = end_seq >= 0 && end_seq + 1 < next ? end_seq + 1 : next;
        return 0;
    }
    case POS_AT_TIMESTAMP: {
        int found = streamdb_query_int(db, "SELECT min(seq) FROM records WHERE sid=? AND arrival_ms>=?", sid,
                                       pos->timestamp_ms, &seq);
        if (found < 0) return streamdb_fail(db, err, "find timestamp");
        if (!found) {
            seq = streamdb_next_seq(db);
            if (seq < 0) return streamdb_fail(db, err, "read sequence counter");
        }
        *first_seq = seq;
        return 0;
    }
    case POS_AT_SEQUENCE:
    case POS_AFTER_SEQUENCE:
        if (!pos->seq || streamdb_parse_seq(pos->seq, &seq))
            return errbuf_set(err, "stream %s shard %s: invalid sequence number %s", stream, shard,
                              pos->seq ? pos->seq : "(none)");
        *first_seq = pos->kind == POS_AT_SEQUENCE ? seq : seq + 1;
        return 0;
    }
    return errbuf_set(err, "unknown position");
}

static int streamdb_read_in(streamdb_t *db, const char *stream, const char *shard, int64_t from, size_t max,
                            size_t max_bytes, batch_t **out, int64_t *next, int *ended, int64_t *millis_behind,
                            errbuf_t *err);

/* The shard's row and its records are read in one transaction: one lock
 * taken and dropped per read, not one per statement (most reads of a
 * caught-up shard find nothing, and cost little else). */
int streamdb_read(streamdb_t *db, const char *stream, const char *shard, int64_t from, size_t max, size_t max_bytes,
                  batch_t **out, int64_t *next, int *ended, int64_t *millis_behind, errbuf_t *err)
{
    int own = !db->in_txn && sqlite3_get_autocommit(db->db);
    if (own) {
        int rc = sqlite3_step(db->begin_stmt);
        sqlite3_reset(db->begin_stmt);
        if (rc != SQLITE_DONE) return streamdb_fail(db, err, "begin a read");
    }
    int rc = streamdb_read_in(db, stream, shard, from, max, max_bytes, out, next, ended, millis_behind, err);
    if (own) {
        sqlite3_step(db->commit_stmt); /* a read-only transaction: ending it cannot fail in a way that matters */
        sqlite3_reset(db->commit_stmt);
    }
    return rc;
}

static int streamdb_read_in(streamdb_t *db, const char *stream, const char *shard, int64_t from, size_t max,
                            size_t max_bytes, batch_t **out, int64_t *next, int *ended, int64_t *millis_behind,
                            errbuf_t *err)
{
    int64_t sid = 0, end_seq = -1;
    if (streamdb_shard(db, stream, shard, &sid, &end_seq, err)) return -1;
    sqlite3_stmt *st = db->read_stmt;
    sqlite3_reset(st);
    sqlite3_bind_int64(st, 1, sid);
    sqlite3_bind_int64(st, 2, from);
    if (end_seq >= 0) {
        sqlite3_bind_int64(st, 3, end_seq);
        sqlite3_bind_int64(st, 4, end_seq);
    } else {
        sqlite3_bind_null(st, 3);
        sqlite3_bind_null(st, 4);
    }
    sqlite3_bind_int64(st, 5, (sqlite3_int64)max);
    batch_t *b = NULL; /* made at the first record: a caught-up shard's read allocates little */
    int64_t last = from - 1, last_arrival = 0;
    int rc, full = 0;
    char seq[24];
    int64_t formatted = -1; /* the number seq holds */
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        /* handed to the caller; sized as the last read's records were, so
         * it rarely grows (a growth copies everything read so far) */
        if (!b) b = batch_new(max, max * (db->arena_per_record + db->arena_per_record / 8 + 8));
        const void *pkey = sqlite3_column_blob(st, 2);
        int pkey_len = sqlite3_column_bytes(st, 2);
        const void *data = sqlite3_column_blob(st, 3);
        int data_len = sqlite3_column_bytes(st, 3);
        size_t rec_bytes = sizeof(batch_record_t) + (size_t)data_len + (size_t)pkey_len + STREAMDB_SEQ_DIGITS + 3;
        size_t held = sizeof *b + b->count * sizeof(batch_record_t) + b->arena_len;
        if (max_bytes && b->count > 0 && held + rec_bytes > max_bytes) {
            full = 1; /* the rest is read next time */
            break;
        }
        last = sqlite3_column_int64(st, 0);
        last_arrival = sqlite3_column_int64(st, 1);
        if (formatted >= 0 && last > formatted && last - formatted < 1000000) streamdb_seq_add(seq, (uint64_t)(last - formatted));
        else streamdb_format_seq(last, seq);
        formatted = last;
        batch_add(&b, data, (size_t)data_len, pkey, (size_t)pkey_len, seq, STREAMDB_SEQ_DIGITS, 0, last_arrival);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE && !full) {
        batch_free(b);
        return streamdb_fail(db, err, "read records");
    }
    if (!b) b = batch_new(0, 0);
    if (b->count) db->arena_per_record = b->arena_len / b->count;
    *next = last + 1;
    batch_compact(&b); /* counted by what it holds, not by what a full read would need */
    /* A closed shard holds all its records already: a short read reached its end. */
    *ended = end_seq >= 0 && ((b->count < max && !full) || last >= end_seq);
    *millis_behind = b->count < max && !full ? 0 : streamdb_now_ms() - last_arrival;
    if (*millis_behind < 0) *millis_behind = 0;
    *out = b;
    return 0;
}

int streamdb_shard_rowid(streamdb_t *db, const char *stream, const char *shard, int64_t *sid, errbuf_t *err)
{
    int64_t end_seq;
    return streamdb_shard(db, stream, shard, sid, &end_seq, err);
}

int64_t streamdb_records_behind(streamdb_t *db, const char *stream, const char *shard, const char *checkpoint)
{
    int64_t sid = 0, end_seq = -1, after = -1, n = 0;
    errbuf_t err;
    if (streamdb_shard(db, stream, shard, &sid, &end_seq, &err)) return -1;
    if (!checkpoint || !strcmp(checkpoint, SEQNUM_TRIM_HORIZON)) after = -1;
    else if (!strcmp(checkpoint, SEQNUM_SHARD_END)) return 0;
    else if (seqnum_is_sentinel(checkpoint)) return -1; /* LATEST / AT_TIMESTAMP: unknown until started */
    else if (streamdb_parse_seq(checkpoint, &after)) return -1;
    if (streamdb_query_int(db, "SELECT count(*) FROM records WHERE sid=? AND seq>?", sid, after, &n) < 0) return -1;
    return n;
}

/* Closes a shard at the current end of the sequence space. */
static int streamdb_close_shard(streamdb_t *db, int64_t sid, int64_t end_seq, errbuf_t *err)
{
    sqlite3_stmt *st = NULL;
    if (streamdb_prepare(db, &st, "UPDATE shards SET end_seq=? WHERE sid=?", err)) return -1;
    sqlite3_bind_int64(st, 1, end_seq);
    sqlite3_bind_int64(st, 2, sid);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : streamdb_fail(db, err, "close shard");
}

/* A shard's hash range; *closed = 1 when the shard was split or merged already. */
static int streamdb_shard_range(streamdb_t *db, const char *stream, const char *shard, int64_t *sid, hashkey_t *lo,
                                hashkey_t *hi, int *closed, errbuf_t *err)
{
    int64_t end_seq;
    if (streamdb_shard(db, stream, shard, sid, &end_seq, err)) return -1;
    *closed = end_seq >= 0;
    sqlite3_stmt *st = NULL;
    if (streamdb_prepare(db, &st, "SELECT start_hash, end_hash FROM shards WHERE sid=?", err)) return -1;
    sqlite3_bind_int64(st, 1, *sid);
    int ok = sqlite3_step(st) == SQLITE_ROW && !hashkey_parse((const char *)sqlite3_column_text(st, 0), lo) &&
             !hashkey_parse((const char *)sqlite3_column_text(st, 1), hi);
    sqlite3_finalize(st);
    return ok ? 0 : errbuf_set(err, "%s: shard %s has a corrupt hash range", db->path, shard);
}

/* Whether a range ending at `hi` is followed at once by one starting at `lo`.
 * Nothing follows the range that ends at HASHKEY_MAX: there `hi + 1` wraps to
 * 0, the start of the first shard, and the first and last shards would look
 * adjacent. */
static int streamdb_ranges_touch(hashkey_t hi, hashkey_t lo)
{
    return hi != HASHKEY_MAX && hi + 1 == lo;
}

/* Common tail of split and merge: close the parents, add the children. */
static int streamdb_reshard(streamdb_t *db, const char *stream, int64_t sid1, int64_t sid2, const char *parent,
                            const char *adjacent, const hashkey_t *ranges, int nchildren, errbuf_t *err)
{
    int64_t next_shard = 0;
    if (streamdb_stream_exists(db, stream, &next_shard) != 1) return streamdb_fail(db, err, "lookup stream");
    int64_t next_seq = streamdb_next_seq(db);
    if (next_seq < 0) return streamdb_fail(db, err, "read sequence counter");
    if (streamdb_close_shard(db, sid1, next_seq - 1, err)) return -1;
    if (sid2 >= 0 && streamdb_close_shard(db, sid2, next_seq - 1, err)) return -1;
    /* the parents' readers learn of their end at once */
    streamdb_ring_later(db, sid1);
    if (sid2 >= 0) streamdb_ring_later(db, sid2);
    for (int i = 0; i < nchildren; i++) {
        char id[32];
        if (streamdb_insert_shard(db, stream, next_shard + i, parent, i == 0 ? adjacent : NULL, ranges[2 * i],
                                  ranges[2 * i + 1], next_seq, id, err))
            return -1;
    }
    /* Children start after every record of their parents. */
    if (streamdb_set_next_seq(db, next_seq + 1, err)) return -1;
    return streamdb_set_next_shard(db, stream, next_shard + nchildren, err);
}

int streamdb_split(streamdb_t *db, const char *stream, const char *shard, const char *new_start_hash,
                   errbuf_t *err)
{
    if (streamdb_begin(db, err)) return -1;
    int64_t sid = 0;
    hashkey_t lo, hi, mid;
    int closed = 0;
    int rc = streamdb_shard_range(db, stream, shard, &sid, &lo, &hi, &closed, err);
    if (!rc && closed) rc = errbuf_set(err, "stream %s: shard %s is closed already", stream, shard);
    if (!rc) {
        if (new_start_hash) {
            if (hashkey_parse(new_start_hash, &mid) || mid <= lo || mid > hi)
                rc = errbuf_set(err, "stream %s shard %s: new starting hash key %s is not inside the shard's range",
                                stream, shard, new_start_hash);
        } else if (hi == lo) {
            rc = errbuf_set(err, "stream %s shard %s: range too small to split", stream, shard);
        } else {
            mid = lo + (hi - lo) / 2 + 1;
        }
    }
    if (!rc) {
        hashkey_t ranges[4] = {lo, mid - 1, mid, hi};
        rc = streamdb_reshard(db, stream, sid, -1, shard, NULL, ranges, 2, err);
    }
    if (rc) {
        streamdb_rollback(db);
        return -1;
    }
    return streamdb_commit(db, err);
}

/* As Kinesis: two distinct open shards whose hash ranges touch, else
 * "not an adjacent pair of shards eligible for merging". */
int streamdb_merge(streamdb_t *db, const char *stream, const char *shard, const char *adjacent, errbuf_t *err)
{
    if (!strcmp(shard, adjacent))
        return errbuf_set(err,
                          "stream %s: shards %s and %s are not an adjacent pair of shards eligible for merging "
                          "(the same shard twice; name two open shards whose hash ranges touch)",
                          stream, shard, adjacent);
    if (streamdb_begin(db, err)) return -1;
    int64_t sid1 = 0, sid2 = 0;
    hashkey_t lo1, hi1, lo2, hi2;
    int closed1 = 0, closed2 = 0;
    int rc = streamdb_shard_range(db, stream, shard, &sid1, &lo1, &hi1, &closed1, err);
    if (!rc) rc = streamdb_shard_range(db, stream, adjacent, &sid2, &lo2, &hi2, &closed2, err);
    if (!rc && (closed1 || closed2))
        rc = errbuf_set(err,
                        "stream %s: shards %s and %s are not an adjacent pair of shards eligible for merging "
                        "(shard %s is closed: it was split or merged already)",
                        stream, shard, adjacent, closed1 ? shard : adjacent);
    if (!rc && !streamdb_ranges_touch(hi1, lo2) && !streamdb_ranges_touch(hi2, lo1))
        rc = errbuf_set(err,
                        "stream %s: shards %s and %s are not an adjacent pair of shards eligible for merging "
                        "(their hash ranges do not touch)",
                        stream, shard, adjacent);
    if (!rc) {
        hashkey_t ranges[2] = {lo1 < lo2 ? lo1 : lo2, hi1 > hi2 ? hi1 : hi2};
        rc = streamdb_reshard(db, stream, sid1, sid2, shard, adjacent, ranges, 1, err);
    }
    if (rc) {
        streamdb_rollback(db);
        return -1;
    }
    return streamdb_commit(db, err);
}
