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
}

void lease_list_free(lease_list_t *l)
{
    if (!l) return;
    for (size_t i = 0; i < l->count; i++) lease_clear(&l->leases[i]);
    free(l->leases);
    free(l);
}

const lease_t *lease_list_find(const lease_list_t *l, const char *key)
{
    for (size_t i = 0; l && i < l->count; i++)
        if (l->leases[i].key && !strcmp(l->leases[i].key, key)) return &l->leases[i];
    return NULL;
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
