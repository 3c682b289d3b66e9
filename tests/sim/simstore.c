#include "simstore.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "base/xalloc.h"
#include "memstore.h"
#include "simcheck.h"
#include "simwire.h"
#include "simworker.h"

typedef struct simstore_req simstore_req_t;

struct simstore {
    sim_t *sim;
    lease_list_t table;
    uint64_t version;
    simwire_t wire;              /* the requests on their way, of every handle */
};

typedef struct simstore_handle {
    lease_store_t base;          /* first */
    simstore_t *st;
    simworker_t *w;
} simstore_handle_t;

typedef enum { FATE_OK, FATE_ERROR, FATE_LOST, FATE_DUP } fate_t;

struct simstore_req {
    simwire_req_t wire;          /* first; wire.sender: the simstore_handle_t, NULL once it is gone
                                    (carried out, never answered) */
    simstore_t *st;
    int worker;                  /* the sender's index (for the truth) */
    int kind;                    /* a lease_write_kind_t, or MEMSTORE_LIST */
    lease_t l;
    char *arg;                   /* TAKE/REQUEST/CANCEL: the worker named; CHECKPOINT: the sequence number;
                                    CONTROL: the request */
    int64_t sub;
    void *cb, *ud;
    int64_t sent_ms;
    fate_t fate;
    int64_t back_ms;
    lease_status_t status;
    lease_t row;
    lease_list_t *list;
};

_Static_assert(offsetof(simstore_req_t, wire) == 0, "the wire frees a simstore_req_t by its simwire_req_t");

/* By lease_write_kind_t, then MEMSTORE_LIST. */
static const char *const simstore_kind_names[] = {"create", "renew", "take", "checkpoint", "release",
                                                   "request_handoff", "handoff", "cancel_handoff", "remove",
                                                   "control", "list"};
_Static_assert(sizeof simstore_kind_names / sizeof *simstore_kind_names == MEMSTORE_LIST + 1,
               "one name per write kind, and the list");

static void simstore_req_free(simwire_req_t *wr)
{
    simstore_req_t *r = (simstore_req_t *)wr;
    lease_clear(&r->l);
    lease_clear(&r->row);
    lease_list_free(r->list);
    free(r->arg);
    free(r);
}

static void simstore_deliver(sched_timer_t *t)
{
    simstore_req_t *r = t->data;
    simwire_unlink(&r->st->wire, &r->wire);
    if (r->kind == MEMSTORE_LIST) {
        lease_list_t *l = r->list;
        r->list = NULL;
        ((lease_list_cb)r->cb)(r->ud, r->status, r->status ? "simulated store error" : NULL,
                               r->status == LEASE_OK ? l : NULL);
        if (r->status != LEASE_OK) lease_list_free(l);
    } else {
        const char *msg = r->status == LEASE_CONFLICT ? "lease changed"
                          : r->status == LEASE_ERETRY ? "simulated store error or timeout"
                                                      : NULL;
        ((lease_write_cb)r->cb)(r->ud, r->status, msg, r->status == LEASE_OK ? &r->row : NULL);
    }
    simstore_req_free(&r->wire);
}

/* Carries the request out once against the table; tells the truth. */
static lease_status_t simstore_apply(simstore_t *st, simstore_req_t *r)
{
    /* memstore_table_apply takes a checkpoint's position and a control's text as seq */
    int as_seq = r->kind == LEASE_WRITE_CHECKPOINT || r->kind == LEASE_WRITE_CONTROL;
    const char *worker = as_seq ? NULL : r->arg;
    const char *seq = as_seq ? r->arg : NULL;
    lease_clear(&r->row);
    lease_list_free(r->list);
    r->list = NULL;
    lease_t before = {0};
    const lease_t *stored = r->kind == MEMSTORE_LIST ? NULL : lease_list_find(&st->table, r->l.key);
    if (stored) lease_copy(&before, stored);
    lease_status_t s = memstore_table_apply(&st->table, r->kind, &r->l, worker, seq, r->sub, &r->row, &r->list);
    if (r->kind != MEMSTORE_LIST) {
        if (s == LEASE_OK) st->version++;
        sim_trace(st->sim, "store_%s lease=%s worker=%d status=%s counter=%lld owner=%s checkpoint=%s/%lld",
                  simstore_kind_names[r->kind], r->l.key, r->worker, lease_status_name(s),
                  s == LEASE_OK ? (long long)r->row.counter : -1LL,
                  s == LEASE_OK && r->row.owner ? r->row.owner : "-",
                  s == LEASE_OK && r->row.checkpoint ? r->row.checkpoint : "-",
                  s == LEASE_OK ? (long long)r->row.checkpoint_sub : -1LL);
        simcheck_write(st->sim, r->worker, r->kind, stored ? &before : NULL, r->sent_ms, s,
                       s == LEASE_OK ? lease_list_find(&st->table, r->l.key) : NULL);
        sim_digest(st->sim, (uint64_t)r->kind * 31 + (uint64_t)s);
    }
    lease_clear(&before);
    return s;
}

/* The request reaches the store. */
static void simstore_arrive(sched_timer_t *t)
{
    simstore_req_t *r = t->data;
    simstore_t *st = r->st;
    sim_t *sim = st->sim;
    if (r->fate == FATE_ERROR) {
        r->status = LEASE_ERETRY;
    } else {
        r->status = simstore_apply(st, r);
        if (r->fate == FATE_DUP) r->status = simstore_apply(st, r);
        if (r->fate == FATE_LOST) {
            /* the client gives up after its timeout: the write stands, the answer says it failed */
            r->status = LEASE_ERETRY;
            int64_t timeout = lease_write_budget_ms(sim->p.lease_duration_ms, sim->p.renew_interval_ms);
            int64_t at = r->sent_ms + timeout;
            r->back_ms = at > sim->now ? at - sim->now : 0;
        }
    }
    simstore_handle_t *h = r->wire.sender;
    if (!h) {
        simwire_unlink(&st->wire, &r->wire); /* its worker is gone: carried out, never answered */
        simstore_req_free(&r->wire);
        return;
    }
    simwire_answer(&r->wire, &h->w->vs.base, r->back_ms, simstore_deliver);
}

static void simstore_send(lease_store_t *s, int kind, const lease_t *l, const char *arg, int64_t sub, void *cb,
                          void *ud)
{
    simstore_handle_t *h = (simstore_handle_t *)s;
    simstore_t *st = h->st;
    sim_t *sim = st->sim;
    simstore_req_t *r = xcalloc(1, sizeof *r); /* freed when answered or dropped */
    r->st = st;
    r->worker = h->w->idx;
    r->kind = kind;
    if (l) lease_copy(&r->l, l);
    r->arg = arg ? xstrdup(arg) : NULL;
    r->sub = sub;
    r->cb = cb;
    r->ud = ud;
    r->sent_ms = sim->now;
    r->fate = FATE_OK;
    if (sim_fault(sim, 0.03)) r->fate = FATE_ERROR;
    else if (kind != MEMSTORE_LIST && sim_fault(sim, 0.02)) r->fate = FATE_LOST;
    else if (kind != MEMSTORE_LIST && sim_fault(sim, 0.02)) r->fate = FATE_DUP;
    sim->stats.store_errors += r->fate == FATE_ERROR;
    sim->stats.store_lost_answers += r->fate == FATE_LOST;
    sim->stats.store_duplicates += r->fate == FATE_DUP;
    r->back_ms = sim_latency(sim);
    simwire_send(&st->wire, &r->wire, h, &sim->world.base, sim_latency(sim), simstore_arrive);
}

static void ss_list(lease_store_t *s, lease_list_cb cb, void *ud)
{
    simstore_send(s, MEMSTORE_LIST, NULL, NULL, 0, (void *)cb, ud);
}
static void ss_create(lease_store_t *s, const lease_t *l, lease_write_cb cb, void *ud)
{
    simstore_send(s, LEASE_WRITE_CREATE, l, NULL, 0, (void *)cb, ud);
}
static void ss_renew(lease_store_t *s, const lease_t *l, lease_write_cb cb, void *ud)
{
    simstore_send(s, LEASE_WRITE_RENEW, l, NULL, 0, (void *)cb, ud);
}
static void ss_take(lease_store_t *s, const lease_t *l, const char *owner, lease_write_cb cb, void *ud)
{
    simstore_send(s, LEASE_WRITE_TAKE, l, owner, 0, (void *)cb, ud);
}
static void ss_checkpoint(lease_store_t *s, const lease_t *l, const char *seq, int64_t sub, lease_write_cb cb,
                          void *ud)
{
    simstore_send(s, LEASE_WRITE_CHECKPOINT, l, seq, sub, (void *)cb, ud);
}
static void ss_release(lease_store_t *s, const lease_t *l, lease_write_cb cb, void *ud)
{
    simstore_send(s, LEASE_WRITE_RELEASE, l, NULL, 0, (void *)cb, ud);
}
static void ss_request_handoff(lease_store_t *s, const lease_t *l, const char *req, lease_write_cb cb, void *ud)
{
    simstore_send(s, LEASE_WRITE_REQUEST_HANDOFF, l, req, 0, (void *)cb, ud);
}
static void ss_handoff(lease_store_t *s, const lease_t *l, lease_write_cb cb, void *ud)
{
    simstore_send(s, LEASE_WRITE_HANDOFF, l, NULL, 0, (void *)cb, ud);
}
static void ss_cancel_handoff(lease_store_t *s, const lease_t *l, const char *req, lease_write_cb cb, void *ud)
{
    simstore_send(s, LEASE_WRITE_CANCEL_HANDOFF, l, req, 0, (void *)cb, ud);
}
static void ss_remove(lease_store_t *s, const lease_t *l, lease_write_cb cb, void *ud)
{
    simstore_send(s, LEASE_WRITE_REMOVE, l, NULL, 0, (void *)cb, ud);
}
static void ss_control(lease_store_t *s, const lease_t *l, const char *control, lease_write_cb cb, void *ud)
{
    simstore_send(s, LEASE_WRITE_CONTROL, l, control, 0, (void *)cb, ud);
}

/* The worker is gone: what it sent is still carried out, answers on their
 * way back are dropped. */
static void ss_destroy(lease_store_t *s)
{
    simstore_handle_t *h = (simstore_handle_t *)s;
    simwire_forget(&h->st->wire, h, &h->w->vs.base);
    free(h);
}

static const lease_store_ops_t simstore_ops = {
    .name = "simulated", .list = ss_list, .create = ss_create, .renew = ss_renew, .take = ss_take,
    .checkpoint = ss_checkpoint, .release = ss_release, .request_handoff = ss_request_handoff,
    .handoff = ss_handoff, .cancel_handoff = ss_cancel_handoff, .remove = ss_remove, .control = ss_control,
    .destroy = ss_destroy,
};

simstore_t *simstore_new(sim_t *sim)
{
    simstore_t *st = xcalloc(1, sizeof *st); /* the run's: simstore_free */
    st->sim = sim;
    st->wire.free_req = simstore_req_free;
    return st;
}

lease_store_t *simstore_connect(simstore_t *st, simworker_t *w)
{
    simstore_handle_t *h = xcalloc(1, sizeof *h); /* the worker's: lease_store_destroy */
    h->base.ops = &simstore_ops;
    h->st = st;
    h->w = w;
    return &h->base;
}

const lease_list_t *simstore_table(const simstore_t *st) { return &st->table; }
uint64_t simstore_version(const simstore_t *st) { return st->version; }
size_t simstore_in_flight(const simstore_t *st) { return st->wire.n; }

void simstore_free(simstore_t *st)
{
    simwire_free(&st->wire);
    memstore_table_free(&st->table);
    free(st);
}
