#include "lease.h"

#include <stdlib.h>
#include <string.h>

#include "base/xalloc.h"

static void lease_free_strv(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

static char **lease_dup_strv(char *const *v, size_t n)
{
    if (!n) return NULL;
    char **out = xcalloc(n, sizeof *out); /* owned by the lease */
    for (size_t i = 0; i < n; i++) out[i] = xstrdup(v[i]);
    return out;
}

void lease_clear(lease_t *l)
{
    free(l->key);
    free(l->stream);
    free(l->shard);
    free(l->owner);
    free(l->pending_owner);
    free(l->checkpoint);
    lease_free_strv(l->parents, l->nparents);
    lease_free_strv(l->children, l->nchildren);
    free(l->start_hash);
    free(l->end_hash);
    free(l->invalid);
    free(l->info);
    free(l->control);
    memset(l, 0, sizeof *l);
}

void lease_copy(lease_t *dst, const lease_t *src)
{
    dst->key = xstrdup(src->key);
    dst->stream = xstrdup(src->stream);
    dst->shard = xstrdup(src->shard);
    dst->owner = xstrdup(src->owner);
    dst->pending_owner = xstrdup(src->pending_owner);
    dst->counter = src->counter;
    dst->checkpoint = xstrdup(src->checkpoint);
    dst->checkpoint_sub = src->checkpoint_sub;
    dst->owner_switches = src->owner_switches;
    dst->parents = lease_dup_strv(src->parents, src->nparents);
    dst->nparents = src->nparents;
    dst->children = lease_dup_strv(src->children, src->nchildren);
    dst->nchildren = src->nchildren;
    dst->start_hash = xstrdup(src->start_hash);
    dst->end_hash = xstrdup(src->end_hash);
    dst->invalid = xstrdup(src->invalid);
    dst->info = xstrdup(src->info);
    dst->control = xstrdup(src->control);
}

void lease_list_free(lease_list_t *l)
{
    if (!l) return;
    for (size_t i = 0; i < l->count; i++) lease_clear(&l->leases[i]);
    free(l->leases);
    for (size_t i = 0; i < l->ndead; i++) free(l->dead[i]);
    free(l->dead);
    free(l);
}

/* Rows without a key (invalid) sort first. */
static int lease_key_cmp(const char *a, const char *b)
{
    if (!a || !b) return (a != NULL) - (b != NULL);
    return strcmp(a, b);
}

static int lease_row_cmp(const void *a, const void *b)
{
    return lease_key_cmp(((const lease_t *)a)->key, ((const lease_t *)b)->key);
}

void lease_list_sort(lease_list_t *l)
{
    if (l && l->count > 1) qsort(l->leases, l->count, sizeof *l->leases, lease_row_cmp);
}

const lease_t *lease_list_find(const lease_list_t *l, const char *key)
{
    size_t lo = 0, hi = l ? l->count : 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = lease_key_cmp(l->leases[mid].key, key);
        if (c == 0) return &l->leases[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

int lease_list_owner_dead(const lease_list_t *l, const char *owner)
{
    size_t lo = 0, hi = l && owner ? l->ndead : 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(l->dead[mid], owner);
        if (c == 0) return 1;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return 0;
}

void lease_apply_write(const lease_t *l, const lease_write_t *w, lease_t *out)
{
    lease_copy(out, l);
    switch (w->kind) {
    case LEASE_WRITE_CREATE:
    case LEASE_WRITE_REMOVE:
        return;
    case LEASE_WRITE_RENEW:
        break;
    case LEASE_WRITE_TAKE:
        xstrset(&out->owner, w->worker);
        xstrset(&out->pending_owner, NULL); /* a handoff request was for the previous owner */
        out->owner_switches++;
        break;
    case LEASE_WRITE_CHECKPOINT:
        xstrset(&out->checkpoint, w->seq);
        out->checkpoint_sub = w->sub;
        out->owner_switches = 0;
        break;
    case LEASE_WRITE_RELEASE:
        xstrset(&out->owner, NULL);
        xstrset(&out->pending_owner, NULL);
        break;
    case LEASE_WRITE_REQUEST_HANDOFF:
        xstrset(&out->pending_owner, w->worker);
        return; /* the counter does not move: the owner's renewals go on */
    case LEASE_WRITE_HANDOFF:
        free(out->owner);
        out->owner = out->pending_owner;
        out->pending_owner = NULL;
        out->owner_switches++;
        break;
    case LEASE_WRITE_CANCEL_HANDOFF:
        xstrset(&out->pending_owner, NULL);
        return;
    case LEASE_WRITE_CONTROL:
        xstrset(&out->control, w->control);
        return; /* the counter does not move: the owner's writes go on */
    }
    out->counter = l->counter + 1;
}

static int lease_str_eq(const char *a, const char *b)
{
    return a == b || (a && b && !strcmp(a, b));
}

int lease_write_allowed(const lease_t *stored, const lease_t *l, const lease_write_t *w)
{
    if (w->kind == LEASE_WRITE_CREATE) return stored == NULL;
    if (!stored) return 0;
    int held = stored->counter == l->counter && lease_str_eq(stored->owner, l->owner);
    switch (w->kind) {
    case LEASE_WRITE_RENEW:
    case LEASE_WRITE_TAKE:
    case LEASE_WRITE_CHECKPOINT:
    case LEASE_WRITE_RELEASE:
        return held;
    case LEASE_WRITE_REQUEST_HANDOFF:
        return held && !stored->pending_owner;
    case LEASE_WRITE_HANDOFF:
        return held && l->pending_owner && lease_str_eq(stored->pending_owner, l->pending_owner);
    case LEASE_WRITE_CANCEL_HANDOFF:
        return stored->pending_owner && lease_str_eq(stored->pending_owner, w->worker);
    case LEASE_WRITE_REMOVE:
        return stored->counter == l->counter;
    case LEASE_WRITE_CONTROL:
        return 1; /* any row: a request to whoever owns it */
    case LEASE_WRITE_CREATE:
        break;
    }
    return 0;
}

const char *lease_status_name(lease_status_t s)
{
    switch (s) {
    case LEASE_OK: return "ok";
    case LEASE_CONFLICT: return "conflict";
    case LEASE_ERETRY: return "retry";
    case LEASE_EFATAL: return "fatal";
    }
    return "unknown";
}
