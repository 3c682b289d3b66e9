#include "lease_plan.h"

#include <stdlib.h>
#include <string.h>

#include "base/xalloc.h"
#include "record/seqnum.h"

/* ---- observations ------------------------------------------------------------- */

static const char *plan_key(const lease_t *l)
{
    return l->key ? l->key : "";
}

void lease_obs_update(lease_obs_set_t *o, const lease_list_t *all, int64_t now_ms)
{
    lease_obs_t *v = xcalloc(all->count ? all->count : 1, sizeof *v); /* replaces o->v */
    size_t j = 0;
    for (size_t i = 0; i < all->count; i++) {
        const lease_t *l = &all->leases[i];
        const char *key = plan_key(l);
        v[i] = (lease_obs_t){.key = xstrdup(key), .counter = l->counter, .since_ms = now_ms};
        while (j < o->n && strcmp(o->v[j].key, key) < 0) j++;
        if (j < o->n && !strcmp(o->v[j].key, key)) {
            const lease_obs_t *old = &o->v[j++];
            if (old->counter == l->counter) {
                v[i].since_ms = old->since_ms;
                v[i].moved = old->moved;
                v[i].reported = old->reported;
            } else {
                v[i].moved = 1;
            }
        }
    }
    lease_obs_clear(o);
    o->v = v;
    o->n = all->count;
}

void lease_obs_clear(lease_obs_set_t *o)
{
    for (size_t i = 0; i < o->n; i++) free(o->v[i].key);
    free(o->v);
    o->v = NULL;
    o->n = 0;
}

const lease_obs_t *lease_obs_find(const lease_obs_set_t *o, const char *key)
{
    size_t lo = 0, hi = o->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(o->v[mid].key, key);
        if (c == 0) return &o->v[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

int lease_obs_expired(const lease_obs_t *o, int64_t now_ms, int64_t lease_duration_ms)
{
    return now_ms - o->since_ms >= lease_duration_ms;
}

int lease_obs_alive(const lease_obs_t *o, int64_t now_ms, int64_t lease_duration_ms)
{
    return o->moved && !lease_obs_expired(o, now_ms, lease_duration_ms);
}

size_t lease_plan_target(size_t leases, size_t workers)
{
    if (!workers) workers = 1;
    return (leases + workers - 1) / workers;
}

/* ---- the plan ------------------------------------------------------------------ */

static void plan_add(lease_plan_t *p, lease_plan_kind_t kind, const char *key, const lease_t *row)
{
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 16;
        p->v = xrealloc(p->v, p->cap * sizeof *p->v);
    }
    p->v[p->n++] = (lease_plan_decision_t){kind, key, row};
}

void lease_plan_free(lease_plan_t *p)
{
    free(p->v);
    memset(p, 0, sizeof *p);
}

static int plan_local_cmp(const void *a, const void *b)
{
    return strcmp((*(const lease_local_t *const *)a)->key, (*(const lease_local_t *const *)b)->key);
}

static int plan_str_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int plan_is(const char *a, const char *b)
{
    return a && b && !strcmp(a, b);
}

/* The store knows the owner dead, and it is not this worker. */
static int plan_dead(const lease_plan_input_t *in, const char *owner)
{
    return owner && !plan_is(owner, in->worker_id) && lease_list_owner_dead(in->all, owner);
}

/* What the bookkeeping made of a row's local entry. */
typedef enum {
    ROW_NONE,       /* nothing local */
    ROW_HELD,       /* owned or being taken */
    ROW_ASKED,      /* a request still waiting for its answer */
    ROW_GAINED,     /* adopted or stolen in this plan */
    ROW_DONE,       /* forgotten, withdrawn or released in this plan */
} row_state_t;

typedef struct worker_load {
    const char *id;
    size_t count;
} worker_load_t;

typedef struct plan_ctx {
    const lease_plan_input_t *in;
    lease_plan_t *out;
    size_t n;
    const lease_local_t **local;   /* sorted by key */
    const lease_local_t **rowloc;  /* per row: its local entry or NULL */
    unsigned char *usable, *expired, *state;
} plan_ctx_t;

static const lease_local_t *plan_local_find(plan_ctx_t *p, const char *key, unsigned char *matched)
{
    size_t lo = 0, hi = p->in->nlocal;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(p->local[mid]->key, key);
        if (c == 0) {
            matched[mid] = 1;
            return p->local[mid];
        }
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

/* Handoffs and rows in this worker's name: the part of the plan that does
 * not depend on the balance. */
static void plan_bookkeeping(plan_ctx_t *p)
{
    const lease_plan_input_t *in = p->in;
    const char *me = in->worker_id;
    for (size_t i = 0; i < p->n; i++) {
        const lease_t *l = &in->all->leases[i];
        const lease_local_t *lc = p->rowloc[i];
        int named_me = plan_is(l->owner, me);
        if (l->invalid) {
            p->state[i] = ROW_DONE; /* reported, never taken, kept out of the balance */
            continue;
        }
        if (!lc) {
            p->state[i] = ROW_NONE;
            if (named_me) {
                plan_add(p->out, LEASE_PLAN_RELEASE, l->key, l);
                p->state[i] = ROW_DONE;
            } else if (plan_is(l->pending_owner, me)) {
                plan_add(p->out, LEASE_PLAN_CANCEL, l->key, l);
            }
            continue;
        }
        if (lc->kind != LEASE_LOCAL_ASKED) {
            p->state[i] = ROW_HELD;
            if (lc->kind == LEASE_LOCAL_OWNED && named_me) {
                if (l->pending_owner && strcmp(l->pending_owner, me) && !plan_is(lc->told_to, l->pending_owner))
                    plan_add(p->out, LEASE_PLAN_TELL, l->key, l);
                else if (lc->told_to && !l->pending_owner)
                    plan_add(p->out, LEASE_PLAN_UNTELL, l->key, l);
            }
            continue;
        }
        p->state[i] = ROW_DONE;
        if (named_me) {
            int adopt = in->taking && p->usable[i];
            plan_add(p->out, adopt ? LEASE_PLAN_ADOPT : LEASE_PLAN_RELEASE, l->key, l);
            if (adopt) p->state[i] = ROW_GAINED;
        } else if (!l->owner || strcmp(l->owner, lc->asked) || !plan_is(l->pending_owner, me)) {
            plan_add(p->out, LEASE_PLAN_FORGET, l->key, l);
        } else if (!in->taking || !p->usable[i]) {
            plan_add(p->out, LEASE_PLAN_WITHDRAW, l->key, l);
        } else if (p->expired[i] || in->now_ms - lc->asked_ms > in->lease_duration_ms) {
            plan_add(p->out, LEASE_PLAN_STEAL, l->key, l);
            p->state[i] = ROW_GAINED;
        } else {
            p->state[i] = ROW_ASKED;
        }
    }
}

/* Live workers other than this one, with their counts, sorted by id. */
static worker_load_t *plan_loads(plan_ctx_t *p, size_t *nloads)
{
    const lease_plan_input_t *in = p->in;
    const char **owners = xcalloc(p->n ? p->n : 1, sizeof *owners);
    size_t m = 0;
    for (size_t i = 0; i < p->n; i++) {
        const lease_t *l = &in->all->leases[i];
        if (p->usable[i] && p->state[i] == ROW_NONE && l->owner && !p->expired[i]) owners[m++] = l->owner;
    }
    qsort(owners, m, sizeof *owners, plan_str_cmp);
    worker_load_t *loads = xcalloc(m ? m : 1, sizeof *loads); /* freed by plan_balance */
    size_t k = 0;
    for (size_t i = 0; i < m; i++) {
        if (k && !strcmp(loads[k - 1].id, owners[i])) loads[k - 1].count++;
        else loads[k++] = (worker_load_t){owners[i], 1};
    }
    free(owners);
    *nloads = k;
    return loads;
}

static void plan_balance(plan_ctx_t *p)
{
    const lease_plan_input_t *in = p->in;
    lease_plan_t *out = p->out;
    size_t mine = 0, asked = 0;
    for (size_t i = 0; i < p->n; i++) {
        if (!p->usable[i]) continue;
        out->eligible++;
        if (p->state[i] == ROW_HELD || p->state[i] == ROW_ASKED || p->state[i] == ROW_GAINED) mine++;
        if (p->state[i] == ROW_ASKED) asked++;
    }
    size_t nloads;
    worker_load_t *loads = plan_loads(p, &nloads);
    out->workers = nloads + 1;
    out->target = lease_plan_target(out->eligible, out->workers);
    out->mine = mine;
    size_t target = out->target;
    /* more than enough (expired leases came free meanwhile): withdraw requests */
    for (size_t i = 0; i < p->n && mine > target && asked > 0; i++) {
        if (p->state[i] != ROW_ASKED) continue;
        plan_add(out, LEASE_PLAN_WITHDRAW, in->all->leases[i].key, &in->all->leases[i]);
        p->state[i] = ROW_DONE;
        mine--;
        asked--;
    }
    size_t want = target > mine ? target - mine : 0;

    /* Takes: unowned or expired rows, from this worker's place in the ranking
     * (the deficits of the live workers whose ids sort before this one). */
    size_t *cand = xcalloc(p->n ? p->n : 1, sizeof *cand), ncand = 0, offset = 0;
    for (size_t i = 0; i < p->n; i++)
        if (p->usable[i] && p->state[i] == ROW_NONE && (!in->all->leases[i].owner || p->expired[i])) cand[ncand++] = i;
    if (want > 0 && ncand > 0) {
        for (size_t k = 0; k < nloads && strcmp(loads[k].id, in->worker_id) < 0; k++)
            offset += loads[k].count < target ? target - loads[k].count : 0;
        size_t take = want < ncand ? want : ncand;
        for (size_t j = 0; j < take; j++) {
            size_t i = cand[(offset + j) % ncand];
            plan_add(out, LEASE_PLAN_TAKE, in->all->leases[i].key, &in->all->leases[i]);
            p->state[i] = ROW_GAINED;
        }
        want -= take;
    }
    free(cand);

    /* Asks: from the most loaded worker, at most max_steal outstanding. */
    size_t room = in->max_steal > 0 && (size_t)in->max_steal > asked ? (size_t)in->max_steal - asked : 0;
    const worker_load_t *most = NULL;
    for (size_t k = 0; k < nloads; k++)
        if (!most || loads[k].count > most->count) most = &loads[k];
    /* only from a worker above the target, or at it when this one is two or
     * more below: this converges without leases going back and forth */
    if (want > 0 && room > 0 && most && (most->count > target || (most->count == target && want >= 2))) {
        size_t ask = want < room ? want : room;
        for (size_t i = 0; i < p->n && ask > 0; i++) {
            const lease_t *l = &in->all->leases[i];
            if (!p->usable[i] || p->state[i] != ROW_NONE || p->expired[i] || !plan_is(l->owner, most->id) ||
                l->pending_owner)
                continue;
            plan_add(out, LEASE_PLAN_ASK, l->key, l);
            p->state[i] = ROW_ASKED;
            ask--;
        }
    }
    free(loads);
}

void lease_plan_run(const lease_plan_input_t *in, lease_plan_t *out)
{
    out->n = 0;
    out->eligible = out->workers = out->target = out->mine = 0;
    plan_ctx_t p = {.in = in, .out = out, .n = in->all->count};
    size_t n = p.n ? p.n : 1;
    p.local = xcalloc(in->nlocal ? in->nlocal : 1, sizeof *p.local);
    for (size_t k = 0; k < in->nlocal; k++) p.local[k] = &in->local[k];
    qsort(p.local, in->nlocal, sizeof *p.local, plan_local_cmp);
    unsigned char *matched = xcalloc(in->nlocal ? in->nlocal : 1, 1);
    p.rowloc = xcalloc(n, sizeof *p.rowloc);
    p.usable = xcalloc(n, 1);
    p.expired = xcalloc(n, 1);
    p.state = xcalloc(n, 1);
    for (size_t i = 0; i < p.n; i++) {
        const lease_t *l = &in->all->leases[i];
        const lease_obs_t *o = i < in->obs->n ? &in->obs->v[i] : NULL;
        if (l->invalid) {
            if (o && !o->reported) plan_add(out, LEASE_PLAN_REPORT_INVALID, l->key, l);
            continue; /* never anything else: rowloc stays NULL, usable 0 */
        }
        p.rowloc[i] = plan_local_find(&p, l->key, matched);
        p.expired[i] = l->owner && ((o && lease_obs_expired(o, in->now_ms, in->lease_duration_ms)) ||
                                    plan_dead(in, l->owner));
        p.usable[i] = strcmp(l->checkpoint, SEQNUM_SHARD_END) && in->eligible(in->ud, l, in->all);
    }
    plan_bookkeeping(&p);
    /* requests for rows that vanished */
    for (size_t k = 0; k < in->nlocal; k++)
        if (!matched[k] && p.local[k]->kind == LEASE_LOCAL_ASKED) plan_add(out, LEASE_PLAN_FORGET, p.local[k]->key, NULL);
    if (in->taking) plan_balance(&p);
    free(matched);
    free(p.local);
    free(p.rowloc);
    free(p.usable);
    free(p.expired);
    free(p.state);
}
