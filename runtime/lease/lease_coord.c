#include "lease_coord.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/sched.h"
#include "base/log.h"
#include "record/seqnum.h"
#include "base/xalloc.h"

typedef struct waiter {
    lease_coord_done_cb done;
    void *ud;
} waiter_t;

typedef struct waiters {
    waiter_t *v;
    size_t n, cap;
} waiters_t;

typedef struct owned {
    lease_t lease;              /* our view: the counter we expect in the table */
    int64_t renewed_ms;         /* monotonic time of the last successful write */
    int in_flight;              /* a conditional write is on its way */
    int want_checkpoint;
    char *cp_seq;
    int64_t cp_sub;
    waiters_t cp_waiters;
    int want_release;
    int handoff;                /* want_release means: hand over to lease.pending_owner */
    int handoff_told;           /* the owner was told a handoff was requested */
    waiters_t rel_waiters;
    struct owned *next;
} owned_t;

/* A graceful handoff this worker asked for and waits on. */
typedef struct request {
    char *key;
    char *owner;                /* the owner asked */
    int64_t since_ms;
    struct request *next;
} request_t;

/* What the coordinator remembers of every lease it has seen in the table. */
typedef struct observed {
    char *key;
    int64_t counter;
    int64_t since_ms;           /* when this worker first saw that counter */
    int reported;               /* an invalid row is logged once per version */
    int moved;                  /* the counter changed while this worker watched: its owner is alive */
} observed_t;

struct lease_coord {
    sched_t *sched;
    lease_store_t *store;
    lease_coord_options_t opt;
    char *worker_id;
    lease_coord_handler_t h;
    void *ud;
    owned_t *owned;
    observed_t *seen;
    size_t nseen;
    sched_timer_t renew_timer;
    sched_timer_t take_timer;
    int scanning;
    int scanned_once;
    int taking;
    size_t in_flight_writes;
    request_t *requests;
};

typedef enum { WRITE_RENEW, WRITE_CHECKPOINT, WRITE_RELEASE, WRITE_TAKE, WRITE_HANDOFF } write_kind_t;

/* One store write in flight; outlives the owned entry if the lease is lost. */
typedef struct write_ctx {
    lease_coord_t *c;
    write_kind_t kind;
    char *key;
    char *seq;                  /* WRITE_CHECKPOINT: kept to retry a transient failure */
    int64_t sub;
    waiters_t waiters;
} write_ctx_t;

static void waiters_add(waiters_t *w, lease_coord_done_cb done, void *ud)
{
    if (!done) return;
    if (w->n == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 2;
        w->v = xrealloc(w->v, w->cap * sizeof *w->v);
    }
    w->v[w->n++] = (waiter_t){done, ud};
}

/* Calls and empties the list; the list may be refilled by the callbacks. */
static void waiters_fire(waiters_t *w, lease_status_t st)
{
    waiters_t copy = *w;
    memset(w, 0, sizeof *w);
    for (size_t i = 0; i < copy.n; i++) copy.v[i].done(copy.v[i].ud, st);
    free(copy.v);
}

int lease_coord_owner_alive(lease_coord_t *c, const char *key)
{
    int64_t now = sched_now_ms(c->sched);
    for (size_t i = 0; i < c->nseen; i++)
        if (!strcmp(c->seen[i].key, key))
            return c->seen[i].moved && now - c->seen[i].since_ms < c->opt.lease_duration_ms;
    return 0;
}

size_t lease_coord_target(size_t leases, size_t workers)
{
    if (!workers) workers = 1;
    return (leases + workers - 1) / workers;
}

static owned_t *coord_find(lease_coord_t *c, const char *key)
{
    for (owned_t *o = c->owned; o; o = o->next)
        if (!strcmp(o->lease.key, key)) return o;
    return NULL;
}

/* Unlinks and frees an owned entry; its waiters get `st`. */
static void coord_remove(lease_coord_t *c, owned_t *o, lease_status_t st)
{
    for (owned_t **pp = &c->owned; *pp; pp = &(*pp)->next) {
        if (*pp == o) {
            *pp = o->next;
            break;
        }
    }
    waiters_fire(&o->cp_waiters, st);
    waiters_fire(&o->rel_waiters, st);
    lease_clear(&o->lease);
    free(o->cp_seq);
    free(o);
}

/* The lease is gone: tell the owner (who stops processing), forget it. */
static void coord_lose(lease_coord_t *c, owned_t *o, const char *why)
{
    char key[256], q[512];
    snprintf(key, sizeof key, "%s", o->lease.key);
    log_warn("lease_lost", "lease=%s worker=%s reason=%s", key, c->worker_id, log_quote(why, q, sizeof q));
    coord_remove(c, o, LEASE_CONFLICT);
    c->h.lost(c->ud, key);
}

static void coord_issue(lease_coord_t *c, owned_t *o);

static void coord_write_done(void *ud, lease_status_t st, const char *msg, const lease_t *updated)
{
    write_ctx_t *w = ud;
    lease_coord_t *c = w->c;
    c->in_flight_writes--;
    owned_t *o = coord_find(c, w->key);
    if (o) o->in_flight = 0;
    if (st == LEASE_OK && o && updated) {
        o->lease.counter = updated->counter;
        o->lease.owner_switches = updated->owner_switches;
        o->renewed_ms = sched_now_ms(c->sched);
        if (w->kind == WRITE_CHECKPOINT) {
            free(o->lease.checkpoint);
            o->lease.checkpoint = xstrdup(updated->checkpoint);
            o->lease.checkpoint_sub = updated->checkpoint_sub;
        }
    }
    int ends = w->kind == WRITE_RELEASE || w->kind == WRITE_HANDOFF;
    if (st != LEASE_OK && o && !ends) {
        char q[512];
        if (st == LEASE_CONFLICT) {
            waiters_fire(&w->waiters, st);
            coord_lose(c, o, msg ? msg : "conditional write refused");
            o = NULL;
        } else {
            log_warn("lease_write_failed", "lease=%s op=%d status=%s error=%s", w->key, (int)w->kind,
                     lease_status_name(st), log_quote(msg, q, sizeof q));
            if (w->kind == WRITE_CHECKPOINT && !o->want_checkpoint) {
                /* Retried at the next renew tick; the waiters wait for that write. */
                o->want_checkpoint = 1;
                o->cp_seq = w->seq;
                o->cp_sub = w->sub;
                w->seq = NULL;
                o->cp_waiters = w->waiters;
                memset(&w->waiters, 0, sizeof w->waiters);
            }
            o->in_flight = 0;
            waiters_fire(&w->waiters, st);
            free(w->seq);
            free(w->key);
            free(w);
            return;
        }
    }
    if (ends && o) {
        if (w->kind == WRITE_HANDOFF)
            log_info("lease_handed_off", "lease=%s from=%s to=%s status=%s", o->lease.key, c->worker_id,
                     o->lease.pending_owner ? o->lease.pending_owner : "-", lease_status_name(st));
        /* Released (or refused: then it was not ours anyway). Either way we are done with it. */
        waiters_fire(&w->waiters, st);
        coord_remove(c, o, st);
        o = NULL;
    }
    waiters_fire(&w->waiters, st);
    free(w->seq);
    free(w->key);
    free(w);
    if (o) coord_issue(c, o);
}

static write_ctx_t *coord_write_ctx(lease_coord_t *c, owned_t *o, write_kind_t kind)
{
    write_ctx_t *w = xcalloc(1, sizeof *w); /* freed in coord_write_done */
    w->c = c;
    w->kind = kind;
    w->key = xstrdup(o->lease.key);
    o->in_flight = 1;
    c->in_flight_writes++;
    return w;
}

/* Starts the next queued write on o, if none is in flight. Checkpoints come
 * before a release, so a graceful shutdown releases with its last checkpoint
 * written. */
static void coord_issue(lease_coord_t *c, owned_t *o)
{
    if (o->in_flight) return;
    if (sched_now_ms(c->sched) - o->renewed_ms > c->opt.lease_duration_ms) {
        coord_lose(c, o, "not renewed within lease_duration (paused or store unreachable)");
        return;
    }
    if (o->want_checkpoint) {
        write_ctx_t *w = coord_write_ctx(c, o, WRITE_CHECKPOINT);
        w->waiters = o->cp_waiters;
        memset(&o->cp_waiters, 0, sizeof o->cp_waiters);
        o->want_checkpoint = 0;
        w->seq = o->cp_seq;
        w->sub = o->cp_sub;
        o->cp_seq = NULL;
        c->store->ops->checkpoint(c->store, &o->lease, w->seq, w->sub, coord_write_done, w);
        return;
    }
    if (o->want_release) {
        write_ctx_t *w = coord_write_ctx(c, o, o->handoff ? WRITE_HANDOFF : WRITE_RELEASE);
        w->waiters = o->rel_waiters;
        memset(&o->rel_waiters, 0, sizeof o->rel_waiters);
        o->want_release = 0;
        if (o->handoff) c->store->ops->handoff(c->store, &o->lease, coord_write_done, w);
        else c->store->ops->release(c->store, &o->lease, coord_write_done, w);
    }
}

static void coord_on_renew(sched_timer_t *t)
{
    lease_coord_t *c = t->data;
    sched_timer_start(c->sched, &c->renew_timer, c->opt.renew_interval_ms);
    int64_t now = sched_now_ms(c->sched);
    owned_t *next;
    for (owned_t *o = c->owned; o; o = next) {
        next = o->next;
        if (o->in_flight) continue; /* that write renews */
        if (o->want_checkpoint || o->want_release) {
            coord_issue(c, o); /* a queued write (maybe a retry) renews too */
            continue;
        }
        if (now - o->renewed_ms > c->opt.lease_duration_ms) {
            coord_lose(c, o, "not renewed within lease_duration (paused or store unreachable)");
            continue;
        }
        write_ctx_t *w = coord_write_ctx(c, o, WRITE_RENEW);
        if (c->h.describe) {
            free(o->lease.info);
            o->lease.info = c->h.describe(c->ud, o->lease.key);
        }
        c->store->ops->renew(c->store, &o->lease, coord_write_done, w);
    }
}

/* Updates the observation times from a fresh scan. */
static void coord_observe(lease_coord_t *c, const lease_list_t *all, int64_t now)
{
    observed_t *seen = xcalloc(all->count ? all->count : 1, sizeof *seen); /* replaces c->seen */
    for (size_t i = 0; i < all->count; i++) {
        const lease_t *l = &all->leases[i];
        seen[i].key = xstrdup(l->key ? l->key : "");
        seen[i].counter = l->counter;
        seen[i].since_ms = now;
        for (size_t j = 0; j < c->nseen; j++) {
            if (!strcmp(c->seen[j].key, seen[i].key)) {
                if (c->seen[j].counter == l->counter) {
                    seen[i].since_ms = c->seen[j].since_ms;
                    seen[i].reported = c->seen[j].reported;
                    seen[i].moved = c->seen[j].moved;
                } else {
                    seen[i].moved = 1;
                }
                break;
            }
        }
    }
    for (size_t j = 0; j < c->nseen; j++) free(c->seen[j].key);
    free(c->seen);
    c->seen = seen;
    c->nseen = all->count;
}

static int coord_expired(lease_coord_t *c, size_t idx, int64_t now)
{
    return now - c->seen[idx].since_ms >= c->opt.lease_duration_ms;
}

typedef struct take_ctx {
    lease_coord_t *c;
    lease_t lease;              /* as scanned: the expected owner and counter */
    int stolen;
} take_ctx_t;

static void coord_release_unowned_done(void *ud, lease_status_t st, const char *msg, const lease_t *updated)
{
    lease_coord_t *c = ud;
    c->in_flight_writes--;
}

static void coord_take_done(void *ud, lease_status_t st, const char *msg, const lease_t *updated)
{
    take_ctx_t *t = ud;
    lease_coord_t *c = t->c;
    c->in_flight_writes--;
    if (st == LEASE_OK && updated && c->taking && !coord_find(c, updated->key)) {
        owned_t *o = xcalloc(1, sizeof *o); /* owned by the coordinator until lost/released/forgotten */
        lease_copy(&o->lease, updated);
        o->renewed_ms = sched_now_ms(c->sched);
        o->next = c->owned;
        c->owned = o;
        log_info("lease_taken", "lease=%s worker=%s counter=%lld checkpoint=%s previous_owner=%s stolen=%d",
                 updated->key, c->worker_id, (long long)updated->counter, updated->checkpoint,
                 t->lease.owner ? t->lease.owner : "-", t->stolen);
        c->h.acquired(c->ud, &o->lease);
    } else if (st == LEASE_OK && updated) {
        /* Shutting down meanwhile: give it straight back. */
        c->in_flight_writes++;
        c->store->ops->release(c->store, updated, coord_release_unowned_done, c);
    } else if (st != LEASE_CONFLICT) {
        char q[512];
        log_warn("lease_take_failed", "lease=%s status=%s error=%s", t->lease.key, lease_status_name(st),
                 log_quote(msg, q, sizeof q));
    }
    lease_clear(&t->lease);
    free(t);
}

static void coord_take(lease_coord_t *c, const lease_t *l, int stolen)
{
    take_ctx_t *t = xcalloc(1, sizeof *t); /* freed in coord_take_done */
    t->c = c;
    t->stolen = stolen;
    lease_copy(&t->lease, l);
    c->in_flight_writes++;
    c->store->ops->take(c->store, &t->lease, c->worker_id, coord_take_done, t);
}

static request_t *coord_request_find(lease_coord_t *c, const char *key)
{
    for (request_t *r = c->requests; r; r = r->next)
        if (!strcmp(r->key, key)) return r;
    return NULL;
}

static void coord_request_drop(lease_coord_t *c, request_t *r)
{
    for (request_t **pp = &c->requests; *pp; pp = &(*pp)->next) {
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    }
    free(r->key);
    free(r->owner);
    free(r);
}

static void coord_request_done(void *ud, lease_status_t st, const char *msg, const lease_t *updated)
{
    lease_coord_t *c = ud;
    c->in_flight_writes--;
    if (st == LEASE_OK && updated) {
        log_info("lease_handoff_requested", "lease=%s from=%s to=%s", updated->key, updated->owner ? updated->owner : "-",
                 c->worker_id);
        return;
    }
    /* refused (the lease moved meanwhile): forget the request, the next scan decides again */
    request_t *r = updated ? coord_request_find(c, updated->key) : NULL;
    if (r) coord_request_drop(c, r);
}

/* Rebalancing asks the owner to hand the lease over at its next batch
 * boundary (checkpoint first), so a steal re-delivers nothing. */
static void coord_request(lease_coord_t *c, const lease_t *l)
{
    request_t *r = xcalloc(1, sizeof *r); /* owned by c->requests until adopted, given up or refused */
    r->key = xstrdup(l->key);
    r->owner = xstrdup(l->owner);
    r->since_ms = sched_now_ms(c->sched);
    r->next = c->requests;
    c->requests = r;
    c->in_flight_writes++;
    c->store->ops->request_handoff(c->store, l, c->worker_id, coord_request_done, c);
}

static void coord_adopt(lease_coord_t *c, const lease_t *l, const char *previous)
{
    owned_t *o = xcalloc(1, sizeof *o); /* owned by the coordinator until lost/released/forgotten */
    lease_copy(&o->lease, l);
    o->renewed_ms = sched_now_ms(c->sched);
    o->next = c->owned;
    c->owned = o;
    log_info("lease_taken", "lease=%s worker=%s counter=%lld checkpoint=%s previous_owner=%s stolen=1 "
             "graceful=1", l->key, c->worker_id, (long long)l->counter, l->checkpoint, previous);
    c->h.acquired(c->ud, &o->lease);
}

/* Scan-time bookkeeping of handoffs: adopt leases handed to us, tell our
 * shards about requests for them, and fall back to a plain steal when an
 * owner does not answer within lease_duration. */
static void coord_handoffs(lease_coord_t *c, const lease_list_t *all, int64_t now)
{
    for (size_t i = 0; i < all->count; i++) {
        const lease_t *l = &all->leases[i];
        if (l->invalid) continue;
        owned_t *o = coord_find(c, l->key);
        if (o && l->pending_owner && strcmp(l->pending_owner, c->worker_id) && !o->handoff_told &&
            l->owner && !strcmp(l->owner, c->worker_id)) {
            o->handoff_told = 1;
            free(o->lease.pending_owner);
            o->lease.pending_owner = xstrdup(l->pending_owner);
            if (c->h.handoff_requested) c->h.handoff_requested(c->ud, l->key, l->pending_owner);
        }
        request_t *r = coord_request_find(c, l->key);
        if (!r) continue;
        if (l->owner && !strcmp(l->owner, c->worker_id)) {
            char *previous = r->owner;
            r->owner = NULL;
            coord_request_drop(c, r);
            if (!o && c->taking) coord_adopt(c, l, previous);
            free(previous);
        } else if (!l->owner || strcmp(l->owner, r->owner) || !l->pending_owner ||
                   strcmp(l->pending_owner, c->worker_id)) {
            coord_request_drop(c, r); /* released, taken by someone else, or refused */
        } else if (now - r->since_ms > c->opt.lease_duration_ms) {
            log_warn("lease_handoff_timeout", "lease=%s owner=%s action=steal", l->key, l->owner);
            coord_request_drop(c, r);
            if (c->taking) coord_take(c, l, 1);
        }
    }
    /* requests for rows that vanished */
    request_t *next;
    for (request_t *r = c->requests; r; r = next) {
        next = r->next;
        if (!lease_list_find(all, r->key)) coord_request_drop(c, r);
    }
}

typedef struct worker_load {
    const char *owner;
    size_t count;
} worker_load_t;

static worker_load_t *coord_load_of(worker_load_t *v, size_t *n, const char *owner)
{
    for (size_t i = 0; i < *n; i++)
        if (!strcmp(v[i].owner, owner)) return &v[i];
    v[*n] = (worker_load_t){owner, 0};
    return &v[(*n)++];
}

/* The taker: count live workers, take expired or unowned leases up to the
 * target, else steal from the most loaded worker. */
static void coord_balance(lease_coord_t *c, const lease_list_t *all)
{
    int64_t now = sched_now_ms(c->sched);
    size_t n = all->count, nloads = 0, eligible = 0, mine = 0;
    worker_load_t *loads = xcalloc(n + 1, sizeof *loads);
    char *usable = xcalloc(n ? n : 1, 1);  /* 1: eligible for this worker */
    coord_load_of(loads, &nloads, c->worker_id);
    for (size_t i = 0; i < n; i++) {
        const lease_t *l = &all->leases[i];
        if (l->invalid || !strcmp(l->checkpoint, SEQNUM_SHARD_END) || !c->h.eligible(c->ud, l, all)) continue;
        usable[i] = 1;
        eligible++;
        if (coord_find(c, l->key) || coord_request_find(c, l->key)) {
            mine++;
            continue;
        }
        if (l->owner && !coord_expired(c, i, now)) coord_load_of(loads, &nloads, l->owner)->count++;
    }
    loads[0].count = mine;
    size_t target = lease_coord_target(eligible, nloads);
    size_t want = target > mine ? target - mine : 0;
    /* Expired or unowned first, in key order (parents before children). */
    for (size_t i = 0; i < n && want > 0; i++) {
        const lease_t *l = &all->leases[i];
        if (!usable[i] || coord_find(c, l->key) || coord_request_find(c, l->key)) continue;
        if (!l->owner || coord_expired(c, i, now)) {
            coord_take(c, l, 0);
            want--;
        }
    }
    if (want > 0 && c->opt.max_steal > 0) {
        worker_load_t *most = NULL;
        for (size_t i = 1; i < nloads; i++)
            if (!most || loads[i].count > most->count) most = &loads[i];
        /* Steal only from a worker above the target, or at it when we are two
         * or more below: this converges without leases ping-ponging. */
        if (most && (most->count > target || (most->count == target && want >= 2))) {
            size_t steal = want < (size_t)c->opt.max_steal ? want : (size_t)c->opt.max_steal;
            for (size_t i = 0; i < n && steal > 0; i++) {
                const lease_t *l = &all->leases[i];
                if (usable[i] && l->owner && !strcmp(l->owner, most->owner) && !coord_expired(c, i, now) &&
                    !l->pending_owner) {
                    coord_request(c, l);
                    steal--;
                }
            }
        }
    }
    free(usable);
    free(loads);
}

static void coord_report_invalid(lease_coord_t *c, const lease_list_t *all)
{
    for (size_t i = 0; i < all->count && i < c->nseen; i++) {
        const lease_t *l = &all->leases[i];
        if (!l->invalid || c->seen[i].reported) continue;
        c->seen[i].reported = 1;
        char q[512];
        log_error("lease_row_invalid", "lease=%s error=%s action=skipped", l->key ? l->key : "(none)",
                  log_quote(l->invalid, q, sizeof q));
    }
}

static void coord_scan_done(void *ud, lease_status_t st, const char *msg, lease_list_t *all)
{
    lease_coord_t *c = ud;
    c->scanning = 0;
    if (st != LEASE_OK) {
        char q[512];
        log_warn("lease_scan_failed", "status=%s error=%s", lease_status_name(st), log_quote(msg, q, sizeof q));
        if (st == LEASE_EFATAL && !c->scanned_once && c->h.store_unusable) c->h.store_unusable(c->ud, msg);
        return;
    }
    c->scanned_once = 1;
    coord_observe(c, all, sched_now_ms(c->sched));
    coord_report_invalid(c, all);
    coord_handoffs(c, all, sched_now_ms(c->sched));
    if (c->h.scanned) c->h.scanned(c->ud, all);
    if (c->taking && c->opt.take) coord_balance(c, all);
    lease_list_free(all);
}

static void coord_on_take(sched_timer_t *t)
{
    lease_coord_t *c = t->data;
    sched_timer_start(c->sched, &c->take_timer, c->opt.taker_interval_ms);
    if (c->scanning) return;
    c->scanning = 1;
    c->store->ops->list(c->store, coord_scan_done, c);
}

lease_coord_t *lease_coord_new(sched_t *sched, lease_store_t *store, const lease_coord_options_t *opt,
                               const lease_coord_handler_t *h, void *ud)
{
    lease_coord_t *c = xcalloc(1, sizeof *c); /* owned by the caller: lease_coord_free */
    c->sched = sched;
    c->store = store;
    c->opt = *opt;
    c->worker_id = xstrdup(opt->worker_id);
    c->opt.worker_id = c->worker_id;
    c->h = *h;
    c->ud = ud;
    c->taking = 1;
    sched_timer_init(&c->renew_timer, coord_on_renew, c);
    sched_timer_init(&c->take_timer, coord_on_take, c);
    return c;
}

void lease_coord_start(lease_coord_t *c)
{
    sched_timer_start(c->sched, &c->renew_timer, c->opt.renew_interval_ms);
    sched_timer_start(c->sched, &c->take_timer, 0);
}

static void coord_cancel_done(void *ud, lease_status_t st, const char *msg, const lease_t *updated)
{
    lease_coord_t *c = ud;
    c->in_flight_writes--;
}

void lease_coord_stop_taking(lease_coord_t *c)
{
    c->taking = 0;
    /* withdraw our handoff requests, so no lease is handed to a worker that is leaving */
    while (c->requests) {
        lease_t l = {0};
        l.key = c->requests->key;
        l.owner = c->requests->owner;
        c->in_flight_writes++;
        c->store->ops->cancel_handoff(c->store, &l, c->worker_id, coord_cancel_done, c);
        coord_request_drop(c, c->requests);
    }
}

void lease_coord_scan_now(lease_coord_t *c)
{
    sched_timer_start(c->sched, &c->take_timer, 0);
}

void lease_coord_free(lease_coord_t *c)
{
    if (!c) return;
    sched_timer_stop(c->sched, &c->renew_timer);
    sched_timer_stop(c->sched, &c->take_timer);
    while (c->owned) coord_remove(c, c->owned, LEASE_CONFLICT);
    while (c->requests) coord_request_drop(c, c->requests);
    for (size_t j = 0; j < c->nseen; j++) free(c->seen[j].key);
    free(c->seen);
    free(c->worker_id);
    free(c);
}

void lease_coord_checkpoint(lease_coord_t *c, const char *key, const char *seq, int64_t sub,
                            lease_coord_done_cb done, void *ud)
{
    owned_t *o = coord_find(c, key);
    if (!o) {
        if (done) done(ud, LEASE_CONFLICT);
        return;
    }
    free(o->cp_seq);
    o->cp_seq = xstrdup(seq);
    o->cp_sub = sub;
    o->want_checkpoint = 1;
    waiters_add(&o->cp_waiters, done, ud);
    coord_issue(c, o);
}

/* The last write of an owned lease: a release, or a handoff to the worker
 * that asked (when nobody asked any more, a handoff is a release). */
static void coord_give_up(lease_coord_t *c, const char *key, int handoff, lease_coord_done_cb done, void *ud)
{
    owned_t *o = coord_find(c, key);
    if (!o) {
        if (done) done(ud, LEASE_CONFLICT);
        return;
    }
    if (handoff) o->handoff = o->lease.pending_owner != NULL;
    o->want_release = 1;
    waiters_add(&o->rel_waiters, done, ud);
    coord_issue(c, o);
}

void lease_coord_handoff(lease_coord_t *c, const char *key, lease_coord_done_cb done, void *ud)
{
    coord_give_up(c, key, 1, done, ud);
}

void lease_coord_release(lease_coord_t *c, const char *key, lease_coord_done_cb done, void *ud)
{
    coord_give_up(c, key, 0, done, ud);
}

void lease_coord_forget(lease_coord_t *c, const char *key)
{
    owned_t *o = coord_find(c, key);
    if (o) coord_remove(c, o, LEASE_CONFLICT);
}

const lease_t *lease_coord_owned(lease_coord_t *c, const char *key)
{
    owned_t *o = coord_find(c, key);
    return o ? &o->lease : NULL;
}

size_t lease_coord_pending(lease_coord_t *c)
{
    size_t n = c->in_flight_writes;
    for (owned_t *o = c->owned; o; o = o->next) n += (size_t)(o->want_checkpoint + o->want_release);
    return n;
}

