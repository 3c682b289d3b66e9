/* Workers' kernel-released locks beside a local lease file
 * (lease/lease_alive.c): a worker is known dead only once its process is
 * gone, and its peers are told at once; a stopped (SIGSTOP) worker holds its
 * lock; no file, or a file of another boot, is never "dead"; two live
 * processes cannot hold one worker id; the files of dead workers that own
 * nothing are swept. Workers are real processes (fork), so the kernel's own
 * lock release is what is tested. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <ev.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/clock.h"
#include "lease/lease_alive.h"
#include "tempdir.h"

typedef struct fx {
    char dir[64];
    char lease[128];
    struct ev_loop *loop;
    char gone[16][64];
    int ngone;
} fx_t;

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    assert_int_equal(tempdir_make(f->dir, sizeof f->dir, "alive"), 0);
    snprintf(f->lease, sizeof f->lease, "%s/leases.db", f->dir);
    f->loop = ev_loop_new(EVFLAG_AUTO);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    ev_loop_destroy(f->loop);
    assert_int_equal(tempdir_remove(f->dir), 0);
    free(f);
    return 0;
}

/* 1 when the lock file named `name` (the worker id as encoded on disk)
 * exists beside the lease file. */
static int worker_file_exists(const fx_t *f, const char *name)
{
    char path[256];
    struct stat st;
    snprintf(path, sizeof path, "%s-workers/%s", f->lease, name);
    return stat(path, &st) == 0;
}

static void on_gone(void *ud, const char *id)
{
    fx_t *f = ud;
    if (f->ngone < 16) snprintf(f->gone[f->ngone++], sizeof f->gone[0], "%s", id);
}

static int told(fx_t *f, const char *id)
{
    for (int i = 0; i < f->ngone; i++)
        if (!strcmp(f->gone[i], id)) return 1;
    return 0;
}

/* Turns the loop until `id` was told gone, or 3 s. */
static void wait_told(fx_t *f, const char *id)
{
    int64_t until = clock_mono_ms() + 3000;
    while (!told(f, id) && clock_mono_ms() < until) {
        ev_run(f->loop, EVRUN_NOWAIT);
        usleep(1000);
    }
}

static lease_alive_t *join(fx_t *f, const char *id)
{
    lease_alive_t *a = lease_alive_new(f->loop, f->lease);
    errbuf_t err;
    if (lease_alive_join(a, id, on_gone, f, &err)) fail_msg("join %s: %s", id, err.msg);
    return a;
}

/* A worker process that joined as `id` and waits to be killed. */
static pid_t spawn(fx_t *f, const char *id)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
        lease_alive_t *a = lease_alive_new(loop, f->lease);
        errbuf_t err;
        char ok = lease_alive_join(a, id, on_gone, f, &err) == 0 ? 'y' : 'n';
        if (write(p[1], &ok, 1) != 1) _exit(2);
        for (;;) pause();
    }
    close(p[1]);
    char ok = 0;
    assert_int_equal(read(p[0], &ok, 1), 1);
    close(p[0]);
    assert_int_equal(ok, 'y');
    return pid;
}

static void reap(pid_t pid)
{
    int st;
    kill(pid, SIGKILL);
    assert_int_equal(waitpid(pid, &st, 0), pid);
}

static void test_a_worker_killed_with_sigkill_is_dead_at_once_and_its_peers_are_told(void **state)
{
    fx_t *f = *state;
    lease_alive_t *me = join(f, "host:1:me");
    pid_t pid = spawn(f, "host:2:peer");
    assert_false(lease_alive_dead(me, "host:2:peer"));
    int64_t t0 = clock_mono_ms();
    reap(pid);
    wait_told(f, "host:2:peer");
    assert_true(told(f, "host:2:peer"));
    printf("told %lld ms after the kill\n", (long long)(clock_mono_ms() - t0));
    assert_true(lease_alive_dead(me, "host:2:peer"));
    assert_false(lease_alive_dead(me, "host:1:me")); /* never itself */
    lease_alive_free(me);
}

static void test_a_stopped_worker_still_holds_its_lock_and_is_not_dead(void **state)
{
    fx_t *f = *state;
    lease_alive_t *me = join(f, "me");
    pid_t pid = spawn(f, "paused");
    assert_int_equal(kill(pid, SIGSTOP), 0);
    int64_t until = clock_mono_ms() + 300;
    while (clock_mono_ms() < until) {
        ev_run(f->loop, EVRUN_NOWAIT);
        usleep(1000);
    }
    assert_false(told(f, "paused"));
    assert_false(lease_alive_dead(me, "paused")); /* the lease clock decides for it */
    assert_int_equal(kill(pid, SIGCONT), 0);
    reap(pid);
    wait_told(f, "paused");
    assert_true(lease_alive_dead(me, "paused"));
    lease_alive_free(me);
}

static void test_no_file_or_a_file_of_another_boot_is_never_dead(void **state)
{
    fx_t *f = *state;
    lease_alive_t *me = join(f, "me");
    assert_false(lease_alive_dead(me, "on-another-host")); /* no file */
    /* unlocked, but not this boot's */
    tempdir_write(f->dir, "leases.db-workers/stale", "00000000-0000-0000-0000-000000000000\npid 1\n");
    assert_false(lease_alive_dead(me, "stale"));
    lease_alive_free(me);
}

static void test_two_live_processes_cannot_hold_one_worker_id(void **state)
{
    fx_t *f = *state;
    lease_alive_t *first = join(f, "w1");
    lease_alive_t *second = lease_alive_new(f->loop, f->lease);
    errbuf_t err;
    assert_int_equal(lease_alive_join(second, "w1", on_gone, f, &err), -1);
    assert_non_null(strstr(err.msg, "in use by another live process"));
    lease_alive_free(second);
    lease_alive_t *watcher = join(f, "w2");
    assert_false(lease_alive_dead(watcher, "w1")); /* the refused second did not release it */
    lease_alive_free(first);
    lease_alive_free(watcher);
}

static void test_a_graceful_exit_removes_the_file_and_tells_the_peers(void **state)
{
    fx_t *f = *state;
    lease_alive_t *me = join(f, "me");
    lease_alive_t *leaving = join(f, "leaving");
    lease_alive_free(leaving);
    wait_told(f, "leaving");
    assert_true(told(f, "leaving"));
    assert_false(lease_alive_dead(me, "leaving")); /* gone without a trace: its leases were released */
    assert_false(worker_file_exists(f, "leaving"));
    lease_alive_free(me);
}

static void test_ids_that_are_not_file_names_are_encoded(void **state)
{
    fx_t *f = *state;
    lease_alive_t *me = join(f, "me");
    pid_t pid = spawn(f, "../odd id/%");
    reap(pid);
    wait_told(f, "../odd id/%");
    assert_true(told(f, "../odd id/%"));
    assert_true(lease_alive_dead(me, "../odd id/%"));
    assert_true(worker_file_exists(f, "..%2Fodd%20id%2F%25"));
    lease_alive_free(me);
}

static void test_the_sweep_removes_dead_workers_files_that_own_nothing(void **state)
{
    fx_t *f = *state;
    lease_alive_t *me = join(f, "me");
    pid_t a = spawn(f, "dead-owner"), b = spawn(f, "dead-idle"), c = spawn(f, "live");
    reap(a);
    reap(b);
    const char *owners[] = {"dead-owner", "live", "me", NULL};
    lease_alive_sweep(me, owners, 4);
    assert_false(worker_file_exists(f, "dead-idle"));
    assert_true(lease_alive_dead(me, "dead-owner")); /* still named by a row: kept, still dead */
    assert_false(lease_alive_dead(me, "live"));
    assert_true(worker_file_exists(f, "me"));
    reap(c);
    lease_alive_free(me);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_a_worker_killed_with_sigkill_is_dead_at_once_and_its_peers_are_told,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_stopped_worker_still_holds_its_lock_and_is_not_dead, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_file_or_a_file_of_another_boot_is_never_dead, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_live_processes_cannot_hold_one_worker_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_graceful_exit_removes_the_file_and_tells_the_peers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ids_that_are_not_file_names_are_encoded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_the_sweep_removes_dead_workers_files_that_own_nothing, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
