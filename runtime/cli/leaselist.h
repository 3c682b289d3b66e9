/* leaselist: the lease table as the commands read it (status, status
 * --watch, resume): the lease store opened read-only on the command's own
 * loop, and one list answer waited for on that loop. */
#ifndef SHARDRUN_LEASELIST_H
#define SHARDRUN_LEASELIST_H

#include <signal.h>

#include "aws/client.h"
#include "config/config.h"
#include "lease/lease.h"

struct ev_loop;

/* What a command holds to read the table: a loop of its own, the config's
 * AWS client (NULL for local backends) and the lease store on both. */
typedef struct leaselist_conn {
    struct ev_loop *loop;
    aws_client_t *aws;
    lease_store_t *store;
} leaselist_conn_t;

/* One answer to the store's list. */
typedef struct leaselist {
    lease_list_t *leases; /* the caller frees it (lease_list_free), answered or not */
    lease_status_t st;
    char err[1024]; /* the store's message when st is not LEASE_OK */
    int done;       /* the answer came */
} leaselist_t;

/* Opens c: a new loop, the AWS client and the lease store with create 0 (a
 * read-only command creates no table). Returns 0, or 1 with the reason
 * printed to stderr and nothing left open. */
int leaselist_connect(const config_t *cfg, leaselist_conn_t *c);
/* Frees what leaselist_connect opened; anything else on c->loop or c->aws
 * (a source) must be destroyed first. */
void leaselist_disconnect(leaselist_conn_t *c);

/* Asks store for every lease and runs loop until the answer is in *l, or
 * timeout_s passed (<= 0: no limit), or *stop is set (stop may be NULL).
 * Returns 0 when the answer came with LEASE_OK, else -1. When l->done is 0
 * the answer is still owed and will be written into *l later: *l must
 * outlive the store, or the store be destroyed before *l goes. */
int leaselist_read(struct ev_loop *loop, lease_store_t *store, double timeout_s, const volatile sig_atomic_t *stop,
                   leaselist_t *l);

#endif
