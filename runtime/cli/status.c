#include "status.h"

#include <cjson/cJSON.h>
#include <ev.h>
#include <string.h>
#include <unistd.h>

#include "worker/backends.h"
#include "base/buf.h"
#include "base/log.h"
#include "record/seqnum.h"
#include "worker/shardsync.h"
#include "base/xalloc.h"

typedef struct status_ctx {
    lease_list_t *leases;
    lease_status_t st;
    char err[1024];
    int done;
} status_ctx_t;

static void status_on_list(void *ud, lease_status_t st, const char *msg, lease_list_t *all)
{
    status_ctx_t *c = ud;
    c->st = st;
    c->leases = all;
    if (msg) snprintf(c->err, sizeof c->err, "%s", msg);
    c->done = 1;
}

/* The owner's own word (shardrunInfo) when it is there: processing,
 * retrying, idle, halted, ending... */
static const char *status_state(const config_t *cfg, const lease_t *l, const lease_list_t *all, cJSON *info)
{
    if (l->invalid) return "invalid";
    if (!strcmp(l->checkpoint, SEQNUM_SHARD_END)) return "finished";
    if (!shardsync_parent_rows_done(cfg, l, all)) return "waiting on parent";
    if (!l->owner) return "unowned";
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(info, "state");
    return cJSON_IsString(st) ? st->valuestring : "processing";
}

/* The facts the owner (or, for a lease nobody holds, its last owner) wrote:
 * counters are cumulative and outlive releases; what described the last
 * owner's moment (state, error, lag, retry) is left out once it let go. */
static cJSON *status_info(const lease_t *l)
{
    cJSON *info = l->info ? cJSON_Parse(l->info) : NULL;
    if (!info || l->owner) return info;
    static const char *const momentary[] = {"state", "error", "attempt", "nextTryAtMs", "lastError", "millisBehind"};
    for (size_t i = 0; i < sizeof momentary / sizeof *momentary; i++)
        cJSON_DeleteItemFromObjectCaseSensitive(info, momentary[i]);
    return info;
}

static char *status_parents(const lease_t *l)
{
    buf_t b = BUF_INIT;
    for (size_t i = 0; i < l->nparents; i++) buf_printf(&b, "%s%s", i ? "," : "", l->parents[i]);
    if (!l->nparents) buf_append_str(&b, "-");
    return buf_detach(&b); /* freed by the caller */
}

int status_print(const config_t *cfg, int json, FILE *out)
{
    if (cfg->leases.type == BACKEND_LOCAL && access(cfg->leases.path, F_OK) != 0) {
        /* read-only: opening the store would create the file */
        fprintf(stderr, "shardrun: lease file %s does not exist: no worker has run with this config yet\n",
                cfg->leases.path);
        return 1;
    }
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    errbuf_t err;
    aws_client_t *aws = NULL;
    lease_store_t *store = NULL;
    if (backend_aws_new(cfg, loop, &aws, &err) || !(store = backend_lease_store_new(cfg, loop, aws, 0, &err))) {
        fprintf(stderr, "shardrun: %s\n", err.msg);
        aws_client_free(aws);
        ev_loop_destroy(loop);
        return 1;
    }
    status_ctx_t c = {0};
    store->ops->list(store, status_on_list, &c);
    while (!c.done) ev_run(loop, EVRUN_ONCE);
    source_t *src = backend_source_new(cfg, loop, aws, &err);
    int rc = 0;
    if (!src) {
        /* the leases are still worth showing; the lag column cannot be */
        fprintf(stderr, "shardrun: %s\n", err.msg);
        rc = 1;
    }
    if (c.st != LEASE_OK) {
        fprintf(stderr, "shardrun: cannot read leases: %s\n", c.err);
        rc = 1;
    } else if (json) {
        cJSON *arr = cJSON_CreateArray();
        for (size_t i = 0; i < c.leases->count; i++) {
            const lease_t *l = &c.leases->leases[i];
            const char *stream = shardsync_lease_stream(cfg, l);
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "stream", stream ? stream : "");
            cJSON_AddStringToObject(o, "shard", l->shard ? l->shard : "");
            cJSON_AddStringToObject(o, "leaseKey", l->key ? l->key : "");
            if (l->owner) cJSON_AddStringToObject(o, "owner", l->owner);
            else cJSON_AddNullToObject(o, "owner");
            cJSON_AddStringToObject(o, "checkpoint", l->checkpoint ? l->checkpoint : "");
            cJSON_AddNumberToObject(o, "checkpointSubSequenceNumber", (double)l->checkpoint_sub);
            cJSON_AddNumberToObject(o, "counter", (double)l->counter);
            cJSON *parents = cJSON_AddArrayToObject(o, "parents");
            for (size_t j = 0; j < l->nparents; j++) cJSON_AddItemToArray(parents, cJSON_CreateString(l->parents[j]));
            cJSON *info = status_info(l);
            cJSON_AddStringToObject(o, "state", status_state(cfg, l, c.leases, info));
            if (l->invalid) cJSON_AddStringToObject(o, "error", l->invalid);
            if (info) cJSON_AddItemToObject(o, "worker", info); /* the owner's counters, version, error */
            int64_t behind = src && stream && l->shard && !l->invalid && src->ops->records_behind
                                 ? src->ops->records_behind(src, stream, l->shard, l->checkpoint)
                                 : -1;
            if (behind >= 0) cJSON_AddNumberToObject(o, "recordsBehind", (double)behind);
            cJSON_AddItemToArray(arr, o);
        }
        char *s = cJSON_Print(arr);
        fprintf(out, "%s\n", s ? s : "[]");
        free(s);
        cJSON_Delete(arr);
    } else {
        fprintf(out, "%-16s %-22s %-36s %-22s %7s %-24s %-18s %s\n", "STREAM", "SHARD", "OWNER", "CHECKPOINT",
                "COUNTER", "PARENTS", "STATE", "BEHIND");
        for (size_t i = 0; i < c.leases->count; i++) {
            const lease_t *l = &c.leases->leases[i];
            const char *stream = shardsync_lease_stream(cfg, l);
            char *parents = status_parents(l);
            int64_t behind = src && stream && l->shard && !l->invalid && src->ops->records_behind
                                 ? src->ops->records_behind(src, stream, l->shard, l->checkpoint)
                                 : -1;
            char behind_s[32] = "-";
            if (behind >= 0) snprintf(behind_s, sizeof behind_s, "%lld", (long long)behind);
            cJSON *info = status_info(l);
            const cJSON *herr = cJSON_GetObjectItemCaseSensitive(info, "error");
            const char *error = l->invalid ? l->invalid : cJSON_IsString(herr) ? herr->valuestring : NULL;
            char first_line[160] = "";
            if (error) snprintf(first_line, sizeof first_line, "%.*s", (int)strcspn(error, "\n"), error);
            fprintf(out, "%-16s %-22s %-36s %-22s %7lld %-24s %-18s %s%s%s\n", stream ? stream : "?",
                    l->shard ? l->shard : "?", l->owner ? l->owner : "-", l->checkpoint ? l->checkpoint : "-",
                    (long long)l->counter, parents, status_state(cfg, l, c.leases, info), behind_s,
                    error ? "  error: " : "", first_line);
            cJSON_Delete(info);
            free(parents);
        }
    }
    lease_list_free(c.leases);
    source_destroy(src);
    lease_store_destroy(store);
    aws_client_free(aws);
    ev_loop_destroy(loop);
    return rc;
}
