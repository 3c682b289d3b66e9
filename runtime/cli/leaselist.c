#include "leaselist.h"

#include <ev.h>
#include <stdio.h>
#include <string.h>

#include "base/clock.h"
#include "base/errbuf.h"
#include "worker/backends.h"

int leaselist_connect(const config_t *cfg, leaselist_conn_t *c)
{
    errbuf_t err;
    *c = (leaselist_conn_t){.loop = ev_loop_new(EVFLAG_AUTO)};
    if (!c->loop) {
        fprintf(stderr, "shardrun: cannot create an event loop (out of file descriptors?)\n");
        return 1;
    }
    if (backend_aws_new(cfg, c->loop, &c->aws, &err) ||
        !(c->store = backend_lease_store_new(cfg, c->loop, c->aws, 0, &err))) {
        fprintf(stderr, "shardrun: %s\n", err.msg);
        leaselist_disconnect(c);
        return 1;
    }
    return 0;
}

void leaselist_disconnect(leaselist_conn_t *c)
{
    lease_store_destroy(c->store);
    aws_client_free(c->aws);
    if (c->loop) ev_loop_destroy(c->loop);
    *c = (leaselist_conn_t){0};
}

static void leaselist_on_list(void *ud, lease_status_t st, const char *msg, lease_list_t *all)
{
    leaselist_t *l = ud;
    l->st = st;
    l->leases = all;
    if (msg) snprintf(l->err, sizeof l->err, "%s", msg);
    l->done = 1;
}

/* Only wakes the loop: leaselist_read looks at the clock itself. */
static void leaselist_on_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)t;
    (void)revents;
    ev_break(loop, EVBREAK_ONE);
}

int leaselist_read(struct ev_loop *loop, lease_store_t *store, double timeout_s, const volatile sig_atomic_t *stop,
                   leaselist_t *l)
{
    memset(l, 0, sizeof *l);
    ev_timer timeout;
    ev_timer_init(&timeout, leaselist_on_timeout, timeout_s > 0 ? timeout_s : 0.0, 0.0);
    if (timeout_s > 0) ev_timer_start(loop, &timeout);
    int64_t until = clock_mono_ms() + (int64_t)(timeout_s * 1000);
    store->ops->list(store, leaselist_on_list, l);
    while (!l->done && !(stop && *stop) && (timeout_s <= 0 || clock_mono_ms() < until))
        ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &timeout);
    return l->done && l->st == LEASE_OK ? 0 : -1;
}
