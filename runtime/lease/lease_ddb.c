#include "lease_ddb.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aws/awsjson.h"
#include "base/xalloc.h"
#include "record/seqnum.h"

static void ddbj_why(char *why, size_t n, const char *name, const char *what)
{
    if (!*why) snprintf(why, n, "%s %s", name, what);
}

static char *ddbj_attr_s(const cJSON *item, const char *name, char *why, size_t n)
{
    int bad = 0;
    const cJSON *v = awsjson_ddb_get(item, name, "S", &bad);
    if (bad) ddbj_why(why, n, name, "is not a string (S)");
    return v ? xstrdup(v->valuestring) : NULL;
}

static int64_t ddbj_attr_n(const cJSON *item, const char *name, int required, char *why, size_t n)
{
    int bad = 0;
    int64_t out = 0;
    const cJSON *v = awsjson_ddb_get(item, name, "N", &bad);
    if (bad || (v && awsjson_parse_i64(v->valuestring, &out))) ddbj_why(why, n, name, "is not an integer (N)");
    else if (!v && required) ddbj_why(why, n, name, "is missing");
    return out;
}

static void ddbj_attr_ss(const cJSON *item, const char *name, char ***out, size_t *count, char *why, size_t n)
{
    int bad = 0;
    const cJSON *v = awsjson_ddb_get(item, name, "SS", &bad);
    *out = NULL;
    *count = 0;
    if (bad) ddbj_why(why, n, name, "is not a string set (SS)");
    if (!v) return;
    size_t c = (size_t)cJSON_GetArraySize(v), i = 0;
    if (!c) return;
    char **ids = xcalloc(c, sizeof *ids); /* owned by the lease */
    const cJSON *e;
    cJSON_ArrayForEach(e, v) {
        if (!cJSON_IsString(e) || !*e->valuestring) {
            ddbj_why(why, n, name, "holds something other than shard ids");
            continue;
        }
        ids[i++] = xstrdup(e->valuestring);
    }
    if (!i) {
        free(ids);
        return;
    }
    *out = ids;
    *count = i;
}

void lease_ddb_from_item(const cJSON *item, lease_t *l)
{
    char why[256] = "";
    if (!cJSON_IsObject(item)) {
        l->key = xstrdup("");
        l->invalid = xstrdup("item is not an attribute map");
        return;
    }
    l->key = ddbj_attr_s(item, "leaseKey", why, sizeof why);
    if (!l->key || !*l->key) ddbj_why(why, sizeof why, "leaseKey", "is missing or empty");
    if (!l->key) l->key = xstrdup("");
    l->owner = ddbj_attr_s(item, "leaseOwner", why, sizeof why);
    if (l->owner && !*l->owner) ddbj_why(why, sizeof why, "leaseOwner", "is empty");
    l->pending_owner = ddbj_attr_s(item, "pendingOwner", why, sizeof why);
    l->counter = ddbj_attr_n(item, "leaseCounter", 1, why, sizeof why);
    l->checkpoint = ddbj_attr_s(item, "checkpoint", why, sizeof why);
    if (!l->checkpoint || (!seqnum_is_sentinel(l->checkpoint) && !seqnum_valid(l->checkpoint)))
        ddbj_why(why, sizeof why, "checkpoint", "is missing or not a sequence number");
    l->checkpoint_sub = ddbj_attr_n(item, "checkpointSubSequenceNumber", 0, why, sizeof why);
    l->owner_switches = ddbj_attr_n(item, "ownerSwitchesSinceCheckpoint", 0, why, sizeof why);
    ddbj_attr_ss(item, "parentShardId", &l->parents, &l->nparents, why, sizeof why);
    ddbj_attr_ss(item, "childShardIds", &l->children, &l->nchildren, why, sizeof why);
    l->start_hash = ddbj_attr_s(item, "startingHashKey", why, sizeof why);
    l->end_hash = ddbj_attr_s(item, "endingHashKey", why, sizeof why);
    l->stream = ddbj_attr_s(item, "streamName", why, sizeof why);
    l->shard = ddbj_attr_s(item, "shardId", why, sizeof why);
    l->info = ddbj_attr_s(item, "shardrunInfo", why, sizeof why);
    l->control = ddbj_attr_s(item, "shardrunControl", why, sizeof why);
    if (!l->shard) {
        /* a KCL row: leaseKey is the shard id (or account:stream:epoch:shardId in multi-stream mode) */
        const char *colon = strrchr(l->key, ':');
        l->shard = xstrdup(colon ? colon + 1 : l->key);
    }
    if (*why) l->invalid = xstrdup(why);
}

awsjson_status_t lease_ddb_scan(const char *body, size_t len, lease_list_t *acc, char **last_key, errbuf_t *err)
{
    *last_key = NULL;
    cJSON *j = cJSON_ParseWithLength(body, len);
    if (!j) {
        errbuf_set(err, "Scan response is not JSON (%zu bytes)", len);
        return AWSJSON_ESYNTAX;
    }
    int bad = 0;
    const cJSON *items = awsjson_array(j, "Items", &bad);
    const cJSON *lek = awsjson_object(j, "LastEvaluatedKey", &bad);
    if (!cJSON_IsObject(j) || bad || !items) {
        errbuf_set(err, "Scan response: expected an object with Items (array) and LastEvaluatedKey (object)");
        cJSON_Delete(j);
        return AWSJSON_ESHAPE;
    }
    size_t n = (size_t)cJSON_GetArraySize(items);
    acc->leases = xrealloc(acc->leases, (acc->count + n + 1) * sizeof *acc->leases);
    const cJSON *it;
    cJSON_ArrayForEach(it, items) {
        lease_t *l = &acc->leases[acc->count++];
        memset(l, 0, sizeof *l);
        lease_ddb_from_item(it, l);
    }
    if (lek && cJSON_GetArraySize(lek) > 0) {
        *last_key = cJSON_PrintUnformatted(lek); /* the caller's, free() */
        if (!*last_key) xalloc_oom(0);
    }
    cJSON_Delete(j);
    return AWSJSON_OK;
}

cJSON *lease_ddb_item(const lease_t *l)
{
    cJSON *item = cJSON_CreateObject(); /* the caller's: cJSON_Delete */
    if (!item) xalloc_oom(0);
    awsjson_ddb_attr(item, "leaseKey", "S", l->key);
    awsjson_ddb_attr_n(item, "leaseCounter", l->counter);
    if (l->owner) awsjson_ddb_attr(item, "leaseOwner", "S", l->owner);
    if (l->pending_owner) awsjson_ddb_attr(item, "pendingOwner", "S", l->pending_owner);
    awsjson_ddb_attr(item, "checkpoint", "S", l->checkpoint ? l->checkpoint : SEQNUM_TRIM_HORIZON);
    awsjson_ddb_attr_n(item, "checkpointSubSequenceNumber", l->checkpoint_sub);
    awsjson_ddb_attr_n(item, "ownerSwitchesSinceCheckpoint", l->owner_switches);
    if (l->nparents) cJSON_AddItemToObject(item, "parentShardId", awsjson_ddb_ss(l->parents, l->nparents));
    if (l->nchildren) cJSON_AddItemToObject(item, "childShardIds", awsjson_ddb_ss(l->children, l->nchildren));
    if (l->start_hash) awsjson_ddb_attr(item, "startingHashKey", "S", l->start_hash);
    if (l->end_hash) awsjson_ddb_attr(item, "endingHashKey", "S", l->end_hash);
    if (l->stream) awsjson_ddb_attr(item, "streamName", "S", l->stream);
    if (l->shard) awsjson_ddb_attr(item, "shardId", "S", l->shard);
    if (l->info) awsjson_ddb_attr(item, "shardrunInfo", "S", l->info);
    if (l->control) awsjson_ddb_attr(item, "shardrunControl", "S", l->control);
    return item;
}
