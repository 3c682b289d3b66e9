/* memstore: a lease store in memory on virtual time, for tests (header only).
 *
 * Writes follow lease.h's rules (lease_write_allowed, lease_apply_write),
 * so what the coordinator sees is what SQLite and DynamoDB would answer.
 * memstore_table_apply is that part alone, on any table: the simulation's
 * store (tests/sim/simstore.h) carries its requests out with it too.
 * Answers come latency_ms later on the vsched, never inside the call. With
 * `stall` set, requests are neither carried out nor answered (a proxy that
 * accepts connections and never answers) until memstore_unstall. Tests may
 * edit the table directly (memstore_row) to play the other workers. */
#ifndef SHARDRUN_TEST_MEMSTORE_H
#define SHARDRUN_TEST_MEMSTORE_H

#include <stdlib.h>
#include <string.h>

#include "lease/lease.h"
#include "vsched.h"

#define MEMSTORE_LIST (LEASE_WRITE_CONTROL + 1)

typedef struct memstore_req {
    sched_timer_t timer;
    struct memstore *ms;
    int kind;                 /* a lease_write_kind_t, or MEMSTORE_LIST */
    lease_t l;                /* the writer's view */
    char *worker, *seq;
    int64_t sub;
    void *cb, *ud;
    lease_status_t st;
    lease_t row;              /* the answer's row */
    lease_list_t *list;       /* the answer's list */
    int carried;              /* carried out (else stalled) */
    struct memstore_req *next;
} memstore_req_t;

typedef struct memstore {
    lease_store_t base;       /* first */
    vsched_t *vs;
    lease_list_t table;       /* sorted by key */
    int64_t latency_ms;
    int stall;
    size_t calls[MEMSTORE_LIST + 1];   /* requests made, per kind */
    memstore_req_t *reqs;     /* not answered yet (timers running or stalled) */
    const char *dead;         /* an owner each list names dead (lease_list_t.dead), as a local store would */
} memstore_t;

/* Adds a row (deep copy); sort the table (lease_list_sort) before use. */
static inline void memstore_table_put_unsorted(lease_list_t *table, const lease_t *l)
{
    table->leases = realloc(table->leases, (table->count + 1) * sizeof *table->leases);
    if (!table->leases) abort();
    lease_copy(&table->leases[table->count++], l);
}

static inline void memstore_table_free(lease_list_t *table)
{
    for (size_t i = 0; i < table->count; i++) lease_clear(&table->leases[i]);
    free(table->leases);
    memset(table, 0, sizeof *table);
}

/* Carries one request out against `table` (sorted by key), as a store
 * holding it would: kind is a lease_write_kind_t, or MEMSTORE_LIST (then
 * *list is a deep copy of the table, the caller's). A write the rules allow
 * changes the table and *row is the row as written (the caller clears it);
 * one they refuse is LEASE_CONFLICT and changes nothing. l: the writer's
 * view; worker, seq, sub: the write's arguments (lease_write_t). */
static inline lease_status_t memstore_table_apply(lease_list_t *table, int kind, const lease_t *l, const char *worker,
                                                  const char *seq, int64_t sub, lease_t *row, lease_list_t **list)
{
    if (kind == MEMSTORE_LIST) {
        *list = calloc(1, sizeof **list);
        if (!*list) abort();
        (*list)->count = table->count;
        (*list)->leases = calloc(table->count ? table->count : 1, sizeof *(*list)->leases);
        if (!(*list)->leases) abort();
        for (size_t i = 0; i < table->count; i++) lease_copy(&(*list)->leases[i], &table->leases[i]);
        return LEASE_OK;
    }
    lease_write_t w = {.kind = (lease_write_kind_t)kind, .worker = worker, .seq = seq, .sub = sub};
    if (w.kind == LEASE_WRITE_CONTROL) w.control = seq; /* carried in seq */
    lease_t *stored = (lease_t *)lease_list_find(table, l->key);
    if (!lease_write_allowed(stored, l, &w)) return LEASE_CONFLICT;
    lease_apply_write(l, &w, row);
    if (w.kind == LEASE_WRITE_CREATE) {
        memstore_table_put_unsorted(table, row);
        lease_list_sort(table);
    } else if (w.kind == LEASE_WRITE_REMOVE) {
        size_t i = (size_t)(stored - table->leases);
        lease_clear(stored);
        memmove(stored, stored + 1, (table->count - i - 1) * sizeof *stored);
        table->count--;
    } else {
        /* the stored row changes only in the fields the write names */
        lease_t next;
        lease_apply_write(stored, &w, &next);
        if ((w.kind == LEASE_WRITE_RENEW || w.kind == LEASE_WRITE_RELEASE || w.kind == LEASE_WRITE_HANDOFF) &&
            l->info) {
            free(next.info);
            next.info = strdup(l->info);
        }
        lease_clear(stored);
        *stored = next;
    }
    return LEASE_OK;
}

static inline lease_t *memstore_row(memstore_t *ms, const char *key)
{
    return (lease_t *)lease_list_find(&ms->table, key);
}

/* Adds a row (deep copy); sort the table (lease_list_sort) before use. */
static inline void memstore_put_unsorted(memstore_t *ms, const lease_t *l)
{
    memstore_table_put_unsorted(&ms->table, l);
}

/* Adds a row (deep copy). */
static inline void memstore_put(memstore_t *ms, const lease_t *l)
{
    memstore_put_unsorted(ms, l);
    lease_list_sort(&ms->table);
}

static inline void memstore_unlink(memstore_t *ms, memstore_req_t *r)
{
    for (memstore_req_t **pp = &ms->reqs; *pp; pp = &(*pp)->next) {
        if (*pp == r) {
            *pp = r->next;
            return;
        }
    }
}

static inline void memstore_req_free(memstore_req_t *r)
{
    lease_clear(&r->l);
    lease_clear(&r->row);
    lease_list_free(r->list);
    free(r->worker);
    free(r->seq);
    free(r);
}

static inline void memstore_deliver(sched_timer_t *t)
{
    memstore_req_t *r = t->data;
    memstore_unlink(r->ms, r);
    if (r->kind == MEMSTORE_LIST) {
        lease_list_t *l = r->list;
        r->list = NULL;
        if (l && r->ms->dead) {
            l->dead = calloc(1, sizeof *l->dead);
            if (!l->dead || !(l->dead[0] = strdup(r->ms->dead))) abort();
            l->ndead = 1;
        }
        ((lease_list_cb)r->cb)(r->ud, r->st, NULL, r->st == LEASE_OK ? l : NULL);
        if (r->st != LEASE_OK) lease_list_free(l);
    } else {
        ((lease_write_cb)r->cb)(r->ud, r->st, r->st == LEASE_CONFLICT ? "lease changed" : NULL,
                                r->st == LEASE_OK ? &r->row : NULL);
    }
    memstore_req_free(r);
}

/* Carries a request out against the table and schedules its answer. */
static inline void memstore_carry_out(memstore_t *ms, memstore_req_t *r)
{
    r->carried = 1;
    r->st = memstore_table_apply(&ms->table, r->kind, &r->l, r->worker, r->seq, r->sub, &r->row, &r->list);
    sched_timer_init(&r->timer, memstore_deliver, r);
    sched_timer_start(&ms->vs->base, &r->timer, ms->latency_ms);
}

static inline void memstore_request(memstore_t *ms, int kind, const lease_t *l, const char *worker, const char *seq,
                             int64_t sub, void *cb, void *ud)
{
    memstore_req_t *r = calloc(1, sizeof *r);
    r->ms = ms;
    r->kind = kind;
    if (l) lease_copy(&r->l, l);
    r->worker = worker ? strdup(worker) : NULL;
    r->seq = seq ? strdup(seq) : NULL;
    r->sub = sub;
    r->cb = cb;
    r->ud = ud;
    r->next = ms->reqs;
    ms->reqs = r;
    ms->calls[kind]++;
    if (!ms->stall) memstore_carry_out(ms, r);
}

/* The store answers again: stalled requests are carried out now (oldest
 * first) and answered latency_ms later. */
static inline void memstore_unstall(memstore_t *ms)
{
    ms->stall = 0;
    for (;;) {
        memstore_req_t *oldest = NULL;
        for (memstore_req_t *r = ms->reqs; r; r = r->next)
            if (!r->carried) oldest = r; /* the list is newest first */
        if (!oldest) return;
        memstore_carry_out(ms, oldest);
    }
}

static inline void ms_list(lease_store_t *s, lease_list_cb cb, void *ud)
{
    memstore_request((memstore_t *)s, MEMSTORE_LIST, NULL, NULL, NULL, 0, (void *)cb, ud);
}
static inline void ms_create(lease_store_t *s, const lease_t *l, lease_write_cb cb, void *ud)
{
    memstore_request((memstore_t *)s, LEASE_WRITE_CREATE, l, NULL, NULL, 0, (void *)cb, ud);
}
static inline void ms_renew(lease_store_t *s, const lease_t *l, lease_write_cb cb, void *ud)
{
    memstore_request((memstore_t *)s, LEASE_WRITE_RENEW, l, NULL, NULL, 0, (void *)cb, ud);
}
static inline void ms_take(lease_store_t *s, const lease_t *l, const char *owner, lease_write_cb cb, void *ud)
{
    memstore_request((memstore_t *)s, LEASE_WRITE_TAKE, l, owner, NULL, 0, (void *)cb, ud);
}
static inline void ms_checkpoint(lease_store_t *s, const lease_t *l, const char *seq, int64_t sub, lease_write_cb cb,
                          void *ud)
{
    memstore_request((memstore_t *)s, LEASE_WRITE_CHECKPOINT, l, NULL, seq, sub, (void *)cb, ud);
}
static inline void ms_release(lease_store_t *s, const lease_t *l, lease_write_cb cb, void *ud)
{
    memstore_request((memstore_t *)s, LEASE_WRITE_RELEASE, l, NULL, NULL, 0, (void *)cb, ud);
}
static inline void ms_request_handoff(lease_store_t *s, const lease_t *l, const char *req, lease_write_cb cb, void *ud)
{
    memstore_request((memstore_t *)s, LEASE_WRITE_REQUEST_HANDOFF, l, req, NULL, 0, (void *)cb, ud);
}
static inline void ms_handoff(lease_store_t *s, const lease_t *l, lease_write_cb cb, void *ud)
{
    memstore_request((memstore_t *)s, LEASE_WRITE_HANDOFF, l, NULL, NULL, 0, (void *)cb, ud);
}
static inline void ms_cancel_handoff(lease_store_t *s, const lease_t *l, const char *req, lease_write_cb cb, void *ud)
{
    memstore_request((memstore_t *)s, LEASE_WRITE_CANCEL_HANDOFF, l, req, NULL, 0, (void *)cb, ud);
}
static inline void ms_remove(lease_store_t *s, const lease_t *l, lease_write_cb cb, void *ud)
{
    memstore_request((memstore_t *)s, LEASE_WRITE_REMOVE, l, NULL, NULL, 0, (void *)cb, ud);
}
static inline void ms_control(lease_store_t *s, const lease_t *l, const char *control, lease_write_cb cb, void *ud)
{
    memstore_request((memstore_t *)s, LEASE_WRITE_CONTROL, l, NULL, control, 0, (void *)cb, ud);
}

/* Drops unanswered requests (their callbacks never run), frees the table. */
static inline void ms_destroy(lease_store_t *s)
{
    memstore_t *ms = (memstore_t *)s;
    while (ms->reqs) {
        memstore_req_t *r = ms->reqs;
        ms->reqs = r->next;
        sched_timer_stop(&ms->vs->base, &r->timer);
        memstore_req_free(r);
    }
    memstore_table_free(&ms->table);
}

static const lease_store_ops_t memstore_ops = {
    .name = "memory", .list = ms_list, .create = ms_create, .renew = ms_renew, .take = ms_take,
    .checkpoint = ms_checkpoint, .release = ms_release, .request_handoff = ms_request_handoff,
    .handoff = ms_handoff, .cancel_handoff = ms_cancel_handoff, .remove = ms_remove, .control = ms_control,
    .destroy = ms_destroy,
};

static inline void memstore_init(memstore_t *ms, vsched_t *vs, int64_t latency_ms)
{
    *ms = (memstore_t){.base = {&memstore_ops, NULL}, .vs = vs, .latency_ms = latency_ms};
}

#endif
