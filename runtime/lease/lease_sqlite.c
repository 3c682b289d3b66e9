#include "lease_sqlite.h"

#include <cjson/cJSON.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/defer.h"
#include "record/seqnum.h"
#include "base/xalloc.h"

/* Short: writes run on the loop thread; a locked file answers LEASE_ERETRY and
 * the write is tried again at the next renew tick, instead of blocking renewals. */
#define LEASE_SQLITE_BUSY_MS 250
/* How long a new store keeps trying to set its file up while other workers,
 * started at the same moment, set up the same file (it runs before the loop). */
#define LEASE_SQLITE_SETUP_MS 10000

typedef struct lease_sqlite {
    lease_store_t base;
    sqlite3 *db;
    char *path;
    char *table;    /* quoted identifier */
    char *name;     /* the table's name as configured */
    defer_queue_t *defer;
} lease_sqlite_t;

typedef struct sqlite_reply {
    int is_list;
    void *cb;
    void *ud;
    lease_status_t st;
    errbuf_t err;
    lease_t row;
    lease_list_t *list;
} sqlite_reply_t;

static void sqlite_deliver(void *arg)
{
    sqlite_reply_t *r = arg;
    const char *msg = r->st ? r->err.msg : NULL;
    if (r->is_list) ((lease_list_cb)r->cb)(r->ud, r->st, msg, r->list);
    else ((lease_write_cb)r->cb)(r->ud, r->st, msg, r->st == LEASE_OK ? &r->row : NULL);
    lease_clear(&r->row);
    free(r);
}

static void sqlite_drop(void *arg)
{
    sqlite_reply_t *r = arg;
    lease_clear(&r->row);
    lease_list_free(r->list);
    free(r);
}

static sqlite_reply_t *sqlite_reply_new(int is_list, void *cb, void *ud)
{
    sqlite_reply_t *r = xcalloc(1, sizeof *r); /* freed by sqlite_deliver or sqlite_drop */
    r->is_list = is_list;
    r->cb = cb;
    r->ud = ud;
    return r;
}

/* A write's reply, holding the row as written (lease_apply_write): what the
 * callback gets on success. */
static sqlite_reply_t *sqlite_write_reply(const lease_t *l, const lease_write_t *w, lease_write_cb cb, void *ud)
{
    sqlite_reply_t *r = sqlite_reply_new(0, (void *)cb, ud);
    lease_apply_write(l, w, &r->row);
    return r;
}

static lease_status_t sqlite_fail(lease_sqlite_t *ls, sqlite_reply_t *r, const char *what)
{
    int code = sqlite3_errcode(ls->db);
    errbuf_set(&r->err, "%s: lease table %s: %s: %s", ls->path, ls->table, what, sqlite3_errmsg(ls->db));
    return code == SQLITE_BUSY || code == SQLITE_LOCKED ? LEASE_ERETRY : LEASE_EFATAL;
}

int lease_sqlite_parse_ids(const char *json, char ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (!json || !*json) return 0;
    cJSON *arr = cJSON_Parse(json);
    if (!arr || !cJSON_IsArray(arr)) {
        cJSON_Delete(arr);
        return -1;
    }
    size_t count = (size_t)cJSON_GetArraySize(arr);
    char **v = count ? xcalloc(count, sizeof *v) : NULL; /* owned by the caller */
    size_t i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        if (!cJSON_IsString(it) || !*it->valuestring) {
            for (size_t j = 0; j < i; j++) free(v[j]);
            free(v);
            cJSON_Delete(arr);
            return -1;
        }
        v[i++] = xstrdup(it->valuestring);
    }
    cJSON_Delete(arr);
    *out = v;
    *n = count;
    return 0;
}

static char *sqlite_ids_json(char *const *ids, size_t n)
{
    if (!n) return NULL;
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; i < n; i++) cJSON_AddItemToArray(arr, cJSON_CreateString(ids[i]));
    char *s = cJSON_PrintUnformatted(arr); /* freed by the caller with free() */
    cJSON_Delete(arr);
    if (!s) xalloc_oom(0);
    return s;
}

static char *sqlite_text(sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    return t ? xstrdup((const char *)t) : NULL;
}

/* Reads one row into l, marking it invalid (with the reason) rather than
 * failing: a bad row must be reported and skipped, never crash the worker. */
static void sqlite_read_row(sqlite3_stmt *st, lease_t *l)
{
    char why[256] = "";
    l->key = sqlite_text(st, 0);
    if (sqlite3_column_type(st, 1) == SQLITE_TEXT) l->owner = sqlite_text(st, 1);
    else if (sqlite3_column_type(st, 1) != SQLITE_NULL) snprintf(why, sizeof why, "leaseOwner is not a string");
    if (l->owner && !*l->owner) snprintf(why, sizeof why, "leaseOwner is empty");
    if (sqlite3_column_type(st, 2) == SQLITE_INTEGER) l->counter = sqlite3_column_int64(st, 2);
    else snprintf(why, sizeof why, "leaseCounter is missing or not a number");
    l->checkpoint = sqlite_text(st, 3);
    if (!l->checkpoint || (!seqnum_is_sentinel(l->checkpoint) && !seqnum_valid(l->checkpoint)))
        snprintf(why, sizeof why, "checkpoint is missing or not a sequence number");
    l->checkpoint_sub = sqlite3_column_int64(st, 4);
    l->owner_switches = sqlite3_column_int64(st, 5);
    char *parents = sqlite_text(st, 6), *children = sqlite_text(st, 7);
    if (lease_sqlite_parse_ids(parents, &l->parents, &l->nparents))
        snprintf(why, sizeof why, "parentShardId is not a list of shard ids");
    if (lease_sqlite_parse_ids(children, &l->children, &l->nchildren))
        snprintf(why, sizeof why, "childShardIds is not a list of shard ids");
    free(parents);
    free(children);
    l->start_hash = sqlite_text(st, 8);
    l->end_hash = sqlite_text(st, 9);
    l->stream = sqlite_text(st, 10);
    l->shard = sqlite_text(st, 11);
    l->info = sqlite_text(st, 12);
    if (sqlite3_column_type(st, 13) == SQLITE_TEXT) l->pending_owner = sqlite_text(st, 13);
    if (!l->key || !*l->key) snprintf(why, sizeof why, "leaseKey is empty");
    if (!l->shard && l->key) {
        const char *colon = strrchr(l->key, ':');
        l->shard = xstrdup(colon ? colon + 1 : l->key);
    }
    if (*why) l->invalid = xstrdup(why);
}

static const char *const sqlite_columns =
    "leaseKey, leaseOwner, leaseCounter, checkpoint, checkpointSubSequenceNumber,"
    " ownerSwitchesSinceCheckpoint, parentShardId, childShardIds, startingHashKey, endingHashKey,"
    " streamName, shardId, shardrunInfo, pendingOwner";

static void sqlite_list(lease_store_t *s, lease_list_cb cb, void *ud)
{
    lease_sqlite_t *ls = (lease_sqlite_t *)s;
    sqlite_reply_t *r = sqlite_reply_new(1, (void *)cb, ud);
    char sql[512];
    snprintf(sql, sizeof sql, "SELECT %s FROM %s ORDER BY leaseKey", sqlite_columns, ls->table);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(ls->db, sql, -1, &st, NULL) != SQLITE_OK) {
        r->st = sqlite_fail(ls, r, "scan");
    } else {
        lease_list_t *l = xcalloc(1, sizeof *l); /* handed to the callback */
        size_t cap = 0;
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            if (l->count == cap) {
                cap = cap ? cap * 2 : 16;
                l->leases = xrealloc(l->leases, cap * sizeof *l->leases);
            }
            lease_t *row = &l->leases[l->count++];
            memset(row, 0, sizeof *row);
            sqlite_read_row(st, row);
        }
        if (rc != SQLITE_DONE) {
            r->st = sqlite_fail(ls, r, "scan");
            lease_list_free(l);
        } else {
            lease_list_sort(l); /* the interface's order (strcmp), whatever the column's collation */
            r->list = l;
        }
    }
    sqlite3_finalize(st);
    defer_call(ls->defer, sqlite_deliver, r);
}

/* Binds ?1.. in order: text values (NULL allowed) and integers. */
typedef struct sqlite_arg {
    int is_int;
    const char *text;
    int64_t num;
} sqlite_arg_t;

#define ARG_T(v) ((sqlite_arg_t){0, (v), 0})
#define ARG_I(v) ((sqlite_arg_t){1, NULL, (v)})

/* Runs one write statement; LEASE_CONFLICT when it changed no row. */
static lease_status_t sqlite_write(lease_sqlite_t *ls, sqlite_reply_t *r, const char *sql, const sqlite_arg_t *args,
                                   int nargs)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(ls->db, sql, -1, &st, NULL) != SQLITE_OK) return sqlite_fail(ls, r, "prepare");
    for (int i = 0; i < nargs; i++) {
        if (args[i].is_int) sqlite3_bind_int64(st, i + 1, args[i].num);
        else if (args[i].text) sqlite3_bind_text(st, i + 1, args[i].text, -1, SQLITE_STATIC);
        else sqlite3_bind_null(st, i + 1);
    }
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        if (sqlite3_errcode(ls->db) == SQLITE_CONSTRAINT) {
            errbuf_set(&r->err, "lease exists already");
            return LEASE_CONFLICT;
        }
        return sqlite_fail(ls, r, "write");
    }
    if (sqlite3_changes(ls->db) != 1) {
        errbuf_set(&r->err, "lease changed (owner or counter moved)");
        return LEASE_CONFLICT;
    }
    return LEASE_OK;
}

/* Completes a write: on success the callback gets `row` (already updated). */
static void sqlite_finish(lease_sqlite_t *ls, sqlite_reply_t *r, lease_status_t st)
{
    r->st = st;
    defer_call(ls->defer, sqlite_deliver, r);
}

static void sqlite_create(lease_store_t *s, const lease_t *l, lease_write_cb cb, void *ud)
{
    lease_sqlite_t *ls = (lease_sqlite_t *)s;
    sqlite_reply_t *r = sqlite_write_reply(l, &(lease_write_t){.kind = LEASE_WRITE_CREATE}, cb, ud);
    char *parents = sqlite_ids_json(l->parents, l->nparents);
    char *children = sqlite_ids_json(l->children, l->nchildren);
    char sql[512];
    snprintf(sql, sizeof sql, "INSERT INTO %s(%s) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)", ls->table, sqlite_columns);
    sqlite_arg_t args[] = {ARG_T(l->key),        ARG_T(l->owner),          ARG_I(l->counter),
                           ARG_T(l->checkpoint), ARG_I(l->checkpoint_sub), ARG_I(l->owner_switches),
                           ARG_T(parents),       ARG_T(children),          ARG_T(l->start_hash),
                           ARG_T(l->end_hash),   ARG_T(l->stream),         ARG_T(l->shard),
                           ARG_T(l->info),       ARG_T(l->pending_owner)};
    lease_status_t st = sqlite_write(ls, r, sql, args, (int)(sizeof args / sizeof *args));
    free(parents);
    free(children);
    sqlite_finish(ls, r, st);
}

/* The conditional update behind renew, take, checkpoint and release. `set`
 * is the SET clause with ?1..?n; the condition binds after it. */
static void sqlite_update(lease_sqlite_t *ls, sqlite_reply_t *r, const lease_t *l, const char *set,
                          sqlite_arg_t *args, int nargs)
{
    char sql[768];
    snprintf(sql, sizeof sql, "UPDATE %s SET %s, leaseCounter=leaseCounter+1 WHERE leaseKey=? AND leaseCounter=?"
             " AND leaseOwner IS ?", ls->table, set);
    sqlite_arg_t all[8];
    int n = 0;
    for (int i = 0; i < nargs; i++) all[n++] = args[i];
    all[n++] = ARG_T(l->key);
    all[n++] = ARG_I(l->counter);
    all[n++] = ARG_T(l->owner);
    sqlite_finish(ls, r, sqlite_write(ls, r, sql, all, n));
}

static void sqlite_renew(lease_store_t *s, const lease_t *l, lease_write_cb cb, void *ud)
{
    lease_sqlite_t *ls = (lease_sqlite_t *)s;
    sqlite_reply_t *r = sqlite_write_reply(l, &(lease_write_t){.kind = LEASE_WRITE_RENEW}, cb, ud);
    if (l->info) {
        sqlite_arg_t args[] = {ARG_T(l->info)};
        sqlite_update(ls, r, l, "shardrunInfo=?", args, 1);
    } else {
        sqlite_update(ls, r, l, "leaseOwner=leaseOwner", NULL, 0);
    }
}

static void sqlite_take(lease_store_t *s, const lease_t *l, const char *new_owner, lease_write_cb cb, void *ud)
{
    lease_sqlite_t *ls = (lease_sqlite_t *)s;
    sqlite_reply_t *r = sqlite_write_reply(l, &(lease_write_t){.kind = LEASE_WRITE_TAKE, .worker = new_owner}, cb, ud);
    sqlite_arg_t args[] = {ARG_T(new_owner)};
    sqlite_update(ls, r, l, "leaseOwner=?, pendingOwner=NULL, ownerSwitchesSinceCheckpoint=ownerSwitchesSinceCheckpoint+1",
                  args, 1);
}

static void sqlite_checkpoint(lease_store_t *s, const lease_t *l, const char *seq, int64_t sub, lease_write_cb cb,
                              void *ud)
{
    lease_sqlite_t *ls = (lease_sqlite_t *)s;
    sqlite_reply_t *r = sqlite_write_reply(l, &(lease_write_t){.kind = LEASE_WRITE_CHECKPOINT, .seq = seq, .sub = sub}, cb, ud);
    sqlite_arg_t args[] = {ARG_T(seq), ARG_I(sub)};
    sqlite_update(ls, r, l, "checkpoint=?, checkpointSubSequenceNumber=?, ownerSwitchesSinceCheckpoint=0", args, 2);
}

static void sqlite_release(lease_store_t *s, const lease_t *l, lease_write_cb cb, void *ud)
{
    lease_sqlite_t *ls = (lease_sqlite_t *)s;
    sqlite_reply_t *r = sqlite_write_reply(l, &(lease_write_t){.kind = LEASE_WRITE_RELEASE}, cb, ud);
    sqlite_update(ls, r, l, "leaseOwner=NULL, pendingOwner=NULL", NULL, 0);
}

static void sqlite_request_handoff(lease_store_t *s, const lease_t *l, const char *requester, lease_write_cb cb,
                                   void *ud)
{
    lease_sqlite_t *ls = (lease_sqlite_t *)s;
    sqlite_reply_t *r = sqlite_write_reply(l, &(lease_write_t){.kind = LEASE_WRITE_REQUEST_HANDOFF, .worker = requester}, cb,
                                           ud);
    char sql[512];
    snprintf(sql, sizeof sql, "UPDATE %s SET pendingOwner=? WHERE leaseKey=? AND leaseCounter=? AND leaseOwner IS ?"
             " AND pendingOwner IS NULL", ls->table);
    sqlite_arg_t args[] = {ARG_T(requester), ARG_T(l->key), ARG_I(l->counter), ARG_T(l->owner)};
    sqlite_finish(ls, r, sqlite_write(ls, r, sql, args, 4));
}

static void sqlite_handoff(lease_store_t *s, const lease_t *l, lease_write_cb cb, void *ud)
{
    lease_sqlite_t *ls = (lease_sqlite_t *)s;
    sqlite_reply_t *r = sqlite_write_reply(l, &(lease_write_t){.kind = LEASE_WRITE_HANDOFF}, cb, ud);
    char sql[512];
    snprintf(sql, sizeof sql, "UPDATE %s SET leaseOwner=pendingOwner, pendingOwner=NULL, leaseCounter=leaseCounter+1,"
             " ownerSwitchesSinceCheckpoint=ownerSwitchesSinceCheckpoint+1 WHERE leaseKey=? AND leaseCounter=?"
             " AND leaseOwner IS ? AND pendingOwner IS ?", ls->table);
    sqlite_arg_t args[] = {ARG_T(l->key), ARG_I(l->counter), ARG_T(l->owner), ARG_T(l->pending_owner)};
    lease_status_t st = l->pending_owner ? sqlite_write(ls, r, sql, args, 4) : LEASE_CONFLICT;
    sqlite_finish(ls, r, st);
}

static void sqlite_cancel_handoff(lease_store_t *s, const lease_t *l, const char *requester, lease_write_cb cb,
                                  void *ud)
{
    lease_sqlite_t *ls = (lease_sqlite_t *)s;
    sqlite_reply_t *r = sqlite_write_reply(l, &(lease_write_t){.kind = LEASE_WRITE_CANCEL_HANDOFF, .worker = requester}, cb,
                                           ud);
    char sql[256];
    snprintf(sql, sizeof sql, "UPDATE %s SET pendingOwner=NULL WHERE leaseKey=? AND pendingOwner=?", ls->table);
    sqlite_arg_t args[] = {ARG_T(l->key), ARG_T(requester)};
    sqlite_finish(ls, r, sqlite_write(ls, r, sql, args, 2));
}

static void sqlite_remove(lease_store_t *s, const lease_t *l, lease_write_cb cb, void *ud)
{
    lease_sqlite_t *ls = (lease_sqlite_t *)s;
    sqlite_reply_t *r = sqlite_write_reply(l, &(lease_write_t){.kind = LEASE_WRITE_REMOVE}, cb, ud);
    char sql[256];
    snprintf(sql, sizeof sql, "DELETE FROM %s WHERE leaseKey=? AND leaseCounter=?", ls->table);
    sqlite_arg_t args[] = {ARG_T(l->key), ARG_I(l->counter)};
    sqlite_finish(ls, r, sqlite_write(ls, r, sql, args, 2));
}

static void sqlite_destroy(lease_store_t *s)
{
    lease_sqlite_t *ls = (lease_sqlite_t *)s;
    defer_queue_free(ls->defer, sqlite_drop);
    sqlite3_close(ls->db);
    free(ls->path);
    free(ls->table);
    free(ls->name);
    free(ls);
}

static const lease_store_ops_t lease_sqlite_ops = {
    .name = "local",
    .list = sqlite_list,
    .create = sqlite_create,
    .renew = sqlite_renew,
    .take = sqlite_take,
    .checkpoint = sqlite_checkpoint,
    .release = sqlite_release,
    .request_handoff = sqlite_request_handoff,
    .handoff = sqlite_handoff,
    .cancel_handoff = sqlite_cancel_handoff,
    .remove = sqlite_remove,
    .destroy = sqlite_destroy,
};

/* "name" -> "\"name\"" with quotes doubled: the table name comes from config. */
static char *sqlite_quote_ident(const char *name)
{
    size_t n = strlen(name);
    char *q = xmalloc(2 * n + 3); /* owned by the store */
    char *p = q;
    *p++ = '"';
    for (size_t i = 0; i < n; i++) {
        if (name[i] == '"') *p++ = '"';
        *p++ = name[i];
    }
    *p++ = '"';
    *p = '\0';
    return q;
}

/* A table made by an older shardrun (or by hand, with the KCL's columns
 * only) gets the columns added since, so it is used as it is. */
static int sqlite_add_missing_columns(lease_sqlite_t *ls, errbuf_t *err)  /* an SQLite result code */
{
    static const char *const added[][2] = {
        {"streamName", "TEXT"}, {"shardId", "TEXT"}, {"shardrunInfo", "TEXT"}, {"pendingOwner", "TEXT"},
        {"checkpointSubSequenceNumber", "INTEGER DEFAULT 0"}, {"ownerSwitchesSinceCheckpoint", "INTEGER DEFAULT 0"},
        {"parentShardId", "TEXT"}, {"childShardIds", "TEXT"}, {"startingHashKey", "TEXT"}, {"endingHashKey", "TEXT"},
    };
    char sql[512];
    for (size_t i = 0; i < sizeof added / sizeof *added; i++) {
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(ls->db, "SELECT 1 FROM pragma_table_info(?) WHERE name = ?", -1, &st, NULL) !=
            SQLITE_OK) {
            sqlite3_finalize(st);
            errbuf_set(err, "%s: lease table %s: %s", ls->path, ls->table, sqlite3_errmsg(ls->db));
            return sqlite3_errcode(ls->db);
        }
        sqlite3_bind_text(st, 1, ls->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, added[i][0], -1, SQLITE_STATIC);
        int present = sqlite3_step(st) == SQLITE_ROW;
        sqlite3_finalize(st);
        if (present) continue;
        snprintf(sql, sizeof sql, "ALTER TABLE %s ADD COLUMN %s %s", ls->table, added[i][0], added[i][1]);
        int rc = sqlite3_exec(ls->db, sql, NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
            errbuf_set(err, "%s: lease table %s: cannot add column %s: %s", ls->path, ls->table, added[i][0],
                       sqlite3_errmsg(ls->db));
            return rc;
        }
    }
    return SQLITE_OK;
}

/* WAL mode, the table, the columns added since. An SQLite result code. */
static int sqlite_setup(lease_sqlite_t *ls, errbuf_t *err)
{
    char sql[1280];
    snprintf(sql, sizeof sql,
             "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
             "CREATE TABLE IF NOT EXISTS %s(leaseKey TEXT PRIMARY KEY, leaseOwner TEXT, leaseCounter INTEGER,"
             " checkpoint TEXT, checkpointSubSequenceNumber INTEGER DEFAULT 0,"
             " ownerSwitchesSinceCheckpoint INTEGER DEFAULT 0, parentShardId TEXT, childShardIds TEXT,"
             " startingHashKey TEXT, endingHashKey TEXT, streamName TEXT, shardId TEXT, shardrunInfo TEXT,"
             " pendingOwner TEXT)",
             ls->table);
    char *msg = NULL;
    int rc = sqlite3_exec(ls->db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        errbuf_set(err, "%s: not a usable lease file: %s", ls->path, msg ? msg : "unknown error");
        sqlite3_free(msg);
        return rc;
    }
    return sqlite_add_missing_columns(ls, err);
}

lease_store_t *lease_sqlite_new(struct ev_loop *loop, const char *path, const char *table, errbuf_t *err)
{
    lease_sqlite_t *ls = xcalloc(1, sizeof *ls); /* owned by the caller: lease_store_destroy */
    ls->base.ops = &lease_sqlite_ops;
    ls->base.loop = loop;
    ls->path = xstrdup(path);
    ls->table = sqlite_quote_ident(table);
    ls->name = xstrdup(table);
    if (sqlite3_open_v2(path, &ls->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        errbuf_set(err, "%s: cannot open lease file: %s", path, ls->db ? sqlite3_errmsg(ls->db) : "out of memory");
        sqlite_destroy(&ls->base);
        return NULL;
    }
    sqlite3_busy_timeout(ls->db, LEASE_SQLITE_BUSY_MS);
    /* Workers started together set up the same new file at once, and SQLite
     * answers some of those collisions BUSY without waiting (a wait could
     * deadlock): the whole setup, which is idempotent, is tried again. */
    int64_t give_up = clock_mono_ms() + LEASE_SQLITE_SETUP_MS;
    int rc;
    while ((rc = sqlite_setup(ls, err)) == SQLITE_BUSY && clock_mono_ms() < give_up) usleep(20 * 1000);
    if (rc != SQLITE_OK) {
        sqlite_destroy(&ls->base);
        return NULL;
    }
    ls->defer = defer_queue_new(loop);
    return &ls->base;
}
