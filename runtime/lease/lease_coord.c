#include "lease_coord.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/logsum.h"
#include "base/xalloc.h"
#include "lease_metrics.h"
#include "lease_plan.h"
#include "record/seqnum.h"

typedef struct waiter {
    lease_coord_done_cb done;
    void *ud;
} waiter_t;

typedef struct waiters {
    waiter_t *v;
    size_t n, cap;
} waiters_t;

typedef enum {
    OP_RENEW,
    OP_CHECKPOINT,
    OP_RELEASE,
    OP_HANDOFF,
    OP_TAKE,
    OP_ASK,
    OP_CANCEL,
    OP_RELEASE_UNHELD,   /* a row in our name we do not hold */
} op_kind_t;

typedef struct owned owned_t;

/* One store request in flight. Lives in c->ops until its callback; freed
 * there, or by lease_coord_free after the store dropped it. */
typedef struct op {
    lease_coord_t *c;
    op_kind_t kind;
    owned_t *o;                 /* writes on an owned lease: NULL once it was lost or forgotten */
    char *key;
    int64_t sent_ms;
    char *seq;                  /* OP_CHECKPOINT: kept to retry a transient failure */
    int64_t sub;
    waiters_t waiters;
    lease_t row;                /* OP_TAKE: the row as scanned; OP_RELEASE/OP_HANDOFF: the lease as written to */
    int stolen;                 /* OP_TAKE */
    int64_t seen_ms;            /* OP_TAKE: when this worker first saw the counter it takes the row with */
    int owner_dead;             /* OP_TAKE: the store knows the owner dead (its process is gone) */
    int lost;                   /* detached because the lease was lost (else forgotten) */
    struct op *prev, *next;
} op_t;

struct owned {
    lease_coord_t *c;
    lease_t lease;              /* our view: the counter we expect in the table */
    int64_t valid_until_ms;     /* send time of the last successful write + lease_duration */
    int64_t dispatch_from_ms;   /* taken from a live owner: that owner may dispatch until then */
    sched_timer_t expiry;       /* fires at valid_until_ms: the lease may have expired */
    op_t *inflight;             /* the write on its way (one at a time), or NULL */
    int want_checkpoint;
    char *cp_seq;
    int64_t cp_sub;
    waiters_t cp_waiters;
    int want_release;
    int handoff;                /* want_release means: hand over to lease.pending_owner */
    waiters_t rel_waiters;
    char *told_to;              /* the requester our owner was told of (NULL: none pending) */
};

/* A take sent to a row whose owner was alive (a steal). Until that owner's
 * deadline passes, the row must not be released by this worker if the take
 * landed without this worker holding it (answered too late, answered with
 * an error although written, or while stopping): a third worker would take
 * the free row and dispatch at once, while the owner may still be. The row
 * is left to expire instead, or released once the guard is over. */
typedef struct guard {
    char *key;
    int64_t until_ms;
    struct guard *next;
} guard_t;

/* A graceful handoff this worker asked for and waits on. */
typedef struct request {
    char *key;
    char *owner;                /* the owner asked */
    int64_t since_ms;
    struct request *next;
} request_t;

struct lease_coord {
    sched_t *sched;
    lease_store_t *store;
    lease_coord_options_t opt;
    char *worker_id;
    lease_coord_handler_t h;
    void *ud;
    owned_t **owned;            /* sorted by key */
    size_t nowned, owned_cap;
    request_t *requests;
    guard_t *guards;            /* steals whose previous owner may still be dispatching */
    op_t *ops;                  /* every request in flight */
    size_t nops;
    lease_obs_set_t obs;
    sched_timer_t renew_timer, take_timer;
    sched_timer_t expiry_timer;  /* when the next peer lease expires unless renewed: a scan then */
    int scanning, scanned_once, taking;
    int settling;               /* stopping: not clear to exit until a clean scan (coord_settle) */
    int scan_clean;             /* the scan in flight was sent holding nothing, with nothing in flight */
    sched_timer_t settle_timer; /* settling: look whether the last scan can be sent now */
    int scan_again;             /* asked for a scan while one was out: another follows it */
    int64_t scan_sent_ms, prev_scan_sent_ms;
    int stopping;               /* lease_coord_stop_taking was called: every lease should end released */
    size_t unclean;             /* leases that ended without their release or last checkpoint written */
    logsum_t store_sum;         /* store failures (writes, scans), told once per outage */
    lease_metrics_t metrics;
};

/* ---- small helpers --------------------------------------------------------------- */

static void waiters_add(waiters_t *w, lease_coord_done_cb done, void *ud)
{
    if (!done) return;
    if (w->n == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 2;
        w->v = xrealloc(w->v, w->cap * sizeof *w->v);
    }
    w->v[w->n++] = (waiter_t){done, ud};
}

static void waiters_move(waiters_t *to, waiters_t *from)
{
    for (size_t i = 0; i < from->n; i++) waiters_add(to, from->v[i].done, from->v[i].ud);
    free(from->v);
    memset(from, 0, sizeof *from);
}

/* Calls and empties the list; callbacks may add to it again. */
static void waiters_fire(waiters_t *w, lease_status_t st)
{
    waiters_t copy = *w;
    memset(w, 0, sizeof *w);
    for (size_t i = 0; i < copy.n; i++) copy.v[i].done(copy.v[i].ud, st);
    free(copy.v);
}

static int64_t coord_now(lease_coord_t *c)
{
    return sched_now_ms(c->sched);
}

static void coord_settle_soon(lease_coord_t *c);

static op_t *op_new(lease_coord_t *c, op_kind_t kind, const char *key)
{
    op_t *op = xcalloc(1, sizeof *op); /* freed by op_free, after its callback */
    op->c = c;
    op->kind = kind;
    op->key = xstrdup(key);
    op->sent_ms = coord_now(c);
    op->next = c->ops;
    if (c->ops) c->ops->prev = op;
    c->ops = op;
    c->nops++;
    return op;
}

static void op_free(op_t *op)
{
    lease_coord_t *c = op->c;
    if (op->prev) op->prev->next = op->next;
    else c->ops = op->next;
    if (op->next) op->next->prev = op->prev;
    c->nops--;
    free(op->key);
    free(op->seq);
    free(op->waiters.v);
    lease_clear(&op->row);
    free(op);
    coord_settle_soon(c);
}

/* ---- the owned set ------------------------------------------------------------- */

static size_t coord_owned_pos(lease_coord_t *c, const char *key, int *found)
{
    size_t lo = 0, hi = c->nowned;
    *found = 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = strcmp(c->owned[mid]->lease.key, key);
        if (r == 0) {
            *found = 1;
            return mid;
        }
        if (r < 0) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static owned_t *coord_find(lease_coord_t *c, const char *key)
{
    int found;
    size_t pos = coord_owned_pos(c, key, &found);
    return found ? c->owned[pos] : NULL;
}

static void coord_on_expiry(sched_timer_t *t);

static owned_t *coord_own(lease_coord_t *c, const lease_t *l, int64_t valid_from_ms)
{
    int found;
    size_t pos = coord_owned_pos(c, l->key, &found);
    owned_t *o = xcalloc(1, sizeof *o); /* the coordinator's until lost, given up or forgotten */
    o->c = c;
    lease_copy(&o->lease, l);
    free(o->lease.pending_owner); /* a request is told by the next scan */
    o->lease.pending_owner = NULL;
    sched_timer_init(&o->expiry, coord_on_expiry, o);
    o->valid_until_ms = valid_from_ms + c->opt.lease_duration_ms;
    sched_timer_start(c->sched, &o->expiry, o->valid_until_ms - coord_now(c));
    if (c->nowned == c->owned_cap) {
        c->owned_cap = c->owned_cap ? c->owned_cap * 2 : 16;
        c->owned = xrealloc(c->owned, c->owned_cap * sizeof *c->owned);
    }
    memmove(&c->owned[pos + 1], &c->owned[pos], (c->nowned - pos) * sizeof *c->owned);
    c->owned[pos] = o;
    c->nowned++;
    return o;
}

/* Unlinks and frees o; its queued waiters are moved to *waiters (the caller
 * fires them once the coordinator's state is settled). A write in flight is
 * detached: its answer reaches nobody as a success. */
static void coord_drop(lease_coord_t *c, owned_t *o, waiters_t *waiters)
{
    int found;
    size_t pos = coord_owned_pos(c, o->lease.key, &found);
    if (found && c->owned[pos] == o) {
        memmove(&c->owned[pos], &c->owned[pos + 1], (c->nowned - pos - 1) * sizeof *c->owned);
        c->nowned--;
    }
    if (o->inflight) o->inflight->o = NULL;
    sched_timer_stop(c->sched, &o->expiry);
    coord_settle_soon(c);
    waiters_move(waiters, &o->cp_waiters);
    waiters_move(waiters, &o->rel_waiters);
    lease_clear(&o->lease);
    free(o->cp_seq);
    free(o->told_to);
    free(o);
}

/* Store failures and recoveries, summarised (base/logsum): 1 = log this one in full. */
static int coord_store_failed(lease_coord_t *c, const char *msg)
{
    char scope[300];
    snprintf(scope, sizeof scope, "worker=%s", c->worker_id);
    return logsum_failed(&c->store_sum, coord_now(c), "lease_store", scope, msg);
}

static void coord_store_ok(lease_coord_t *c)
{
    char scope[300];
    if (!c->store_sum.start_ms) return;
    snprintf(scope, sizeof scope, "worker=%s", c->worker_id);
    logsum_ok(&c->store_sum, coord_now(c), "lease_store", scope);
}

/* A lost lease may take unwritten work with it: a checkpoint queued or on its
 * way, and (while stopping) the release. Each is named, and counted. */
static void coord_lost_unclean(lease_coord_t *c, owned_t *o)
{
    const char *seq = o->want_checkpoint && o->cp_seq ? o->cp_seq
                      : o->inflight && o->inflight->kind == OP_CHECKPOINT ? o->inflight->seq : NULL;
    int64_t sub = o->want_checkpoint && o->cp_seq ? o->cp_sub : o->inflight ? o->inflight->sub : 0;
    if (seq) {
        log_error("checkpoint_not_written", "lease=%s worker=%s seq=%s sub=%lld written=%s", o->lease.key,
                  c->worker_id, seq, (long long)sub, o->lease.checkpoint ? o->lease.checkpoint : "-");
        c->unclean++;
    }
    if (c->stopping) {
        log_error("lease_not_released", "lease=%s worker=%s reason=\"lost while shutting down\" action=\"a peer "
                  "takes it once lease_duration passes\"", o->lease.key, c->worker_id);
        if (!seq) c->unclean++;
    }
}

/* The lease is gone. The loss is recorded (o unlinked) and told to the owner
 * (who stops dispatching) before any waiter runs: a waiter must never see
 * the lease as still held. */
static void coord_lose(lease_coord_t *c, owned_t *o, const char *why)
{
    char key[512], q[512];
    snprintf(key, sizeof key, "%s", o->lease.key);
    log_warn("lease_lost", "lease=%s worker=%s reason=%s", key, c->worker_id, log_quote(why, q, sizeof q));
    coord_lost_unclean(c, o);
    lease_metrics_lost(&c->metrics);
    if (o->inflight) o->inflight->lost = 1;
    waiters_t waiters = {0};
    coord_drop(c, o, &waiters);
    c->h.lost(c->ud, key);
    waiters_fire(&waiters, LEASE_CONFLICT);
}

static void coord_on_expiry(sched_timer_t *t)
{
    owned_t *o = t->data;
    coord_lose(o->c, o, "not renewed within lease_duration (paused or store unreachable)");
}

/* A write sent at sent_ms succeeded: the lease is valid until sent_ms +
 * lease_duration by this worker's clock (a peer saw the new counter no
 * earlier than it was written). 0 when that is past already: lost. */
static int coord_extend(lease_coord_t *c, owned_t *o, int64_t sent_ms)
{
    int64_t until = sent_ms + c->opt.lease_duration_ms, now = coord_now(c);
    if (until > o->valid_until_ms) o->valid_until_ms = until;
    if (o->valid_until_ms <= now) {
        coord_lose(c, o, "the write that renewed it took longer than lease_duration");
        return 0;
    }
    sched_timer_start(c->sched, &o->expiry, o->valid_until_ms - now);
    return 1;
}

/* ---- writes on owned leases ------------------------------------------------------ */

static void coord_issue(lease_coord_t *c, owned_t *o);

static const char *op_name(op_kind_t k)
{
    static const char *const names[] = {"renew", "checkpoint", "release", "handoff", "take", "ask", "cancel",
                                        "release"};
    return names[k];
}

static void coord_release_unheld(lease_coord_t *c, const lease_t *l, const char *why);

/* The answer to a write whose lease is no longer held here. Lost: the loss
 * was told already, so no waiter may take this answer for a success.
 * Forgotten (the shard closed while its last write was on its way): a
 * release or handoff is still seen through, so the lease is never left in
 * this worker's name. */
static void coord_write_detached(lease_coord_t *c, op_t *w, lease_status_t st, const lease_t *updated)
{
    int ends = w->kind == OP_RELEASE || w->kind == OP_HANDOFF;
    if (!w->lost && ends && st == LEASE_OK && w->kind == OP_HANDOFF)
        log_info("lease_handed_off", "lease=%s from=%s to=%s", w->key, c->worker_id,
                 updated && updated->owner ? updated->owner : "-");
    else if (!w->lost && st == LEASE_OK && w->kind == OP_RELEASE)
        log_info("lease_released", "lease=%s worker=%s counter=%lld checkpoint=%s", w->key, c->worker_id,
                 (long long)(updated ? updated->counter : w->row.counter),
                 updated && updated->checkpoint ? updated->checkpoint : "-");
    else if (!w->lost && ends && st != LEASE_OK && (st != LEASE_CONFLICT || w->kind == OP_HANDOFF))
        coord_release_unheld(c, &w->row, w->kind == OP_HANDOFF ? "handoff refused (request withdrawn)"
                                                               : "release failed, tried again");
    waiters_fire(&w->waiters, w->lost || !ends ? LEASE_CONFLICT : st);
    op_free(w);
}

static void coord_write_done(void *ud, lease_status_t st, const char *msg, const lease_t *updated)
{
    op_t *w = ud;
    lease_coord_t *c = w->c;
    owned_t *o = w->o;
    char q[512];
    lease_metrics_store(&c->metrics, op_name(w->kind), coord_now(c) - w->sent_ms, st);
    if (!o) {
        coord_write_detached(c, w, st, updated);
        return;
    }
    o->inflight = NULL;
    int ends = w->kind == OP_RELEASE || w->kind == OP_HANDOFF;
    if (st == LEASE_OK) coord_store_ok(c);
    if (st == LEASE_OK && updated) {
        o->lease.counter = updated->counter;
        o->lease.owner_switches = updated->owner_switches;
        if (w->kind == OP_CHECKPOINT) {
            free(o->lease.checkpoint);
            o->lease.checkpoint = xstrdup(updated->checkpoint);
            o->lease.checkpoint_sub = updated->checkpoint_sub;
        }
        if (ends) {
            if (w->kind == OP_HANDOFF)
                log_info("lease_handed_off", "lease=%s from=%s to=%s", w->key, c->worker_id,
                         updated->owner ? updated->owner : "-");
            else
                log_info("lease_released", "lease=%s worker=%s counter=%lld checkpoint=%s", w->key, c->worker_id,
                         (long long)updated->counter, updated->checkpoint ? updated->checkpoint : "-");
            waiters_t waiters = {0};
            coord_drop(c, o, &waiters);
            waiters_move(&waiters, &w->waiters);
            op_free(w);
            waiters_fire(&waiters, LEASE_OK);
            return;
        }
        if (!coord_extend(c, o, w->sent_ms)) {
            waiters_fire(&w->waiters, LEASE_CONFLICT);
            op_free(w);
            return;
        }
    } else if (st == LEASE_CONFLICT && w->kind == OP_HANDOFF) {
        /* the requester withdrew (it stopped) or another took its place:
         * release instead, so the lease is free at once, not orphaned */
        log_info("lease_handoff_withdrawn", "lease=%s worker=%s action=release", w->key, c->worker_id);
        free(o->lease.pending_owner);
        o->lease.pending_owner = NULL;
        o->handoff = 0;
        o->want_release = 1;
        waiters_move(&o->rel_waiters, &w->waiters);
        op_free(w);
        coord_issue(c, o);
        return;
    } else if (st == LEASE_CONFLICT) {
        if (w->kind == OP_RELEASE) {
            waiters_t waiters = {0};
            coord_drop(c, o, &waiters); /* not ours any more: nothing to release */
            waiters_move(&waiters, &w->waiters);
            op_free(w);
            waiters_fire(&waiters, LEASE_CONFLICT);
            return;
        }
        coord_lose(c, o, msg ? msg : "conditional write refused");
        waiters_fire(&w->waiters, LEASE_CONFLICT);
        op_free(w);
        return;
    } else {
        /* transient: tried again at the next renew tick; the expiry timer
         * bounds how long */
        if (coord_store_failed(c, msg))
            log_warn("lease_write_failed", "lease=%s op=%s status=%s error=%s", w->key, op_name(w->kind),
                     lease_status_name(st), log_quote(msg, q, sizeof q));
        if (w->kind == OP_CHECKPOINT) {
            if (!o->want_checkpoint) {
                o->want_checkpoint = 1;
                o->cp_seq = w->seq;
                o->cp_sub = w->sub;
                w->seq = NULL;
            }
            waiters_move(&o->cp_waiters, &w->waiters); /* a later checkpoint covers this one */
        } else if (ends) {
            o->want_release = 1;
            o->handoff = w->kind == OP_HANDOFF;
            waiters_move(&o->rel_waiters, &w->waiters);
        }
        op_free(w);
        return;
    }
    char *key = xstrdup(w->key);
    waiters_fire(&w->waiters, st);
    op_free(w);
    o = coord_find(c, key); /* a waiter may have forgotten it */
    free(key);
    if (o) coord_issue(c, o);
}

static op_t *coord_write(lease_coord_t *c, owned_t *o, op_kind_t kind)
{
    op_t *w = op_new(c, kind, o->lease.key);
    w->o = o;
    o->inflight = w;
    return w;
}

/* A release or handoff is queued and may be written: a lease stolen from a
 * live owner is given on only once that owner can no longer be dispatching
 * (dispatch_from_ms), since whoever gets it next dispatches at once. Until
 * then it is renewed. */
static int coord_give_up_due(lease_coord_t *c, const owned_t *o)
{
    return o->want_release && coord_now(c) >= o->dispatch_from_ms;
}

/* Starts the next queued write on o, if none is in flight. Checkpoints come
 * before a release, so a graceful shutdown releases with its last checkpoint
 * written. */
static void coord_issue(lease_coord_t *c, owned_t *o)
{
    if (o->inflight) return;
    if (o->want_checkpoint) {
        op_t *w = coord_write(c, o, OP_CHECKPOINT);
        waiters_move(&w->waiters, &o->cp_waiters);
        o->want_checkpoint = 0;
        w->seq = o->cp_seq;
        w->sub = o->cp_sub;
        o->cp_seq = NULL;
        c->store->ops->checkpoint(c->store, &o->lease, w->seq, w->sub, coord_write_done, w);
        return;
    }
    if (coord_give_up_due(c, o)) {
        op_t *w = coord_write(c, o, o->handoff ? OP_HANDOFF : OP_RELEASE);
        lease_copy(&w->row, &o->lease); /* to see it through if the lease is forgotten meanwhile */
        waiters_move(&w->waiters, &o->rel_waiters);
        o->want_release = 0;
        if (o->handoff) c->store->ops->handoff(c->store, &o->lease, coord_write_done, w);
        else c->store->ops->release(c->store, &o->lease, coord_write_done, w);
    }
}

static void coord_renew(lease_coord_t *c, owned_t *o)
{
    if (o->inflight) return;
    if (o->want_checkpoint || coord_give_up_due(c, o)) {
        coord_issue(c, o); /* a queued write (maybe a retry) renews too */
        return;
    }
    op_t *w = coord_write(c, o, OP_RENEW);
    char *info = c->h.describe ? c->h.describe(c->ud, o->lease.key) : NULL;
    if (info) { /* none when its shard is gone: the last facts it gave stay */
        free(o->lease.info);
        o->lease.info = info;
    }
    c->store->ops->renew(c->store, &o->lease, coord_write_done, w);
}

static void coord_on_renew(sched_timer_t *t)
{
    lease_coord_t *c = t->data;
    sched_timer_start(c->sched, &c->renew_timer, c->opt.renew_interval_ms);
    for (size_t i = 0; i < c->nowned; i++) coord_renew(c, c->owned[i]); /* never calls back inside */
}

/* ---- takes, requests, releases ------------------------------------------------------ */

static void coord_forget_done(void *ud, lease_status_t st, const char *msg, const lease_t *updated)
{
    op_free(ud);
}

static void coord_guard(lease_coord_t *c, const char *key, int64_t until_ms)
{
    guard_t *g = xcalloc(1, sizeof *g); /* c->guards' until it is over */
    g->key = xstrdup(key);
    g->until_ms = until_ms;
    g->next = c->guards;
    c->guards = g;
}

/* The guard of key that is not over yet, or NULL; drops those that are. */
static const guard_t *coord_guarded(lease_coord_t *c, const char *key)
{
    const guard_t *found = NULL;
    int64_t now = coord_now(c);
    for (guard_t **pp = &c->guards; *pp;) {
        guard_t *g = *pp;
        if (g->until_ms <= now) {
            *pp = g->next;
            free(g->key);
            free(g);
            continue;
        }
        if (!found && key && !strcmp(g->key, key)) found = g;
        pp = &g->next;
    }
    return found;
}

static void coord_release_unheld(lease_coord_t *c, const lease_t *l, const char *why)
{
    const guard_t *g = coord_guarded(c, l->key);
    if (g) {
        log_info("lease_release_deferred", "lease=%s worker=%s counter=%lld reason=\"%s\" wait_ms=%lld "
                 "why=\"taken from a live owner, which may dispatch until then\"", l->key, c->worker_id,
                 (long long)l->counter, why, (long long)(g->until_ms - coord_now(c)));
        return;
    }
    for (op_t *op = c->ops; op; op = op->next)
        if (op->kind == OP_RELEASE_UNHELD && !strcmp(op->key, l->key)) return; /* on its way */
    log_info("lease_released", "lease=%s worker=%s counter=%lld reason=\"%s\"", l->key, c->worker_id,
             (long long)l->counter, why);
    op_t *op = op_new(c, OP_RELEASE_UNHELD, l->key);
    c->store->ops->release(c->store, l, coord_forget_done, op);
}

static void coord_take_done(void *ud, lease_status_t st, const char *msg, const lease_t *updated)
{
    op_t *t = ud;
    lease_coord_t *c = t->c;
    int64_t until = t->sent_ms + c->opt.lease_duration_ms;
    lease_metrics_store(&c->metrics, "take", coord_now(c) - t->sent_ms, st);
    if (st == LEASE_OK && updated && c->taking && !coord_find(c, updated->key) && until > coord_now(c)) {
        owned_t *o = coord_own(c, updated, t->sent_ms);
        lease_metrics_taken(&c->metrics, t->stolen);
        /* The previous owner's last write was sent before this worker first
         * saw its counter: its deadline is at most lease_duration after that.
         * An expired row is past it already, a released one has no owner; a
         * row stolen from a live owner (a handoff request it left
         * unanswered) waits for it. */
        if (t->row.owner && !t->owner_dead) o->dispatch_from_ms = t->seen_ms + c->opt.lease_duration_ms;
        int64_t wait = o->dispatch_from_ms > coord_now(c) ? o->dispatch_from_ms - coord_now(c) : 0;
        log_info("lease_taken", "lease=%s worker=%s counter=%lld checkpoint=%s previous_owner=%s stolen=%d "
                 "dispatch_in_ms=%lld", updated->key, c->worker_id, (long long)updated->counter, updated->checkpoint,
                 t->row.owner ? t->row.owner : "-", t->stolen, (long long)wait);
        op_free(t);
        c->h.acquired(c->ud, &o->lease);
        return;
    }
    if (st == LEASE_OK && updated) {
        /* stopping meanwhile, or the answer came too late to trust: give it back */
        coord_release_unheld(c, updated, c->taking ? "take answered after lease_duration" : "taken while stopping");
    } else if (st != LEASE_CONFLICT) {
        char q[512];
        log_warn("lease_take_failed", "lease=%s status=%s error=%s", t->key, lease_status_name(st),
                 log_quote(msg, q, sizeof q));
    }
    op_free(t);
}

/* owner_dead: the store knows the owner's process is gone (a local store's
 * kernel lock, lease_alive.h): it can dispatch nothing any more, so the
 * lease is dispatched at once and needs no guard. */
static void coord_take(lease_coord_t *c, const lease_t *l, int stolen, int owner_dead)
{
    op_t *t = op_new(c, OP_TAKE, l->key);
    t->stolen = stolen;
    t->owner_dead = owner_dead && l->owner;
    const lease_obs_t *seen = lease_obs_find(&c->obs, l->key);
    t->seen_ms = seen && seen->counter == l->counter ? seen->since_ms : coord_now(c);
    if (l->owner && !t->owner_dead && t->seen_ms + c->opt.lease_duration_ms > coord_now(c))
        coord_guard(c, l->key, t->seen_ms + c->opt.lease_duration_ms);
    lease_copy(&t->row, l);
    c->store->ops->take(c->store, &t->row, c->worker_id, coord_take_done, t);
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

static void coord_ask_done(void *ud, lease_status_t st, const char *msg, const lease_t *updated)
{
    op_t *op = ud;
    lease_coord_t *c = op->c;
    request_t *r = coord_request_find(c, op->key);
    if (st == LEASE_OK && updated) {
        log_info("lease_handoff_requested", "lease=%s from=%s to=%s", updated->key,
                 updated->owner ? updated->owner : "-", c->worker_id);
    } else if (r && r->since_ms <= op->sent_ms) {
        coord_request_drop(c, r); /* refused (the lease moved meanwhile): the next scan decides again */
    }
    op_free(op);
}

/* Rebalancing asks the owner to hand the lease over at its next batch
 * boundary (checkpoint first), so a steal re-delivers nothing. */
static void coord_ask(lease_coord_t *c, const lease_t *l)
{
    request_t *r = xcalloc(1, sizeof *r); /* c->requests' until adopted, dropped or withdrawn */
    r->key = xstrdup(l->key);
    r->owner = xstrdup(l->owner);
    r->since_ms = coord_now(c);
    r->next = c->requests;
    c->requests = r;
    op_t *op = op_new(c, OP_ASK, l->key);
    c->store->ops->request_handoff(c->store, l, c->worker_id, coord_ask_done, op);
}

/* Withdraws this worker's handoff request on key (owned by owner), once. */
static void coord_cancel(lease_coord_t *c, const char *key, const char *owner)
{
    for (op_t *op = c->ops; op; op = op->next)
        if (op->kind == OP_CANCEL && !strcmp(op->key, key)) return; /* on its way */
    lease_t l = {0};
    l.key = (char *)key;
    l.owner = (char *)owner;
    op_t *op = op_new(c, OP_CANCEL, key);
    c->store->ops->cancel_handoff(c->store, &l, c->worker_id, coord_forget_done, op);
}

static void coord_withdraw(lease_coord_t *c, request_t *r)
{
    coord_cancel(c, r->key, r->owner);
    coord_request_drop(c, r);
}

static void coord_adopt(lease_coord_t *c, const lease_t *l, request_t *r)
{
    /* The handoff was written after we asked, and after the previous scan
     * still showed the old owner: the lease is valid from then, by our clock.
     * A renewal right away gives it a fresh deadline. */
    int64_t from = r->since_ms > c->prev_scan_sent_ms ? r->since_ms : c->prev_scan_sent_ms;
    if (from + c->opt.lease_duration_ms <= coord_now(c)) {
        coord_release_unheld(c, l, "handed over too long ago to trust");
        return;
    }
    owned_t *o = coord_own(c, l, from);
    lease_metrics_taken(&c->metrics, 1);
    log_info("lease_taken", "lease=%s worker=%s counter=%lld checkpoint=%s previous_owner=%s stolen=1 "
             "graceful=1", l->key, c->worker_id, (long long)l->counter, l->checkpoint, r->owner);
    coord_renew(c, o);
    c->h.acquired(c->ud, &o->lease);
}

/* ---- the taker: scan, plan, carry out ------------------------------------------------ */

static lease_local_t *coord_local(lease_coord_t *c, size_t *n)
{
    size_t cap = c->nowned + c->nops + 1, k = 0;
    for (request_t *r = c->requests; r; r = r->next) cap++;
    lease_local_t *v = xcalloc(cap, sizeof *v); /* freed by coord_scan_done */
    for (size_t i = 0; i < c->nowned; i++)
        v[k++] = (lease_local_t){c->owned[i]->lease.key, LEASE_LOCAL_OWNED, c->owned[i]->told_to, NULL, 0};
    for (op_t *op = c->ops; op; op = op->next)
        if (op->kind == OP_TAKE) v[k++] = (lease_local_t){op->key, LEASE_LOCAL_TAKING, NULL, NULL, 0};
    for (request_t *r = c->requests; r; r = r->next)
        v[k++] = (lease_local_t){r->key, LEASE_LOCAL_ASKED, NULL, r->owner, r->since_ms};
    *n = k;
    return v;
}

static void coord_carry_out(lease_coord_t *c, const lease_list_t *all, const lease_plan_decision_t *d)
{
    char q[512];
    const lease_t *l = d->row;
    owned_t *o = d->key ? coord_find(c, d->key) : NULL;
    request_t *r = d->key ? coord_request_find(c, d->key) : NULL;
    switch (d->kind) {
    case LEASE_PLAN_REPORT_INVALID:
        log_error("lease_row_invalid", "lease=%s error=%s action=skipped", l->key ? l->key : "(none)",
                  log_quote(l->invalid, q, sizeof q));
        break;
    case LEASE_PLAN_TELL:
        if (!o) break;
        free(o->told_to);
        o->told_to = xstrdup(l->pending_owner);
        free(o->lease.pending_owner);
        o->lease.pending_owner = xstrdup(l->pending_owner);
        if (c->h.handoff_requested) c->h.handoff_requested(c->ud, l->key, l->pending_owner);
        break;
    case LEASE_PLAN_UNTELL:
        if (!o) break;
        log_info("lease_handoff_withdrawn", "lease=%s worker=%s requester=%s action=\"release instead\"", l->key,
                 c->worker_id, o->told_to);
        free(o->told_to);
        o->told_to = NULL;
        free(o->lease.pending_owner);
        o->lease.pending_owner = NULL;
        break;
    case LEASE_PLAN_ADOPT:
        if (r && !o) coord_adopt(c, l, r);
        if (r) coord_request_drop(c, r);
        break;
    case LEASE_PLAN_FORGET:
        if (r) coord_request_drop(c, r);
        break;
    case LEASE_PLAN_WITHDRAW:
        if (r) coord_withdraw(c, r);
        break;
    case LEASE_PLAN_STEAL:
        if (r) {
            log_warn("lease_handoff_timeout", "lease=%s owner=%s action=steal", l->key, l->owner);
            coord_request_drop(c, r);
            coord_take(c, l, 1, lease_list_owner_dead(all, l->owner));
        }
        break;
    case LEASE_PLAN_RELEASE:
        if (!o) coord_release_unheld(c, l, "in this worker's name but not held");
        break;
    case LEASE_PLAN_CANCEL:
        if (!r) coord_cancel(c, l->key, l->owner);
        break;
    case LEASE_PLAN_TAKE:
        coord_take(c, l, 0, lease_list_owner_dead(all, l->owner));
        break;
    case LEASE_PLAN_ASK:
        coord_ask(c, l);
        break;
    }
}

/* ---- settling before the exit --------------------------------------------------------- */

/* A row names this worker as owner or requester, and it neither holds the
 * lease nor waits for the request. */
static int coord_names_me_unheld(lease_coord_t *c, const lease_list_t *all)
{
    for (size_t i = 0; i < all->count; i++) {
        const lease_t *l = &all->leases[i];
        if (l->invalid || !l->key) continue;
        if (l->owner && !strcmp(l->owner, c->worker_id) && !coord_find(c, l->key)) return 1;
        if (l->pending_owner && !strcmp(l->pending_owner, c->worker_id) && !coord_request_find(c, l->key)) return 1;
    }
    return 0;
}

/* Nothing held, nothing in flight: a scan sent now shows what this worker
 * leaves behind. (A write answered with an error may have been carried out,
 * a release refused by a counter our own lost write moved leaves the row in
 * our name: only a scan after every answer can tell.) */
static int coord_quiet(const lease_coord_t *c)
{
    return c->nowned == 0 && c->nops == 0;
}

/* Called whenever a write ends or a lease is dropped: once quiet, a
 * stopping worker scans (on the next turn: the caller may still be busy). */
static void coord_settle_soon(lease_coord_t *c)
{
    if (c->settling) sched_timer_start(c->sched, &c->settle_timer, 0);
}

static void coord_on_settle(sched_timer_t *t)
{
    lease_coord_t *c = t->data;
    if (c->settling && !c->scanning && coord_quiet(c)) sched_timer_start(c->sched, &c->take_timer, 0);
}

/* After a stopping worker's scan: clear to exit when the scan was sent
 * quiet, nothing was sent since, and no row names this worker that it does
 * not hold (its plan released or withdrew those; their answers call for
 * another scan, and a release deferred by a guard waits for a later one). */
static void coord_settle(lease_coord_t *c, const lease_list_t *all)
{
    if (c->settling && c->scan_clean && coord_quiet(c) && !coord_names_me_unheld(c, all)) c->settling = 0;
}

static void coord_on_expiry_due(sched_timer_t *t)
{
    lease_coord_scan_now(t->data);
}

/* A peer's lease that stops moving expires lease_duration after this worker
 * first saw its counter; the taker looks again at that moment instead of at
 * its next tick, up to taker_interval later (issue 18: a dead worker's
 * leases within lease_duration + taker_interval, the interval being the lag
 * before its last counter was first seen). While peers renew, every scan
 * moves this later and it never fires. `all` and c->obs are aligned. */
static void coord_watch_expiry(lease_coord_t *c, const lease_list_t *all, int64_t now)
{
    int64_t due = INT64_MAX;
    for (size_t i = 0; i < all->count && i < c->obs.n; i++) {
        const lease_t *l = &all->leases[i];
        if (!l->owner || l->invalid || !strcmp(l->owner, c->worker_id) || !strcmp(l->checkpoint, SEQNUM_SHARD_END))
            continue;
        int64_t at = c->obs.v[i].since_ms + c->opt.lease_duration_ms;
        if (at > now && at < due) due = at;
    }
    if (due == INT64_MAX || !c->taking || !c->opt.take) sched_timer_stop(c->sched, &c->expiry_timer);
    else sched_timer_start(c->sched, &c->expiry_timer, due - now);
}

static void coord_scan_done(void *ud, lease_status_t st, const char *msg, lease_list_t *all)
{
    lease_coord_t *c = ud;
    c->scanning = 0;
    lease_metrics_store(&c->metrics, "scan", coord_now(c) - c->scan_sent_ms, st);
    if (st != LEASE_OK) {
        c->scan_again = 0; /* the taker timer tries again */
        char q[512];
        if (coord_store_failed(c, msg))
            log_warn("lease_scan_failed", "status=%s error=%s", lease_status_name(st), log_quote(msg, q, sizeof q));
        if (st == LEASE_EFATAL && !c->scanned_once && c->h.store_unusable) c->h.store_unusable(c->ud, msg);
        return;
    }
    c->scanned_once = 1;
    coord_store_ok(c);
    int64_t now = coord_now(c);
    lease_obs_update(&c->obs, all, now);
    coord_watch_expiry(c, all, now);
    size_t nlocal;
    lease_local_t *local = coord_local(c, &nlocal);
    lease_plan_input_t in = {c->worker_id, now, c->opt.lease_duration_ms, c->opt.max_steal, c->taking && c->opt.take,
                             all, &c->obs, local, nlocal, c->h.eligible, c->ud};
    lease_plan_t plan = {0};
    lease_plan_run(&in, &plan);
    free(local); /* its strings belong to owned entries and requests, which decisions change */
    for (size_t i = 0; i < plan.n; i++) {
        if (plan.v[i].kind == LEASE_PLAN_REPORT_INVALID) c->obs.v[plan.v[i].row - all->leases].reported = 1;
        coord_carry_out(c, all, &plan.v[i]);
    }
    lease_plan_free(&plan);
    c->prev_scan_sent_ms = c->scan_sent_ms;
    coord_settle(c, all);
    if (c->h.scanned) c->h.scanned(c->ud, all);
    lease_list_free(all);
    if (c->scan_again) {
        c->scan_again = 0;
        lease_coord_scan_now(c);
    }
}

static void coord_on_take(sched_timer_t *t)
{
    lease_coord_t *c = t->data;
    sched_timer_start(c->sched, &c->take_timer, c->opt.taker_interval_ms);
    if (c->scanning) return;
    c->scanning = 1;
    c->scan_sent_ms = coord_now(c);
    c->scan_clean = coord_quiet(c);
    c->store->ops->list(c->store, coord_scan_done, c);
}

/* ---- the interface -------------------------------------------------------------------- */

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
    sched_timer_init(&c->settle_timer, coord_on_settle, c);
    lease_metrics_init(&c->metrics, opt->metrics, &c->nowned);
    sched_timer_init(&c->expiry_timer, coord_on_expiry_due, c);
    return c;
}

/* The store says a peer died or left (same machine): its leases may be
 * free now, so the taker runs at once rather than at its next tick. */
static void coord_on_peer_gone(void *ud)
{
    lease_coord_scan_now(ud);
}

void lease_coord_start(lease_coord_t *c)
{
    /* before the first scan: peers must be able to tell this worker's death
     * before it holds any lease */
    if (c->opt.take && c->store->ops->join) c->store->ops->join(c->store, c->worker_id, coord_on_peer_gone, c);
    sched_timer_start(c->sched, &c->renew_timer, c->opt.renew_interval_ms);
    sched_timer_start(c->sched, &c->take_timer, 0);
}

void lease_coord_stop_taking(lease_coord_t *c)
{
    if (!c->taking) return;
    c->taking = 0;
    c->stopping = 1;
    sched_timer_stop(c->sched, &c->expiry_timer);
    /* withdraw our handoff requests, so no lease is handed to a worker that is leaving */
    while (c->requests) coord_withdraw(c, c->requests);
    c->settling = 1;
    coord_settle_soon(c);
}

void lease_coord_scan_now(lease_coord_t *c)
{
    if (c->scanning) c->scan_again = 1; /* that scan may have read the table before the news */
    else sched_timer_start(c->sched, &c->take_timer, 0);
}

void lease_coord_free(lease_coord_t *c)
{
    if (!c) return;
    c->settling = 0; /* nothing is scanned for any more */
    sched_timer_stop(c->sched, &c->renew_timer);
    sched_timer_stop(c->sched, &c->take_timer);
    sched_timer_stop(c->sched, &c->settle_timer);
    sched_timer_stop(c->sched, &c->expiry_timer);
    while (c->nowned) {
        waiters_t dropped = {0};
        coord_drop(c, c->owned[c->nowned - 1], &dropped);
        free(dropped.v); /* their owners are gone by now: not called */
    }
    free(c->owned);
    while (c->requests) coord_request_drop(c, c->requests);
    while (c->guards) {
        guard_t *g = c->guards;
        c->guards = g->next;
        free(g->key);
        free(g);
    }
    while (c->ops) op_free(c->ops); /* the store was destroyed first: no callback comes */
    lease_obs_clear(&c->obs);
    lease_metrics_clear(&c->metrics);
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
 * that asked (when the request was withdrawn meanwhile, a release). */
static void coord_give_up(lease_coord_t *c, const char *key, int handoff, lease_coord_done_cb done, void *ud)
{
    owned_t *o = coord_find(c, key);
    if (!o) {
        if (done) done(ud, LEASE_CONFLICT);
        return;
    }
    o->handoff = handoff && o->lease.pending_owner != NULL;
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

void lease_coord_set_info(lease_coord_t *c, const char *key, char *info)
{
    owned_t *o = coord_find(c, key);
    if (!o) {
        free(info);
        return;
    }
    free(o->lease.info);
    o->lease.info = info;
}

void lease_coord_forget(lease_coord_t *c, const char *key)
{
    owned_t *o = coord_find(c, key);
    /* a release queued behind a write in flight must still happen (it ends
     * the entry): forgetting it now would leave the lease to expire unreleased */
    if (!o || o->want_release) return;
    waiters_t waiters = {0};
    coord_drop(c, o, &waiters);
    waiters_fire(&waiters, LEASE_CONFLICT);
}

const lease_t *lease_coord_owned(lease_coord_t *c, const char *key)
{
    owned_t *o = coord_find(c, key);
    return o ? &o->lease : NULL;
}

int lease_coord_may_dispatch(lease_coord_t *c, const char *key)
{
    owned_t *o = coord_find(c, key);
    if (!o || o->want_release) return 0;
    if (o->inflight && (o->inflight->kind == OP_RELEASE || o->inflight->kind == OP_HANDOFF)) return 0;
    int64_t now = coord_now(c);
    return now >= o->dispatch_from_ms && now < o->valid_until_ms;
}

size_t lease_coord_unclean(const lease_coord_t *c) { return c->unclean; }

size_t lease_coord_pending(lease_coord_t *c)
{
    size_t n = c->nops + (size_t)c->settling;
    for (size_t i = 0; i < c->nowned; i++) n += (size_t)(c->owned[i]->want_checkpoint + c->owned[i]->want_release);
    return n;
}

int lease_coord_owner_alive(lease_coord_t *c, const char *key)
{
    const lease_obs_t *o = lease_obs_find(&c->obs, key);
    return o && lease_obs_alive(o, coord_now(c), c->opt.lease_duration_ms);
}
