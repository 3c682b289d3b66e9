#include "resume.h"

#include <cjson/cJSON.h>
#include <ev.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/xalloc.h"
#include "leaselist.h"
#include "worker/shardsync.h"

/* The requests written so far. */
typedef struct resume_ctx {
    int pending;                 /* answers awaited */
    int failed;
} resume_ctx_t;

static void resume_on_written(void *ud, lease_status_t st, const char *msg, const lease_t *updated)
{
    resume_ctx_t *c = ud;
    c->pending--;
    if (st != LEASE_OK) {
        c->failed++;
        fprintf(stderr, "shardrun: cannot write the request: %s\n", msg ? msg : lease_status_name(st));
    }
}

/* The state the owner last wrote into the row ("halted", ...), or NULL. */
static char *resume_owner_state(const lease_t *l)
{
    cJSON *info = l->owner && l->info ? cJSON_Parse(l->info) : NULL;
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(info, "state");
    char *out = cJSON_IsString(st) ? xstrdup(st->valuestring) : NULL; /* the caller's */
    cJSON_Delete(info);
    return out;
}

static char *resume_control(int skip)
{
    char host[256] = "localhost", json[512];
    if (gethostname(host, sizeof host - 1) != 0) snprintf(host, sizeof host, "localhost");
    const char *user = getenv("USER");
    /* a new id each time: the owner acts on a request once, and on a new one again */
    snprintf(json, sizeof json, "{\"id\":\"%lld-%d\",\"action\":\"%s\",\"by\":\"%s@%s\"}", (long long)clock_wall_ms(),
             (int)getpid(), skip ? "skip" : "resume", user && *user ? user : "shardrun", host);
    return xstrdup(json); /* the caller's */
}

int resume_request(const config_t *cfg, const char *stream, const char *shard, int skip, FILE *out)
{
    leaselist_conn_t conn;
    if (leaselist_connect(cfg, &conn)) return 1;
    leaselist_t list;
    resume_ctx_t c = {0};
    int asked = 0, rc = 1;
    if (leaselist_read(conn.loop, conn.store, 0, NULL, &list)) {
        fprintf(stderr, "shardrun: cannot read leases: %s\n", list.err);
    } else {
        char *control = resume_control(skip);
        for (size_t i = 0; i < list.leases->count; i++) {
            const lease_t *l = &list.leases->leases[i];
            const char *ls = shardsync_lease_stream(cfg, l);
            if (l->invalid || !ls || strcmp(ls, stream) || (shard && strcmp(l->shard, shard))) continue;
            char *state = resume_owner_state(l);
            int halted = state && !strcmp(state, "halted");
            if (!shard && !halted) { /* the stream's halted shards only */
                free(state);
                continue;
            }
            fprintf(out, "%s %s/%s owner=%s state=%s: %s\n", skip ? "resume --skip" : "resume", stream, l->shard,
                    l->owner ? l->owner : "-", state ? state : "unowned",
                    l->owner ? "asked; the owner acts at its next lease scan"
                             : "asked; nobody holds the lease, the next owner starts afresh anyway");
            free(state);
            c.pending++;
            conn.store->ops->control(conn.store, l, control, resume_on_written, &c);
            asked++;
        }
        free(control);
        while (c.pending) ev_run(conn.loop, EVRUN_ONCE);
        if (!asked)
            fprintf(stderr, "shardrun: %s\n", shard ? "no such shard in the lease table"
                                                   : "no halted shard of that stream in the lease table");
        rc = asked && !c.failed ? 0 : 1;
    }
    lease_list_free(list.leases);
    leaselist_disconnect(&conn);
    return rc;
}
