/* bench_lease_plan: what one taker run costs with N leases in one table.
 *
 * Two figures, CPU time on this thread, median of several runs:
 * - planner: sort the scanned list, update the observations, plan (the pure
 *   part, as lease_coord runs it on every scan);
 * - coordinator: a whole taker run of the real lease_coord over an in-memory
 *   store on virtual time (the store's copy of the table, the plan, the takes
 *   it sends and their answers), for a new worker that finds every lease
 *   expired and takes them all.
 * Usage: bench_lease_plan [leases] [workers]; prints one line per figure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lease/lease_coord.h"
#include "base/log.h"
#include "lease/lease_plan.h"
#include "../common/memstore.h"
#include "../common/vsched.h"

static double cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Parents done, as the worker checks it: one binary search per parent. */
static int eligible(void *ud, const lease_t *l, const lease_list_t *all)
{
    for (size_t i = 0; i < l->nparents; i++) {
        const lease_t *p = lease_list_find(all, l->parents[i]);
        if (p && strcmp(p->checkpoint, "SHARD_END")) return 0;
    }
    return 1;
}

/* n leases in scrambled key order, owned round-robin by `workers` workers
 * "w0".."w<k>"; this worker is "w0". Every seventh lease has a parent. */
static lease_list_t *make_table(size_t n, size_t workers)
{
    lease_list_t *l = calloc(1, sizeof *l);
    l->count = n;
    l->leases = calloc(n, sizeof *l->leases);
    char buf[64];
    for (size_t i = 0; i < n; i++) {
        lease_t *x = &l->leases[i];
        size_t id = (i * 7919) % n;
        snprintf(buf, sizeof buf, "shardId-%012zu", id);
        x->key = strdup(buf);
        x->shard = strdup(buf);
        x->stream = strdup("s");
        snprintf(buf, sizeof buf, "w%zu", id % workers);
        x->owner = strdup(buf);
        x->counter = 1;
        x->checkpoint = strdup("49590338271490256608559692538361571095921575989136588898");
        if (id % 7 == 3) {
            x->parents = calloc(1, sizeof *x->parents);
            snprintf(buf, sizeof buf, "shardId-%012zu", id - 3);
            x->parents[0] = strdup(buf);
            x->nparents = 1;
        }
    }
    return l;
}

static lease_list_t *copy_table(const lease_list_t *src)
{
    lease_list_t *l = calloc(1, sizeof *l);
    l->count = src->count;
    l->leases = calloc(src->count, sizeof *l->leases);
    for (size_t i = 0; i < src->count; i++) lease_copy(&l->leases[i], &src->leases[i]);
    return l;
}

static double bench_planner(const lease_list_t *table, size_t workers, int runs)
{
    double *t = calloc((size_t)runs, sizeof *t);
    lease_obs_set_t obs = {0};
    lease_local_t *local = calloc(table->count, sizeof *local);
    for (int r = 0; r < runs; r++) {
        lease_list_t *all = copy_table(table); /* as a store delivers it: unsorted */
        for (size_t i = 0; i < all->count; i++) all->leases[i].counter += r; /* the owners renew */
        double t0 = cpu_ms();
        lease_list_sort(all);
        lease_obs_update(&obs, all, (int64_t)r * 2000);
        size_t n = 0;
        for (size_t i = 0; i < all->count; i++)
            if (!strcmp(all->leases[i].owner, "w0"))
                local[n++] = (lease_local_t){all->leases[i].key, LEASE_LOCAL_OWNED, NULL, NULL, 0};
        lease_plan_input_t in = {"w0", (int64_t)r * 2000, 10000, 1, 1, all, &obs, local, n, eligible, NULL};
        lease_plan_t plan = {0};
        lease_plan_run(&in, &plan);
        t[r] = cpu_ms() - t0;
        if (plan.workers != workers || plan.target != (plan.eligible + workers - 1) / workers) {
            fprintf(stderr, "bench_lease_plan: unexpected plan: %zu workers, target %zu\n", plan.workers,
                    plan.target);
            exit(1);
        }
        lease_plan_free(&plan);
        lease_list_free(all);
    }
    qsort(t, (size_t)runs, sizeof *t, cmp_double);
    double med = t[runs / 2];
    free(t);
    free(local);
    lease_obs_clear(&obs);
    return med;
}

static void on_acquired(void *ud, const lease_t *l) { ++*(size_t *)ud; }
static void on_lost(void *ud, const char *key) {}

/* A whole taker run of the coordinator: a new worker finds a table whose
 * owners all died, and takes every lease in one run. */
static double bench_coordinator(const lease_list_t *table, size_t workers, int runs, size_t *taken)
{
    double *t = calloc((size_t)runs, sizeof *t);
    for (int r = 0; r < runs; r++) {
        vsched_t vs;
        memstore_t ms;
        vsched_init(&vs, 0);
        memstore_init(&ms, &vs, 1);
        for (size_t i = 0; i < table->count; i++) memstore_put_unsorted(&ms, &table->leases[i]);
        lease_list_sort(&ms.table);
        size_t acquired = 0;
        lease_coord_options_t opt = {"fresh", 10000, 3333, 2000, 1, 1, NULL};
        lease_coord_handler_t h = {on_acquired, on_lost, eligible, NULL, NULL, NULL, NULL};
        lease_coord_t *c = lease_coord_new(&vs.base, &ms.base, &opt, &h, &acquired);
        lease_coord_start(c);
        vsched_advance(&vs, 0);                /* the first scan goes out */
        vsched_advance(&vs, 20000);            /* the owners are dead by now */
        double t0 = cpu_ms();
        lease_coord_scan_now(c);
        vsched_advance(&vs, 10);               /* one taker run: scan, plan, takes answered */
        t[r] = cpu_ms() - t0;
        *taken = acquired;
        lease_coord_free(c);
        lease_store_destroy(&ms.base);
        vsched_free(&vs);
    }
    qsort(t, (size_t)runs, sizeof *t, cmp_double);
    double med = t[runs / 2];
    free(t);
    (void)workers;
    return med;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 10000;
    size_t workers = argc > 2 ? strtoul(argv[2], NULL, 10) : 10;
    int runs = 7;
    log_set_level(LOG_ERROR);
    lease_list_t *table = make_table(n, workers);
    double plan_ms = bench_planner(table, workers, runs);
    printf("lease_plan leases=%zu workers=%zu planner_ms=%.2f (sort + observe + plan, median of %d)\n", n, workers,
           plan_ms, runs);
    size_t taken = 0;
    double coord_ms = bench_coordinator(table, workers, 3, &taken);
    printf("lease_coord leases=%zu taker_run_ms=%.2f taken=%zu (in-memory store: scan, plan, takes sent and "
           "answered; median of 3)\n", n, coord_ms, taken);
    lease_list_free(table);
    return 0;
}
