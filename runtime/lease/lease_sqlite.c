/* The store's statements run on a thread of its own (one thread: in the
 * order they were asked), never on the loop: a lease file another process
 * holds locked makes SQLite wait up to LEASE_SQLITE_BUSY_MS, and a slow disk
 * stalls a commit; neither may hold up the loop (renewals of other leases,
 * processing, other stores). Answers come back on the loop through the
 * pool's ev_async, so a callback never runs inside the call.
 *
 * Requests asked while a batch runs wait, and then run together, in order,
 * in one transaction (group commit, at most LEASE_SQLITE_BATCH): a thousand
 * shards' takes, checkpoints or releases cost a few commits, not a thousand.
 * Each write keeps its own condition and answer; a batch that cannot commit
 * answers every request in it LEASE_ERETRY (nothing of it was written). */
#include "lease_sqlite.h"

#include <cjson/cJSON.h>
#include <ev.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/tpool.h"
#include "lease_alive.h"
#include "record/seqnum.h"
#include "base/xalloc.h"

/* How long one statement waits for a lock another process holds. A locked
 * file answers LEASE_ERETRY after it, and the write is tried again at the
 * next renew tick: later writes of this store wait behind it, not the loop. */
#define LEASE_SQLITE_BUSY_MS 250
/* How long a new store keeps trying to set its file up while other workers,
 * started at the same moment, set up the same file (it runs before the loop). */
#define LEASE_SQLITE_SETUP_MS 10000
#define SQLITE_MAX_ARGS 16
/* Requests run in one transaction at most: the lock is held for that long. */
#define LEASE_SQLITE_BATCH 256
/* Distinct statement texts the store prepares once and keeps. */
#define LEASE_SQLITE_STMTS 16
/* How often a scan removes the files of dead workers that own nothing (lease_alive_sweep). */
#define LEASE_SQLITE_SWEEP_MS 60000

typedef struct sqlite_reply sqlite_reply_t;

/* Prepared once, reused: the store's statements differ only by kind. */
typedef struct sqlite_cached_stmt {
    char *sql;
    sqlite3_stmt *st;
} sqlite_cached_stmt_t;

/* The requests the store's thread runs at once (one batch at a time). */
typedef struct sqlite_batch {
    tpool_job_t job;            /* first: a tpool_job_t * is a sqlite_batch_t * */
    struct lease_sqlite *ls;
    sqlite_reply_t *v[LEASE_SQLITE_BATCH];
    size_t n;
} sqlite_batch_t;

typedef struct lease_sqlite {
    lease_store_t base;
    sqlite3 *db;            /* used by the pool's thread once the store is set up */
    char *path;
    char *table;            /* quoted identifier */
    char *name;             /* the table's name as configured */
    tpool_t *pool;          /* one thread */
    sqlite_reply_t *inflight;   /* submitted, not answered yet (loop thread) */
    sqlite_reply_t *queue_head, *queue_tail;   /* asked, waiting for the next batch (loop thread) */
    int running;            /* the batch is with the thread (loop thread) */
    sqlite_batch_t batch;
    sqlite_cached_stmt_t stmts[LEASE_SQLITE_STMTS];   /* pool thread */
    size_t nstmts;
    lease_alive_t *alive;   /* NULL unless a worker joined (lease_alive.h); read by the pool's thread */
    void (*gone)(void *ud);
    void *gone_ud;
    int64_t swept_ms;       /* pool thread: the last sweep */
} lease_sqlite_t;

/* Binds ?1.. in order: text values (NULL allowed) and integers. */
typedef struct sqlite_arg {
    int is_int;
    char *text;             /* owned */
    int64_t num;
} sqlite_arg_t;

/* One request: built on the loop, run on the pool's thread, answered on the
 * loop. Owned by the store's inflight list until answered or dropped. */
struct sqlite_reply {
    lease_sqlite_t *ls;
    int is_list;
    void *cb, *ud;
    char *sql;              /* NULL: nothing to run, st is the answer */
    sqlite_arg_t args[SQLITE_MAX_ARGS];
    int nargs;
    lease_status_t st;
    errbuf_t err;
    lease_t row;            /* a write's row as written */
    lease_list_t *list;
    sqlite_reply_t *prev, *next;   /* the inflight list */
    sqlite_reply_t *queued;        /* the queue */
};

static void sqlite_reply_free(sqlite_reply_t *r)
{
    lease_sqlite_t *ls = r->ls;
    if (r->prev) r->prev->next = r->next;
    else ls->inflight = r->next;
    if (r->next) r->next->prev = r->prev;
    for (int i = 0; i < r->nargs; i++) free(r->args[i].text);
    free(r->sql);
    lease_clear(&r->row);
    lease_list_free(r->list);
    free(r);
}

static void sqlite_arg_text(sqlite_reply_t *r, const char *v)
{
    if (r->nargs == SQLITE_MAX_ARGS) abort(); /* a programming error: more placeholders than any statement here */
    r->args[r->nargs++] = (sqlite_arg_t){0, v ? xstrdup(v) : NULL, 0};
}

static void sqlite_arg_int(sqlite_reply_t *r, int64_t v)
{
    if (r->nargs == SQLITE_MAX_ARGS) abort();
    r->args[r->nargs++] = (sqlite_arg_t){1, NULL, v};
}

static sqlite_reply_t *sqlite_reply_new(lease_sqlite_t *ls, int is_list, void *cb, void *ud)
{
    sqlite_reply_t *r = xcalloc(1, sizeof *r); /* freed by sqlite_batch_done or sqlite_destroy */
    r->ls = ls;
    r->is_list = is_list;
    r->cb = cb;
    r->ud = ud;
    r->next = ls->inflight;
    if (ls->inflight) ls->inflight->prev = r;
    ls->inflight = r;
    return r;
}

/* A write's request, holding the row as written (lease_apply_write): what
 * the callback gets on success. */
static sqlite_reply_t *sqlite_write_reply(lease_sqlite_t *ls, const lease_t *l, const lease_write_t *w,
                                          lease_write_cb cb, void *ud)
{
    sqlite_reply_t *r = sqlite_reply_new(ls, 0, (void *)cb, ud);
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
    if (sqlite3_column_type(st, 14) == SQLITE_TEXT) l->control = sqlite_text(st, 14);
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
    " streamName, shardId, shardrunInfo, pendingOwner, shardrunControl";

static int sqlite_bind(sqlite3_stmt *st, const sqlite_reply_t *r)
{
    for (int i = 0; i < r->nargs; i++) {
        const sqlite_arg_t *a = &r->args[i];
        int rc = a->is_int ? sqlite3_bind_int64(st, i + 1, a->num)
                 : a->text ? sqlite3_bind_text(st, i + 1, a->text, -1, SQLITE_STATIC)
                           : sqlite3_bind_null(st, i + 1);
        if (rc != SQLITE_OK) return rc;
    }
    return SQLITE_OK;
}

static int sqlite_str_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Pool thread: the owners of l's rows that are known dead (l->dead), and
 * now and then a sweep of the dead workers' files. */
static void sqlite_find_dead(lease_sqlite_t *ls, lease_list_t *l)
{
    const char **owners = xcalloc(l->count ? l->count : 1, sizeof *owners); /* freed below */
    size_t n = 0;
    for (size_t i = 0; i < l->count; i++)
        if (l->leases[i].owner) owners[n++] = l->leases[i].owner;
    qsort(owners, n, sizeof *owners, sqlite_str_cmp);
    for (size_t i = 0; i < n; i++) {
        if (i && !strcmp(owners[i], owners[i - 1])) continue;
        if (!lease_alive_dead(ls->alive, owners[i])) continue;
        l->dead = xrealloc(l->dead, (l->ndead + 1) * sizeof *l->dead); /* owned by the list */
        l->dead[l->ndead++] = xstrdup(owners[i]);
    }
    int64_t now = clock_mono_ms();
    if (now - ls->swept_ms >= LEASE_SQLITE_SWEEP_MS) {
        ls->swept_ms = now;
        lease_alive_sweep(ls->alive, owners, n);
    }
    free(owners);
}

/* Pool thread: the scan. */
static void sqlite_run_list(lease_sqlite_t *ls, sqlite_reply_t *r)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(ls->db, r->sql, -1, &st, NULL) != SQLITE_OK) {
        r->st = sqlite_fail(ls, r, "scan");
        sqlite3_finalize(st);
        return;
    }
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
        if (ls->alive) sqlite_find_dead(ls, l);
        r->list = l;
        r->st = LEASE_OK;
    }
    sqlite3_finalize(st);
}

/* Pool thread: the statement for r->sql, prepared once; NULL with r->st set. */
static sqlite3_stmt *sqlite_stmt(lease_sqlite_t *ls, sqlite_reply_t *r)
{
    for (size_t i = 0; i < ls->nstmts; i++) {
        if (strcmp(ls->stmts[i].sql, r->sql)) continue;
        sqlite3_reset(ls->stmts[i].st);
        sqlite3_clear_bindings(ls->stmts[i].st);
        return ls->stmts[i].st;
    }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(ls->db, r->sql, -1, &st, NULL) != SQLITE_OK) {
        r->st = sqlite_fail(ls, r, "prepare");
        sqlite3_finalize(st);
        return NULL;
    }
    if (ls->nstmts == LEASE_SQLITE_STMTS) { /* never with the statements of this file: keep the newest */
        sqlite3_finalize(ls->stmts[0].st);
        free(ls->stmts[0].sql);
        memmove(&ls->stmts[0], &ls->stmts[1], (LEASE_SQLITE_STMTS - 1) * sizeof *ls->stmts);
        ls->nstmts--;
    }
    ls->stmts[ls->nstmts++] = (sqlite_cached_stmt_t){xstrdup(r->sql), st}; /* finalized by sqlite_destroy */
    return st;
}

/* Pool thread: one write statement; LEASE_CONFLICT when it changed no row. */
static void sqlite_run_write(lease_sqlite_t *ls, sqlite_reply_t *r)
{
    sqlite3_stmt *st = sqlite_stmt(ls, r);
    if (!st) return;
    if (sqlite_bind(st, r) != SQLITE_OK) {
        r->st = sqlite_fail(ls, r, "bind");
        return;
    }
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        if (sqlite3_errcode(ls->db) == SQLITE_CONSTRAINT) {
            errbuf_set(&r->err, "lease exists already");
            r->st = LEASE_CONFLICT;
            return;
        }
        r->st = sqlite_fail(ls, r, "write");
        return;
    }
    if (sqlite3_changes(ls->db) != 1) {
        errbuf_set(&r->err, "lease changed (owner or counter moved)");
        r->st = LEASE_CONFLICT;
        return;
    }
    r->st = LEASE_OK;
}

/* Pool thread: nothing of the batch was written (its transaction could not
 * begin or commit, or an error rolled it back): every request in it is
 * answered LEASE_ERETRY, lists too (they may have seen its writes). */
static void sqlite_batch_undone(sqlite_batch_t *b, const char *why)
{
    for (size_t i = 0; i < b->n; i++) {
        sqlite_reply_t *r = b->v[i];
        if (!r->sql) continue;
        lease_list_free(r->list);
        r->list = NULL;
        if (r->st == LEASE_OK || r->st == LEASE_CONFLICT || !r->err.msg[0])
            errbuf_set(&r->err, "%s: lease table %s: %s", b->ls->path, b->ls->table, why);
        r->st = LEASE_ERETRY;
    }
}

/* Pool thread: the batch's requests in order; more than one write runs in
 * one transaction. */
static void sqlite_run_batch(tpool_job_t *job)
{
    sqlite_batch_t *b = (sqlite_batch_t *)job;
    lease_sqlite_t *ls = b->ls;
    size_t writes = 0;
    for (size_t i = 0; i < b->n; i++) writes += b->v[i]->sql && !b->v[i]->is_list;
    int txn = writes > 1;
    char why[600];
    if (txn && sqlite3_exec(ls->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        int code = sqlite3_errcode(ls->db);
        snprintf(why, sizeof why, "begin: %s", sqlite3_errmsg(ls->db));
        sqlite_batch_undone(b, why);
        if (code != SQLITE_BUSY && code != SQLITE_LOCKED)
            for (size_t i = 0; i < b->n; i++) if (b->v[i]->sql) b->v[i]->st = LEASE_EFATAL;
        return;
    }
    for (size_t i = 0; i < b->n; i++) {
        sqlite_reply_t *r = b->v[i];
        if (!r->sql) continue;
        if (r->is_list) sqlite_run_list(ls, r);
        else sqlite_run_write(ls, r);
        if (txn && sqlite3_get_autocommit(ls->db)) { /* the error rolled the transaction back */
            snprintf(why, sizeof why, "rolled back with its batch: %.500s", r->err.msg);
            sqlite_batch_undone(b, why);
            return;
        }
    }
    if (txn && sqlite3_exec(ls->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(why, sizeof why, "commit: %s", sqlite3_errmsg(ls->db));
        sqlite3_exec(ls->db, "ROLLBACK", NULL, NULL, NULL);
        sqlite_batch_undone(b, why);
    }
}

static void sqlite_kick(lease_sqlite_t *ls);

/* Loop thread: the answers, in order. */
static void sqlite_batch_done(tpool_job_t *job)
{
    sqlite_batch_t *b = (sqlite_batch_t *)job;
    lease_sqlite_t *ls = b->ls;
    for (size_t i = 0; i < b->n; i++) {
        sqlite_reply_t *r = b->v[i];
        ev_unref(ls->base.loop); /* the request no longer keeps the loop running */
        const char *msg = r->st ? r->err.msg : NULL;
        if (r->is_list) {
            lease_list_t *l = r->st == LEASE_OK ? r->list : NULL;
            r->list = NULL;
            ((lease_list_cb)r->cb)(r->ud, r->st, msg, l); /* may ask more: it waits for the next batch */
        } else {
            ((lease_write_cb)r->cb)(r->ud, r->st, msg, r->st == LEASE_OK ? &r->row : NULL);
        }
        sqlite_reply_free(r);
    }
    b->n = 0;
    ls->running = 0;
    sqlite_kick(ls);
}

/* Loop thread: the queue's head, as the next batch, to the thread. */
static void sqlite_kick(lease_sqlite_t *ls)
{
    if (ls->running || !ls->queue_head) return;
    sqlite_batch_t *b = &ls->batch;
    b->ls = ls;
    b->n = 0;
    while (ls->queue_head && b->n < LEASE_SQLITE_BATCH) {
        sqlite_reply_t *r = ls->queue_head;
        ls->queue_head = r->queued;
        r->queued = NULL;
        b->v[b->n++] = r;
    }
    if (!ls->queue_head) ls->queue_tail = NULL;
    b->job = (tpool_job_t){.run = sqlite_run_batch, .done = sqlite_batch_done};
    ls->running = 1;
    tpool_submit(ls->pool, &b->job);
}

/* Queues r for the store's thread: it runs at once, or with the next batch
 * while one runs. A request in flight keeps the loop running (as an active
 * watcher would), so a caller waiting for its answer is not left with a loop
 * that has nothing to do. */
static void sqlite_submit(lease_sqlite_t *ls, sqlite_reply_t *r)
{
    ev_ref(ls->base.loop);
    if (ls->queue_tail) ls->queue_tail->queued = r;
    else ls->queue_head = r;
    ls->queue_tail = r;
    sqlite_kick(ls);
}

static void sqlite_list(lease_store_t *s, lease_list_cb cb, void *ud)
{
    lease_sqlite_t *ls = (lease_sqlite_t *)s;
    sqlite_reply_t *r = sqlite_reply_new(ls, 1, (void *)cb, ud);
    size_t n = strlen(sqlite_columns) + strlen(ls->table) + 64;
    r->sql = xmalloc(n); /* owned by r */
    snprintf(r->sql, n, "SELECT %s FROM %s ORDER BY leaseKey", sqlite_columns, ls->table);
    sqlite_submit(ls, r);
}

/* r->sql := tmpl with its first "%s" replaced by a and its second by b (or
 * ""). By hand, not printf: the template is not a format the compiler sees. */
static void sqlite_set_sql(sqlite_reply_t *r, const char *tmpl, const char *a, const char *b)
{
    buf_t sql = BUF_INIT;
    const char *args[2] = {a, b ? b : ""};
    int used = 0;
    for (const char *p = tmpl; *p; p++) {
        if (p[0] == '%' && p[1] == 's' && used < 2) {
            buf_append_str(&sql, args[used++]);
            p++;
        } else {
            buf_append_char(&sql, *p);
        }
    }
    r->sql = buf_detach(&sql); /* owned by r */
}

static void sqlite_create(lease_store_t *s, const lease_t *l, lease_write_cb cb, void *ud)
{
    lease_sqlite_t *ls = (lease_sqlite_t *)s;
    sqlite_reply_t *r = sqlite_write_reply(ls, l, &(lease_write_t){.kind = LEASE_WRITE_CREATE}, cb, ud);
    char *parents = sqlite_ids_json(l->parents, l->nparents);
    char *children = sqlite_ids_json(l->children, l->nchildren);
    sqlite_set_sql(r, "INSERT INTO %s(%s) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", ls->table, sqlite_columns);
    sqlite_arg_text(r, l->key);
    sqlite_arg_text(r, l->owner);
    sqlite_arg_int(r, l->counter);
    sqlite_arg_text(r, l->checkpoint);
    sqlite_arg_int(r, l->checkpoint_sub);
    sqlite_arg_int(r, l->owner_switches);
    sqlite_arg_text(r, parents);
    sqlite_arg_text(r, children);
    sqlite_arg_text(r, l->start_hash);
    sqlite_arg_text(r, l->end_hash);
    sqlite_arg_text(r, l->stream);
    sqlite_arg_text(r, l->shard);
    sqlite_arg_text(r, l->info);
    sqlite_arg_text(r, l->pending_owner);
    sqlite_arg_text(r, l->control);
    free(parents);
    free(children);
    sqlite_submit(ls, r);
}

/* The condition of a write made by whoever saw the lease as l: the row still
 * has l's counter and owner. sqlite_arg_held binds its ?s. */
#define SQLITE_HELD "leaseKey=? AND leaseCounter=? AND leaseOwner IS ?"

static void sqlite_arg_held(sqlite_reply_t *r, const lease_t *l)
{
    sqlite_arg_text(r, l->key);
    sqlite_arg_int(r, l->counter);
    sqlite_arg_text(r, l->owner);
}

/* The conditional update behind renew, take, checkpoint and release: `set`
 * is the SET clause with the ?s already bound; the condition (key, counter,
 * owner as in l) binds after it. */
static void sqlite_update(lease_sqlite_t *ls, sqlite_reply_t *r, const lease_t *l, const char *set)
{
    sqlite_set_sql(r, "UPDATE %s SET %s, leaseCounter=leaseCounter+1 WHERE " SQLITE_HELD, ls->table, set);
    sqlite_arg_held(r, l);
    sqlite_submit(ls, r);
}

static void sqlite_renew(lease_store_t *s, const lease_t *l, lease_write_cb cb, void *ud)
{
    lease_sqlite_t *ls = (lease_sqlite_t *)s;
    sqlite_reply_t *r = sqlite_write_reply(ls, l, &(lease_write_t){.kind = LEASE_WRITE_RENEW}, cb, ud);
    if (l->info) sqlite_arg_text(r, l->info);
    sqlite_update(ls, r, l, l->info ? "shardrunInfo=?" : "leaseOwner=leaseOwner");
}

static void sqlite_take(lease_store_t *s, const lease_t *l, const char *new_owner, lease_write_cb cb, void *ud)
{
    lease_sqlite_t *ls = (lease_sqlite_t *)s;
    sqlite_reply_t *r =
        sqlite_write_reply(ls, l, &(lease_write_t){.kind = LEASE_WRITE_TAKE, .worker = new_owner}, cb, ud);
    sqlite_arg_text(r, new_owner);
    sqlite_update(ls, r, l,
                  "leaseOwner=?, pendingOwner=NULL, ownerSwitchesSinceCheckpoint=ownerSwitchesSinceCheckpoint+1");
}

static void sqlite_checkpoint(lease_store_t *s, const lease_t *l, const char *seq, int64_t sub, lease_write_cb cb,
                              void *ud)
{
    lease_sqlite_t *ls = (lease_sqlite_t *)s;
    sqlite_reply_t *r =
        sqlite_write_reply(ls, l, &(lease_write_t){.kind = LEASE_WRITE_CHECKPOINT, .seq = seq, .sub = sub}, cb, ud);
    sqlite_arg_text(r, seq);
    sqlite_arg_int(r, sub);
    sqlite_update(ls, r, l, "checkpoint=?, checkpointSubSequenceNumber=?, ownerSwitchesSinceCheckpoint=0");
}

static void sqlite_release(lease_store_t *s, const lease_t *l, lease_write_cb cb, void *ud)
{
    lease_sqlite_t *ls = (lease_sqlite_t *)s;
    sqlite_reply_t *r = sqlite_write_reply(ls, l, &(lease_write_t){.kind = LEASE_WRITE_RELEASE}, cb, ud);
    if (l->info) sqlite_arg_text(r, l->info);
    sqlite_update(ls, r, l, l->info ? "leaseOwner=NULL, pendingOwner=NULL, shardrunInfo=?" : "leaseOwner=NULL, pendingOwner=NULL");
}

static void sqlite_request_handoff(lease_store_t *s, const lease_t *l, const char *requester, lease_write_cb cb,
                                   void *ud)
{
    lease_sqlite_t *ls = (lease_sqlite_t *)s;
    sqlite_reply_t *r = sqlite_write_reply(
        ls, l, &(lease_write_t){.kind = LEASE_WRITE_REQUEST_HANDOFF, .worker = requester}, cb, ud);
    sqlite_set_sql(r, "UPDATE %s SET pendingOwner=? WHERE " SQLITE_HELD " AND pendingOwner IS NULL", ls->table, NULL);
    sqlite_arg_text(r, requester);
    sqlite_arg_held(r, l);
    sqlite_submit(ls, r);
}

static void sqlite_handoff(lease_store_t *s, const lease_t *l, lease_write_cb cb, void *ud)
{
    lease_sqlite_t *ls = (lease_sqlite_t *)s;
    sqlite_reply_t *r = sqlite_write_reply(ls, l, &(lease_write_t){.kind = LEASE_WRITE_HANDOFF}, cb, ud);
    if (!l->pending_owner) {
        errbuf_set(&r->err, "lease %s: no handoff pending", l->key);
        r->st = LEASE_CONFLICT; /* answered on the loop all the same, never inside this call */
        sqlite_submit(ls, r);
        return;
    }
    sqlite_set_sql(r, "UPDATE %s SET leaseOwner=pendingOwner, pendingOwner=NULL, leaseCounter=leaseCounter+1,"
                   " ownerSwitchesSinceCheckpoint=ownerSwitchesSinceCheckpoint+1%s WHERE " SQLITE_HELD
                   " AND pendingOwner IS ?", ls->table, l->info ? ", shardrunInfo=?" : "");
    if (l->info) sqlite_arg_text(r, l->info);
    sqlite_arg_held(r, l);
    sqlite_arg_text(r, l->pending_owner);
    sqlite_submit(ls, r);
}

static void sqlite_cancel_handoff(lease_store_t *s, const lease_t *l, const char *requester, lease_write_cb cb,
                                  void *ud)
{
    lease_sqlite_t *ls = (lease_sqlite_t *)s;
    sqlite_reply_t *r = sqlite_write_reply(
        ls, l, &(lease_write_t){.kind = LEASE_WRITE_CANCEL_HANDOFF, .worker = requester}, cb, ud);
    sqlite_set_sql(r, "UPDATE %s SET pendingOwner=NULL WHERE leaseKey=? AND pendingOwner=?", ls->table, NULL);
    sqlite_arg_text(r, l->key);
    sqlite_arg_text(r, requester);
    sqlite_submit(ls, r);
}

static void sqlite_control(lease_store_t *s, const lease_t *l, const char *control, lease_write_cb cb, void *ud)
{
    lease_sqlite_t *ls = (lease_sqlite_t *)s;
    sqlite_reply_t *r = sqlite_write_reply(ls, l, &(lease_write_t){.kind = LEASE_WRITE_CONTROL, .control = control},
                                           cb, ud);
    sqlite_set_sql(r, "UPDATE %s SET shardrunControl=? WHERE leaseKey=?", ls->table, NULL);
    sqlite_arg_text(r, control);
    sqlite_arg_text(r, l->key);
    sqlite_submit(ls, r);
}

static void sqlite_remove(lease_store_t *s, const lease_t *l, lease_write_cb cb, void *ud)
{
    lease_sqlite_t *ls = (lease_sqlite_t *)s;
    sqlite_reply_t *r = sqlite_write_reply(ls, l, &(lease_write_t){.kind = LEASE_WRITE_REMOVE}, cb, ud);
    sqlite_set_sql(r, "DELETE FROM %s WHERE leaseKey=? AND leaseCounter=?", ls->table, NULL);
    sqlite_arg_text(r, l->key);
    sqlite_arg_int(r, l->counter);
    sqlite_submit(ls, r);
}

static void sqlite_on_gone(void *ud, const char *worker_id)
{
    lease_sqlite_t *ls = ud;
    ls->gone(ls->gone_ud);
}

static int sqlite_join(lease_store_t *s, const char *worker_id, void (*gone)(void *ud), void *ud)
{
    lease_sqlite_t *ls = (lease_sqlite_t *)s;
    errbuf_t err;
    if (ls->alive) return 0;
    lease_alive_t *a = lease_alive_new(ls->base.loop, ls->path);
    ls->gone = gone;
    ls->gone_ud = ud;
    if (lease_alive_join(a, worker_id, sqlite_on_gone, ls, &err)) {
        char q[1200];
        log_warn("worker_lock_unavailable", "worker=%s error=%s action=\"peers take this worker's leases only "
                 "once they expire (lease_duration_ms)\"", worker_id, log_quote(err.msg, q, sizeof q));
        lease_alive_free(a);
        return -1;
    }
    ls->alive = a; /* the pool's thread sees it from the next submit on (the queue's lock) */
    return 0;
}

/* Lets the thread finish what it started, then drops every answer not
 * delivered yet (their callbacks never run), as the DynamoDB store does. */
static void sqlite_destroy(lease_store_t *s)
{
    lease_sqlite_t *ls = (lease_sqlite_t *)s;
    tpool_free(ls->pool);
    lease_alive_free(ls->alive); /* after the thread: it may be probing */
    for (size_t i = 0; i < ls->nstmts; i++) {
        sqlite3_finalize(ls->stmts[i].st);
        free(ls->stmts[i].sql);
    }
    while (ls->inflight) {
        if (ls->base.loop) ev_unref(ls->base.loop);
        sqlite_reply_free(ls->inflight);
    }
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
    .control = sqlite_control,
    .remove = sqlite_remove,
    .join = sqlite_join,
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
        {"shardrunControl", "TEXT"},
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
             " pendingOwner TEXT, shardrunControl TEXT)",
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
    ls->pool = tpool_new(loop, 1, "lease-sqlite");
    if (!ls->pool) {
        errbuf_set(err, "%s: cannot start the lease store's thread", path);
        sqlite_destroy(&ls->base);
        return NULL;
    }
    return &ls->base;
}
