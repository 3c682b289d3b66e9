#include "lease_dynamodb.h"

#include <cjson/cJSON.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aws/awsjson.h"
#include "aws/client.h"
#include "base/log.h"
#include "record/seqnum.h"
#include "base/xalloc.h"
#include "lease_ddb.h"

#define DDB_TARGET "DynamoDB_20120810."
#define DDB_JSON "1.0"

typedef enum { TABLE_UNKNOWN, TABLE_CHECKING, TABLE_READY } ddb_table_state_t;
typedef enum { TOP_DESCRIBE, TOP_CREATE } ddb_table_op_t;

typedef struct ddb_store ddb_store_t;

/* One lease operation from the interface call until its callback. Owned by
 * the store's list; freed after the callback, or by destroy (without one). */
typedef struct ddb_req {
    ddb_store_t *ds;
    struct ddb_req *next, *prev;
    int is_list;
    void *cb, *ud;
    const char *op;             /* "UpdateItem", for messages */
    char *body;
    int conflict_is_exists;     /* create: the failed condition means "exists already" */
    lease_t row;                /* the row as written, for the callback */
    lease_list_t *list;         /* Scan pages so far */
    aws_client_req_t *http;
    int queued;                 /* waiting for the table */
    ev_timer timer;             /* delivers an early failure on a later turn */
    ev_timer deadline;          /* a write's budget (retries included) ran out */
    lease_status_t st;
    errbuf_t err;
} ddb_req_t;

struct ddb_store {
    lease_store_t base;
    aws_client_t *aws;          /* shared, not owned */
    aws_endpoint_t ep;
    char *table;
    int create_table;           /* a missing table is created (a worker), or an error (status) */
    ddb_table_state_t table_state;
    int missing_told;           /* lease_table_missing logged: status --watch asks every second */
    ddb_table_op_t table_op;
    aws_client_req_t *table_http;
    ev_timer table_timer;       /* DescribeTable again while the table is being created */
    ddb_req_t *reqs;
    int64_t write_budget_ms;    /* 0: none */
};

static void ddb_send(ddb_req_t *r);
static void ddb_table_check(ddb_store_t *ds);

/* ---- requests --------------------------------------------------------------- */

/* l and w (both NULL for a scan): the row as written (lease_apply_write) is
 * what the callback gets on success. */
static ddb_req_t *ddb_req_new(ddb_store_t *ds, int is_list, const char *op, void *cb, void *ud, const lease_t *l,
                              const lease_write_t *w)
{
    ddb_req_t *r = xcalloc(1, sizeof *r); /* freed by ddb_req_free */
    r->ds = ds;
    r->is_list = is_list;
    r->op = op;
    r->cb = cb;
    r->ud = ud;
    if (l && w) lease_apply_write(l, w, &r->row);
    r->next = ds->reqs;
    if (ds->reqs) ds->reqs->prev = r;
    ds->reqs = r;
    return r;
}

static void ddb_req_free(ddb_req_t *r)
{
    ddb_store_t *ds = r->ds;
    ev_timer_stop(ds->base.loop, &r->timer);
    ev_timer_stop(ds->base.loop, &r->deadline);
    if (r->http) aws_client_cancel(ds->aws, r->http);
    if (r->prev) r->prev->next = r->next;
    else ds->reqs = r->next;
    if (r->next) r->next->prev = r->prev;
    lease_clear(&r->row);
    lease_list_free(r->list);
    free(r->body);
    free(r);
}

/* Runs the callback with r->st (and the row or list on success), then frees r. */
static void ddb_deliver(ddb_req_t *r)
{
    const char *msg = r->st ? r->err.msg : NULL;
    if (r->is_list) {
        lease_list_t *l = r->st == LEASE_OK ? r->list : NULL;
        if (l) r->list = NULL;
        ((lease_list_cb)r->cb)(r->ud, r->st, msg, l);
    } else {
        ((lease_write_cb)r->cb)(r->ud, r->st, msg, r->st == LEASE_OK ? &r->row : NULL);
    }
    ddb_req_free(r);
}

static void ddb_on_req_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    ddb_deliver(t->data);
}

static void ddb_fail_later(ddb_req_t *r, lease_status_t st)
{
    r->st = st;
    ev_timer_init(&r->timer, ddb_on_req_timer, 0.0, 0.0);
    r->timer.data = r;
    ev_timer_start(r->ds->base.loop, &r->timer);
}

static lease_status_t ddb_classify(const aws_http_response_t *resp)
{
    if (resp->error == AWS_HTTP_EHTTP && aws_client_is(resp, "ConditionalCheckFailedException")) return LEASE_CONFLICT;
    return aws_client_transient(resp) ? LEASE_ERETRY : LEASE_EFATAL;
}

static void ddb_scan_page(ddb_req_t *r, const aws_http_response_t *resp)
{
    char *last = NULL;
    if (!r->list) r->list = xcalloc(1, sizeof *r->list);
    awsjson_status_t st = lease_ddb_scan(resp->body, resp->body_len, r->list, &last, &r->err);
    if (st != AWSJSON_OK) {
        r->st = st == AWSJSON_ESYNTAX ? LEASE_ERETRY : LEASE_EFATAL;
        ddb_deliver(r);
        return;
    }
    if (!last) {
        lease_list_sort(r->list); /* the interface's order: Scan returns hash order */
        r->st = LEASE_OK;
        ddb_deliver(r);
        return;
    }
    /* the next page starts after the last key of this one */
    cJSON *q = cJSON_CreateObject(), *key = cJSON_Parse(last);
    free(last);
    if (!q || !key) xalloc_oom(0);
    cJSON_AddStringToObject(q, "TableName", r->ds->table);
    cJSON_AddTrueToObject(q, "ConsistentRead");
    cJSON_AddItemToObject(q, "ExclusiveStartKey", key);
    free(r->body);
    r->body = cJSON_PrintUnformatted(q);
    cJSON_Delete(q);
    if (!r->body) xalloc_oom(0);
    ddb_send(r);
}

static void ddb_http_done(void *ud, const aws_http_response_t *resp)
{
    ddb_req_t *r = ud;
    r->http = NULL;
    if (resp->error != AWS_HTTP_OK) {
        char what[768];
        r->st = ddb_classify(resp);
        if (r->st == LEASE_CONFLICT)
            errbuf_set(&r->err, "lease %s: %s", r->row.key ? r->row.key : "?",
                       r->conflict_is_exists ? "lease exists already" : "lease changed (owner or counter moved)");
        else
            errbuf_set(&r->err, "lease table %s: %s%s%s: %s", r->ds->table, r->op, r->row.key ? " lease " : "",
                       r->row.key ? r->row.key : "", aws_client_describe(resp, what, sizeof what));
        ddb_deliver(r);
        return;
    }
    if (r->is_list) {
        ddb_scan_page(r, resp);
        return;
    }
    r->st = LEASE_OK;
    ddb_deliver(r);
}

/* A write that has not answered within its budget: the lease it renews is
 * about to expire anyway, and the next write must not wait behind this one. */
static void ddb_on_deadline(struct ev_loop *loop, ev_timer *t, int revents)
{
    ddb_req_t *r = t->data;
    if (r->http) aws_client_cancel(r->ds->aws, r->http);
    r->http = NULL;
    r->queued = 0;
    r->st = LEASE_ERETRY;
    errbuf_set(&r->err, "lease table %s: %s lease %s: no answer within %lld ms (the lease write budget)",
               r->ds->table, r->op, r->row.key ? r->row.key : "?", (long long)r->ds->write_budget_ms);
    ddb_deliver(r);
}

static void ddb_send(ddb_req_t *r)
{
    ddb_store_t *ds = r->ds;
    long attempt_ms = LEASE_DYNAMODB_TIMEOUT_MS;
    if (!r->is_list && ds->write_budget_ms > 0) {
        attempt_ms = (long)(ds->write_budget_ms / 2); /* room for one retry within the budget */
        if (!ev_is_active(&r->deadline)) {
            ev_timer_init(&r->deadline, ddb_on_deadline, (double)ds->write_budget_ms / 1000.0, 0.0);
            r->deadline.data = r;
            ev_timer_start(ds->base.loop, &r->deadline);
        }
    }
    if (ds->table_state != TABLE_READY) {
        r->queued = 1;
        if (ds->table_state == TABLE_UNKNOWN) ddb_table_check(ds);
        return;
    }
    char target[64];
    snprintf(target, sizeof target, DDB_TARGET "%s", r->op);
    r->http = aws_client_call(ds->aws, &ds->ep, target, DDB_JSON, r->body, attempt_ms, ddb_http_done, r);
    if (!r->http) {
        errbuf_set(&r->err, "lease table %s: %s: invalid request (endpoint %s)", ds->table, r->op, ds->ep.url);
        ddb_fail_later(r, LEASE_EFATAL);
    }
}

/* ---- the table: describe, create, wait until ACTIVE ------------------------- */

/* Sends or fails every queued request once the table's fate is known. */
static void ddb_release_queue(ddb_store_t *ds, lease_status_t st, const char *why)
{
    ddb_req_t *next;
    for (ddb_req_t *r = ds->reqs; r; r = next) {
        next = r->next;
        if (!r->queued) continue;
        r->queued = 0;
        if (st == LEASE_OK) {
            ddb_send(r);
        } else {
            errbuf_set(&r->err, "%s", why);
            r->st = st;
            ddb_deliver(r);
        }
    }
}

/* The table is missing and may not be created: listings answer empty, writes fail. */
static void ddb_release_queue_missing(ddb_store_t *ds, const char *why)
{
    ddb_req_t *next;
    for (ddb_req_t *r = ds->reqs; r; r = next) {
        next = r->next;
        if (!r->queued) continue;
        r->queued = 0;
        if (r->is_list) {
            if (!r->list) r->list = xcalloc(1, sizeof *r->list); /* handed to the callback */
            r->st = LEASE_OK;
        } else {
            errbuf_set(&r->err, "%s", why);
            r->st = LEASE_EFATAL;
        }
        ddb_deliver(r);
    }
}

static void ddb_on_table_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    ddb_table_check(t->data);
}

static void ddb_table_poll(ddb_store_t *ds)
{
    ev_timer_set(&ds->table_timer, LEASE_DYNAMODB_TABLE_POLL_MS / 1000.0, 0.0);
    ev_timer_start(ds->base.loop, &ds->table_timer);
}

static void ddb_table_send(ddb_store_t *ds, ddb_table_op_t op, cJSON *q);

static void ddb_table_create(ddb_store_t *ds)
{
    cJSON *q = cJSON_CreateObject();
    cJSON_AddStringToObject(q, "TableName", ds->table);
    cJSON *defs = cJSON_AddArrayToObject(q, "AttributeDefinitions"), *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "AttributeName", "leaseKey");
    cJSON_AddStringToObject(d, "AttributeType", "S");
    cJSON_AddItemToArray(defs, d);
    cJSON *ks = cJSON_AddArrayToObject(q, "KeySchema"), *k = cJSON_CreateObject();
    cJSON_AddStringToObject(k, "AttributeName", "leaseKey");
    cJSON_AddStringToObject(k, "KeyType", "HASH");
    cJSON_AddItemToArray(ks, k);
    cJSON_AddStringToObject(q, "BillingMode", "PAY_PER_REQUEST");
    ddb_table_send(ds, TOP_CREATE, q);
}

static void ddb_table_done(void *ud, const aws_http_response_t *resp)
{
    ddb_store_t *ds = ud;
    ds->table_http = NULL;
    char what[768], why[1024];
    if (ds->table_op == TOP_DESCRIBE && resp->error == AWS_HTTP_OK) {
        cJSON *j = cJSON_ParseWithLength(resp->body, resp->body_len);
        int bad = 0;
        const char *status = awsjson_str(awsjson_object(j, "Table", &bad), "TableStatus", &bad);
        int active = status && !strcmp(status, "ACTIVE");
        cJSON_Delete(j);
        if (active) {
            ds->table_state = TABLE_READY;
            ddb_release_queue(ds, LEASE_OK, NULL);
        } else {
            ddb_table_poll(ds); /* CREATING (or an answer we cannot read): ask again */
        }
        return;
    }
    if (ds->table_op == TOP_DESCRIBE && aws_client_is(resp, "ResourceNotFoundException")) {
        if (!ds->create_table) {
            /* a read-only user (status) never creates: a missing table is an
             * answer, an empty one to a listing (no table, no leases) */
            ds->table_state = TABLE_UNKNOWN;
            snprintf(why, sizeof why, "lease table %s does not exist (region %s, endpoint %s): no worker has run "
                     "with this table yet, or leases.table (default: application) is mistyped", ds->table,
                     ds->ep.region, ds->ep.url);
            if (!ds->missing_told)
                log_warn("lease_table_missing", "table=%s region=%s endpoint=%s created=no note=\"no worker has run "
                         "with it yet, or leases.table (default: application) is mistyped\"", ds->table,
                         ds->ep.region, ds->ep.url);
            ds->missing_told = 1;
            ddb_release_queue_missing(ds, why);
            return;
        }
        log_info("lease_table_create", "table=%s billing=PAY_PER_REQUEST", ds->table);
        ddb_table_create(ds);
        return;
    }
    if (aws_client_foreign(resp)) {
        ds->table_state = TABLE_UNKNOWN;
        snprintf(why, sizeof why, "lease table %s: the endpoint %s does not speak the DynamoDB API (%s): check "
                 "leases.endpoint", ds->table, ds->ep.url, aws_client_describe(resp, what, sizeof what));
        ddb_release_queue(ds, LEASE_EFATAL, why);
        return;
    }
    if (ds->table_op == TOP_CREATE && (resp->error == AWS_HTTP_OK || aws_client_is(resp, "ResourceInUseException"))) {
        ddb_table_poll(ds); /* created (by us or a peer): wait until ACTIVE */
        return;
    }
    ds->table_state = TABLE_UNKNOWN; /* the next request tries again */
    snprintf(why, sizeof why, "lease table %s: %s: %s", ds->table,
             ds->table_op == TOP_DESCRIBE ? "DescribeTable" : "CreateTable",
             aws_client_describe(resp, what, sizeof what));
    ddb_release_queue(ds, aws_client_transient(resp) ? LEASE_ERETRY : LEASE_EFATAL, why);
}

static void ddb_table_send(ddb_store_t *ds, ddb_table_op_t op, cJSON *q)
{
    char *body = cJSON_PrintUnformatted(q);
    cJSON_Delete(q);
    if (!body) xalloc_oom(0);
    ds->table_op = op;
    ds->table_http = aws_client_call(ds->aws, &ds->ep, op == TOP_DESCRIBE ? DDB_TARGET "DescribeTable" : DDB_TARGET
                                     "CreateTable", DDB_JSON, body, LEASE_DYNAMODB_TIMEOUT_MS, ddb_table_done, ds);
    free(body);
    if (!ds->table_http) {
        char why[512];
        ds->table_state = TABLE_UNKNOWN;
        snprintf(why, sizeof why, "lease table %s: invalid request (endpoint %s)", ds->table, ds->ep.url);
        ddb_release_queue(ds, LEASE_EFATAL, why); /* never inside the interface call: see ddb_table_check */
    }
}

static void ddb_table_check(ddb_store_t *ds)
{
    if (ds->table_http) return;
    if (ds->table_state == TABLE_UNKNOWN) {
        /* from inside an interface call: start on the next turn, so a failure
         * found at once is still delivered later */
        ds->table_state = TABLE_CHECKING;
        ev_timer_set(&ds->table_timer, 0.0, 0.0);
        ev_timer_start(ds->base.loop, &ds->table_timer);
        return;
    }
    cJSON *q = cJSON_CreateObject();
    cJSON_AddStringToObject(q, "TableName", ds->table);
    ddb_table_send(ds, TOP_DESCRIBE, q);
}

/* ---- request bodies ----------------------------------------------------------- */

/* {"TableName": t, "Key": {"leaseKey": {"S": key}}} plus empty name/value maps. */
static cJSON *ddb_keyed(ddb_store_t *ds, const char *key, cJSON **names, cJSON **values)
{
    cJSON *q = cJSON_CreateObject();
    if (!q) xalloc_oom(0);
    cJSON_AddStringToObject(q, "TableName", ds->table);
    cJSON *k = cJSON_AddObjectToObject(q, "Key"), *a = cJSON_AddObjectToObject(k, "leaseKey");
    cJSON_AddStringToObject(a, "S", key);
    *names = cJSON_AddObjectToObject(q, "ExpressionAttributeNames");
    if (values) *values = cJSON_AddObjectToObject(q, "ExpressionAttributeValues"); /* NULL: the call has none */
    return q;
}

static char *ddb_print(cJSON *q)
{
    char *s = cJSON_PrintUnformatted(q); /* owned by the request */
    cJSON_Delete(q);
    if (!s) xalloc_oom(0);
    return s;
}

/* The conditional UpdateItem behind renew, take, checkpoint and release:
 * `set` and `remove` are the extra SET and REMOVE clauses ("" for none);
 * leaseCounter := counter+1 is always set, and the condition is: counter and
 * owner still as in `l`. The caller has added its own names and values. */
static void ddb_update(ddb_store_t *ds, ddb_req_t *r, const lease_t *l, const char *set, const char *remove,
                       cJSON *q, cJSON *names, cJSON *values)
{
    char expr[512];
    snprintf(expr, sizeof expr, "SET #n = :nc%s%s%s%s", *set ? ", " : "", set, *remove ? " REMOVE " : "", remove);
    cJSON_AddStringToObject(q, "UpdateExpression", expr);
    cJSON_AddStringToObject(q, "ConditionExpression",
                            l->owner ? "#n = :c AND #o = :o" : "#n = :c AND attribute_not_exists(#o)");
    cJSON_AddStringToObject(names, "#n", "leaseCounter");
    cJSON_AddStringToObject(names, "#o", "leaseOwner");
    awsjson_ddb_attr_n(values, ":nc", l->counter + 1);
    awsjson_ddb_attr_n(values, ":c", l->counter);
    if (l->owner) awsjson_ddb_attr(values, ":o", "S", l->owner);
    r->body = ddb_print(q);
    ddb_send(r);
}

/* ---- the interface ------------------------------------------------------------ */

static void ddb_list(lease_store_t *s, lease_list_cb cb, void *ud)
{
    ddb_store_t *ds = (ddb_store_t *)s;
    ddb_req_t *r = ddb_req_new(ds, 1, "Scan", (void *)cb, ud, NULL, NULL);
    cJSON *q = cJSON_CreateObject();
    cJSON_AddStringToObject(q, "TableName", ds->table);
    cJSON_AddTrueToObject(q, "ConsistentRead");
    r->body = ddb_print(q);
    ddb_send(r);
}

static void ddb_create(lease_store_t *s, const lease_t *l, lease_write_cb cb, void *ud)
{
    ddb_store_t *ds = (ddb_store_t *)s;
    ddb_req_t *r = ddb_req_new(ds, 0, "PutItem", (void *)cb, ud, l, &(lease_write_t){.kind = LEASE_WRITE_CREATE});
    r->conflict_is_exists = 1;
    cJSON *q = cJSON_CreateObject();
    cJSON_AddStringToObject(q, "TableName", ds->table);
    cJSON_AddItemToObject(q, "Item", lease_ddb_item(l));
    cJSON_AddStringToObject(q, "ConditionExpression", "attribute_not_exists(#k)");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(q, "ExpressionAttributeNames"), "#k", "leaseKey");
    r->body = ddb_print(q);
    ddb_send(r);
}

/* The owner's runtime facts (status, the next owner's counters) ride along
 * with renewals, releases and handoffs: the SET part for them, or "". */
static const char *ddb_info(const lease_t *l, cJSON *names, cJSON *values)
{
    if (!l->info) return "";
    cJSON_AddStringToObject(names, "#in", "shardrunInfo");
    awsjson_ddb_attr(values, ":in", "S", l->info);
    return "#in = :in";
}

static void ddb_renew(lease_store_t *s, const lease_t *l, lease_write_cb cb, void *ud)
{
    ddb_store_t *ds = (ddb_store_t *)s;
    ddb_req_t *r = ddb_req_new(ds, 0, "UpdateItem", (void *)cb, ud, l, &(lease_write_t){.kind = LEASE_WRITE_RENEW});
    cJSON *names, *values, *q = ddb_keyed(ds, l->key, &names, &values);
    ddb_update(ds, r, l, ddb_info(l, names, values), "", q, names, values);
}

static void ddb_take(lease_store_t *s, const lease_t *l, const char *new_owner, lease_write_cb cb, void *ud)
{
    ddb_store_t *ds = (ddb_store_t *)s;
    ddb_req_t *r = ddb_req_new(ds, 0, "UpdateItem", (void *)cb, ud, l,
                               &(lease_write_t){.kind = LEASE_WRITE_TAKE, .worker = new_owner});
    cJSON *names, *values, *q = ddb_keyed(ds, l->key, &names, &values);
    cJSON_AddStringToObject(names, "#sw", "ownerSwitchesSinceCheckpoint");
    cJSON_AddStringToObject(names, "#po", "pendingOwner");
    awsjson_ddb_attr(values, ":new", "S", new_owner);
    awsjson_ddb_attr_n(values, ":zero", 0);
    awsjson_ddb_attr_n(values, ":one", 1);
    /* a handoff request was for the previous owner */
    ddb_update(ds, r, l, "#o = :new, #sw = if_not_exists(#sw, :zero) + :one", "#po", q, names, values);
}

static void ddb_checkpoint(lease_store_t *s, const lease_t *l, const char *seq, int64_t sub, lease_write_cb cb,
                           void *ud)
{
    ddb_store_t *ds = (ddb_store_t *)s;
    ddb_req_t *r = ddb_req_new(ds, 0, "UpdateItem", (void *)cb, ud, l,
                               &(lease_write_t){.kind = LEASE_WRITE_CHECKPOINT, .seq = seq, .sub = sub});
    cJSON *names, *values, *q = ddb_keyed(ds, l->key, &names, &values);
    cJSON_AddStringToObject(names, "#cp", "checkpoint");
    cJSON_AddStringToObject(names, "#cs", "checkpointSubSequenceNumber");
    cJSON_AddStringToObject(names, "#sw", "ownerSwitchesSinceCheckpoint");
    cJSON_AddStringToObject(names, "#pc", "pendingCheckpoint");
    cJSON_AddStringToObject(names, "#ps", "pendingCheckpointSubSequenceNumber");
    awsjson_ddb_attr(values, ":seq", "S", seq);
    awsjson_ddb_attr_n(values, ":sub", sub);
    awsjson_ddb_attr_n(values, ":zero", 0);
    /* a KCL's pending checkpoint (two-phase) is void once we checkpoint */
    ddb_update(ds, r, l, "#cp = :seq, #cs = :sub, #sw = :zero", "#pc, #ps", q, names, values);
}

static void ddb_release(lease_store_t *s, const lease_t *l, lease_write_cb cb, void *ud)
{
    ddb_store_t *ds = (ddb_store_t *)s;
    ddb_req_t *r = ddb_req_new(ds, 0, "UpdateItem", (void *)cb, ud, l, &(lease_write_t){.kind = LEASE_WRITE_RELEASE});
    cJSON *names, *values, *q = ddb_keyed(ds, l->key, &names, &values);
    cJSON_AddStringToObject(names, "#po", "pendingOwner");
    ddb_update(ds, r, l, ddb_info(l, names, values), "#o, #po", q, names, values);
}

/* The owner and counter condition of `l`, for writes that build their own expression. */
static void ddb_owner_cond(cJSON *names, cJSON *values, const lease_t *l, char *out, size_t n, const char *more)
{
    cJSON_AddStringToObject(names, "#n", "leaseCounter");
    cJSON_AddStringToObject(names, "#o", "leaseOwner");
    awsjson_ddb_attr_n(values, ":c", l->counter);
    if (l->owner) awsjson_ddb_attr(values, ":o", "S", l->owner);
    snprintf(out, n, "#n = :c AND %s AND %s", l->owner ? "#o = :o" : "attribute_not_exists(#o)", more);
}

static void ddb_request_handoff(lease_store_t *s, const lease_t *l, const char *requester, lease_write_cb cb,
                                void *ud)
{
    ddb_store_t *ds = (ddb_store_t *)s;
    ddb_req_t *r = ddb_req_new(ds, 0, "UpdateItem", (void *)cb, ud, l,
                               &(lease_write_t){.kind = LEASE_WRITE_REQUEST_HANDOFF, .worker = requester});
    cJSON *names, *values, *q = ddb_keyed(ds, l->key, &names, &values);
    char cond[256];
    cJSON_AddStringToObject(names, "#po", "pendingOwner");
    awsjson_ddb_attr(values, ":req", "S", requester);
    ddb_owner_cond(names, values, l, cond, sizeof cond, "attribute_not_exists(#po)");
    /* the counter does not move: the owner's renewals must keep succeeding */
    cJSON_AddStringToObject(q, "UpdateExpression", "SET #po = :req");
    cJSON_AddStringToObject(q, "ConditionExpression", cond);
    r->body = ddb_print(q);
    ddb_send(r);
}

static void ddb_handoff(lease_store_t *s, const lease_t *l, lease_write_cb cb, void *ud)
{
    ddb_store_t *ds = (ddb_store_t *)s;
    ddb_req_t *r = ddb_req_new(ds, 0, "UpdateItem", (void *)cb, ud, l, &(lease_write_t){.kind = LEASE_WRITE_HANDOFF});
    if (!l->pending_owner) {
        errbuf_set(&r->err, "lease %s: no handoff pending", l->key);
        ddb_fail_later(r, LEASE_CONFLICT);
        return;
    }
    cJSON *names, *values, *q = ddb_keyed(ds, l->key, &names, &values);
    char cond[256];
    cJSON_AddStringToObject(names, "#po", "pendingOwner");
    cJSON_AddStringToObject(names, "#sw", "ownerSwitchesSinceCheckpoint");
    awsjson_ddb_attr(values, ":po", "S", l->pending_owner);
    awsjson_ddb_attr_n(values, ":nc", l->counter + 1);
    awsjson_ddb_attr_n(values, ":zero", 0);
    awsjson_ddb_attr_n(values, ":one", 1);
    ddb_owner_cond(names, values, l, cond, sizeof cond, "#po = :po");
    cJSON_AddStringToObject(q, "UpdateExpression",
                            l->info ? "SET #o = :po, #n = :nc, #sw = if_not_exists(#sw, :zero) + :one, #in = :in REMOVE #po"
                                    : "SET #o = :po, #n = :nc, #sw = if_not_exists(#sw, :zero) + :one REMOVE #po");
    ddb_info(l, names, values);
    cJSON_AddStringToObject(q, "ConditionExpression", cond);
    r->body = ddb_print(q);
    ddb_send(r);
}

static void ddb_cancel_handoff(lease_store_t *s, const lease_t *l, const char *requester, lease_write_cb cb,
                               void *ud)
{
    ddb_store_t *ds = (ddb_store_t *)s;
    ddb_req_t *r = ddb_req_new(ds, 0, "UpdateItem", (void *)cb, ud, l,
                               &(lease_write_t){.kind = LEASE_WRITE_CANCEL_HANDOFF, .worker = requester});
    cJSON *names, *values, *q = ddb_keyed(ds, l->key, &names, &values);
    cJSON_AddStringToObject(names, "#po", "pendingOwner");
    awsjson_ddb_attr(values, ":req", "S", requester);
    cJSON_AddStringToObject(q, "UpdateExpression", "REMOVE #po");
    cJSON_AddStringToObject(q, "ConditionExpression", "#po = :req");
    r->body = ddb_print(q);
    ddb_send(r);
}

static void ddb_control(lease_store_t *s, const lease_t *l, const char *control, lease_write_cb cb, void *ud)
{
    ddb_store_t *ds = (ddb_store_t *)s;
    ddb_req_t *r = ddb_req_new(ds, 0, "UpdateItem", (void *)cb, ud, l,
                               &(lease_write_t){.kind = LEASE_WRITE_CONTROL, .control = control});
    cJSON *names, *values, *q = ddb_keyed(ds, l->key, &names, &values);
    cJSON_AddStringToObject(names, "#ct", "shardrunControl");
    cJSON_AddStringToObject(names, "#k", "leaseKey");
    awsjson_ddb_attr(values, ":ct", "S", control);
    /* any owner, any counter: a request the owner reads at its next scan */
    cJSON_AddStringToObject(q, "UpdateExpression", "SET #ct = :ct");
    cJSON_AddStringToObject(q, "ConditionExpression", "attribute_exists(#k)");
    r->body = ddb_print(q);
    ddb_send(r);
}

static void ddb_remove(lease_store_t *s, const lease_t *l, lease_write_cb cb, void *ud)
{
    ddb_store_t *ds = (ddb_store_t *)s;
    ddb_req_t *r = ddb_req_new(ds, 0, "DeleteItem", (void *)cb, ud, l, &(lease_write_t){.kind = LEASE_WRITE_REMOVE});
    cJSON *names, *values, *q = ddb_keyed(ds, l->key, &names, &values);
    cJSON_AddStringToObject(names, "#n", "leaseCounter");
    awsjson_ddb_attr_n(values, ":c", l->counter);
    cJSON_AddStringToObject(q, "ConditionExpression", "#n = :c");
    r->body = ddb_print(q);
    ddb_send(r);
}

static void ddb_destroy(lease_store_t *s)
{
    ddb_store_t *ds = (ddb_store_t *)s;
    ev_timer_stop(ds->base.loop, &ds->table_timer);
    if (ds->table_http) aws_client_cancel(ds->aws, ds->table_http);
    while (ds->reqs) ddb_req_free(ds->reqs); /* cancels its call: no callback runs */
    aws_client_endpoint_clear(&ds->ep);
    free(ds->table);
    free(ds);
}

static const lease_store_ops_t lease_dynamodb_ops = {
    .name = "dynamodb",
    .list = ddb_list,
    .create = ddb_create,
    .renew = ddb_renew,
    .take = ddb_take,
    .cancel_handoff = ddb_cancel_handoff,
    .control = ddb_control,
    .checkpoint = ddb_checkpoint,
    .release = ddb_release,
    .request_handoff = ddb_request_handoff,
    .handoff = ddb_handoff,
    .remove = ddb_remove,
    .destroy = ddb_destroy,
};

lease_store_t *lease_dynamodb_new(struct ev_loop *loop, const lease_dynamodb_options_t *opt, errbuf_t *err)
{
    if (!opt->table || !*opt->table) {
        errbuf_set(err, "leases.table: the DynamoDB lease table needs a name");
        return NULL;
    }
    ddb_store_t *ds = xcalloc(1, sizeof *ds); /* owned by the caller: lease_store_destroy */
    ds->base.ops = &lease_dynamodb_ops;
    ds->base.loop = loop;
    ds->table = xstrdup(opt->table);
    ds->write_budget_ms = opt->write_budget_ms;
    ds->create_table = opt->create_table;
    ev_timer_init(&ds->table_timer, ddb_on_table_timer, 0.0, 0.0);
    ds->table_timer.data = ds;
    ds->aws = opt->aws;
    if (aws_client_endpoint(ds->aws, &ds->ep, "dynamodb", "leases", opt->region, opt->endpoint, err)) {
        aws_client_endpoint_clear(&ds->ep);
        free(ds->table);
        free(ds);
        return NULL;
    }
    return &ds->base;
}
