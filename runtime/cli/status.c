#include "status.h"

#include <cjson/cJSON.h>
#include <ev.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/log.h"
#include "base/xalloc.h"
#include "leaselist.h"
#include "record/seqnum.h"
#include "worker/backends.h"
#include "worker/shardsync.h"

/* The owner's own word (shardrunInfo) when it is there: processing,
 * retrying, idle, halted, ending... */
const char *status_state(const config_t *cfg, const lease_t *l, const lease_list_t *all, const cJSON *info)
{
    if (l->invalid) return "invalid";
    if (l->checkpoint && !strcmp(l->checkpoint, SEQNUM_SHARD_END)) return "finished";
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
    static const char *const momentary[] = {"state",         "error",    "attempt",         "nextTryAtMs",
                                            "lastError",     "millisBehind", "emitsUnacknowledged",
                                            "emitBytes",     "outputError",  "checkpointWaitsForOutputs"};
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

/* One lease as the report shows it. */
typedef struct status_row {
    const lease_t *l;
    const char *stream;
    cJSON *info;               /* the owner's shardrunInfo, or NULL */
    const char *state;
    int64_t records_behind;    /* -1: unknown (Kinesis counts no records) */
    int64_t millis_behind;     /* the owner's last MillisBehindLatest, -1: unknown */
    char *parents;
    char checkpoint[32];       /* the table's form: long sequence numbers shortened */
    char behind[32];           /* the table's lag column */
} status_row_t;

static int status_row_cmp(const void *a, const void *b)
{
    const status_row_t *x = a, *y = b;
    int c = strcmp(x->stream ? x->stream : "", y->stream ? y->stream : "");
    return c ? c : strcmp(x->l->shard ? x->l->shard : "", y->l->shard ? y->l->shard : "");
}

/* 56-digit sequence numbers would push every column out: the table shows
 * their first and last digits (--json has them whole). */
static void status_short_seq(const char *seq, char *out, size_t n)
{
    size_t len = seq ? strlen(seq) : 0;
    if (!seq) snprintf(out, n, "-");
    else if (len <= 22) snprintf(out, n, "%s", seq);
    else snprintf(out, n, "%.9s..%s", seq, seq + len - 11);
}

static void status_fill_row(const config_t *cfg, source_t *src, const lease_list_t *all, const lease_t *l,
                            status_row_t *r)
{
    r->l = l;
    r->stream = shardsync_lease_stream(cfg, l);
    r->info = status_info(l);
    r->state = status_state(cfg, l, all, r->info);
    r->records_behind = src && r->stream && l->shard && !l->invalid && src->ops->records_behind
                            ? src->ops->records_behind(src, r->stream, l->shard, l->checkpoint)
                            : -1;
    const cJSON *mb = cJSON_GetObjectItemCaseSensitive(r->info, "millisBehind");
    r->millis_behind = cJSON_IsNumber(mb) && mb->valuedouble >= 0 ? (int64_t)mb->valuedouble : -1;
    r->parents = status_parents(l);
    status_short_seq(l->checkpoint, r->checkpoint, sizeof r->checkpoint);
    if (r->records_behind >= 0) snprintf(r->behind, sizeof r->behind, "%lld", (long long)r->records_behind);
    else if (r->millis_behind >= 0) snprintf(r->behind, sizeof r->behind, "%lldms", (long long)r->millis_behind);
    else snprintf(r->behind, sizeof r->behind, "-");
}

static void status_print_json(const status_row_t *rows, size_t n, FILE *out)
{
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; i < n; i++) {
        const status_row_t *r = &rows[i];
        const lease_t *l = r->l;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "stream", r->stream ? r->stream : "");
        cJSON_AddStringToObject(o, "shard", l->shard ? l->shard : "");
        cJSON_AddStringToObject(o, "leaseKey", l->key ? l->key : "");
        if (l->owner) cJSON_AddStringToObject(o, "owner", l->owner);
        else cJSON_AddNullToObject(o, "owner");
        cJSON_AddStringToObject(o, "checkpoint", l->checkpoint ? l->checkpoint : "");
        cJSON_AddNumberToObject(o, "checkpointSubSequenceNumber", (double)l->checkpoint_sub);
        cJSON_AddNumberToObject(o, "counter", (double)l->counter);
        cJSON *parents = cJSON_AddArrayToObject(o, "parents");
        for (size_t j = 0; j < l->nparents; j++) cJSON_AddItemToArray(parents, cJSON_CreateString(l->parents[j]));
        cJSON_AddStringToObject(o, "state", r->state);
        if (l->invalid) cJSON_AddStringToObject(o, "error", l->invalid);
        /* the table's BEHIND column: records when the source counts them, else the owner's lag */
        if (r->records_behind >= 0) cJSON_AddNumberToObject(o, "recordsBehind", (double)r->records_behind);
        if (r->millis_behind >= 0) cJSON_AddNumberToObject(o, "millisBehind", (double)r->millis_behind);
        if (r->info) cJSON_AddItemToObject(o, "worker", cJSON_Duplicate(r->info, 1));
        cJSON_AddItemToArray(arr, o);
    }
    char *s = cJSON_Print(arr);
    fprintf(out, "%s\n", s ? s : "[]");
    free(s);
    cJSON_Delete(arr);
}

#define STATUS_COLS        8
#define STATUS_COUNTER_LEN 32

/* The table's cells of one row; the COUNTER cell is written into counter. */
static void status_cells(const status_row_t *r, char counter[STATUS_COUNTER_LEN], const char *cell[STATUS_COLS])
{
    snprintf(counter, STATUS_COUNTER_LEN, "%lld", (long long)r->l->counter);
    const char *c[STATUS_COLS] = {r->stream ? r->stream : "?", r->l->shard ? r->l->shard : "?",
                                  r->l->owner ? r->l->owner : "-", r->checkpoint, counter, r->parents,
                                  r->state, r->behind};
    memcpy(cell, c, sizeof c);
}

static void status_print_table(const status_row_t *rows, size_t n, FILE *out)
{
    static const char *const head[STATUS_COLS] = {"STREAM", "SHARD", "OWNER", "CHECKPOINT", "COUNTER", "PARENTS",
                                                  "STATE", "BEHIND"};
    size_t width[STATUS_COLS];
    char counter[STATUS_COUNTER_LEN];
    for (int k = 0; k < STATUS_COLS; k++) width[k] = strlen(head[k]);
    for (size_t i = 0; i < n; i++) {
        const status_row_t *r = &rows[i];
        const char *cell[STATUS_COLS];
        status_cells(r, counter, cell);
        for (int k = 0; k < STATUS_COLS; k++)
            if (strlen(cell[k]) > width[k]) width[k] = strlen(cell[k]);
    }
    for (int k = 0; k < STATUS_COLS; k++)
        fprintf(out, k == 4 ? "%*s%s" : "%-*s%s", (int)width[k], head[k], k + 1 < STATUS_COLS ? "  " : "\n");
    for (size_t i = 0; i < n; i++) {
        const status_row_t *r = &rows[i];
        const char *cell[STATUS_COLS];
        status_cells(r, counter, cell);
        for (int k = 0; k < STATUS_COLS; k++)
            fprintf(out, k == 4 ? "%*s%s" : "%-*s%s", k + 1 < STATUS_COLS ? (int)width[k] : 0, cell[k],
                    k + 1 < STATUS_COLS ? "  " : "");
        const cJSON *herr = cJSON_GetObjectItemCaseSensitive(r->info, "error");
        const char *error = r->l->invalid ? r->l->invalid : cJSON_IsString(herr) ? herr->valuestring : NULL;
        if (error) fprintf(out, "  error: %.*s", (int)strcspn(error, "\n"), error);
        fputc('\n', out);
    }
}

int status_print(const config_t *cfg, int json, FILE *out)
{
    if (cfg->leases.type == BACKEND_LOCAL && access(cfg->leases.path, F_OK) != 0) {
        /* read-only: opening the store would create the file; no file, no leases */
        fprintf(stderr, "shardrun: no lease file %s yet: no worker has run with this config\n", cfg->leases.path);
        if (json) status_print_json(NULL, 0, out);
        else status_print_table(NULL, 0, out);
        return 0;
    }
    leaselist_conn_t conn;
    if (leaselist_connect(cfg, &conn)) return 1;
    leaselist_t c;
    int listed = leaselist_read(conn.loop, conn.store, 0, NULL, &c) == 0;
    errbuf_t err;
    source_t *src = backend_source_new(cfg, conn.loop, conn.aws, &err);
    int rc = 0;
    if (!src) {
        /* the leases are still worth showing; the lag column cannot be */
        fprintf(stderr, "shardrun: %s\n", err.msg);
        rc = 1;
    }
    if (!listed) {
        fprintf(stderr, "shardrun: cannot read leases: %s\n", c.err);
        rc = 1;
    } else {
        size_t n = c.leases->count;
        status_row_t *rows = xcalloc(n ? n : 1, sizeof *rows); /* freed below */
        for (size_t i = 0; i < n; i++) status_fill_row(cfg, src, c.leases, &c.leases->leases[i], &rows[i]);
        qsort(rows, n, sizeof *rows, status_row_cmp);
        if (json) status_print_json(rows, n, out);
        else status_print_table(rows, n, out);
        for (size_t i = 0; i < n; i++) {
            cJSON_Delete(rows[i].info);
            free(rows[i].parents);
        }
        free(rows);
    }
    lease_list_free(c.leases);
    source_destroy(src);
    leaselist_disconnect(&conn);
    return rc;
}
