/* Doorbells of the local stream file (source/doorbell.c, streamdb.c): a put
 * rings the shards it wrote to once its transaction commits, never before
 * and never for a rolled-back one; a reader watching the folder hears which
 * shard; a reshard rings the parents it closes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "source/doorbell.h"
#include "source/streamdb.h"
#include "tempdir.h"

typedef struct heard {
    int64_t sids[64];
    int n;
} heard_t;

static void on_bell(void *ud, int64_t sid)
{
    heard_t *h = ud;
    if (h->n < 64) h->sids[h->n++] = sid;
}

static int heard_has(const heard_t *h, int64_t sid)
{
    for (int i = 0; i < h->n; i++)
        if (h->sids[i] == sid) return 1;
    return 0;
}

/* Turns the loop until `want` distinct shards were heard, or 2 s. */
static void listen(struct ev_loop *loop, heard_t *h, int want)
{
    int64_t until = clock_mono_ms() + 2000;
    while (clock_mono_ms() < until) {
        int distinct = 0;
        for (int i = 0; i < h->n; i++) {
            int seen = 0;
            for (int j = 0; j < i; j++) seen |= h->sids[j] == h->sids[i];
            distinct += !seen;
        }
        if (distinct >= want) return;
        ev_run(loop, EVRUN_NOWAIT);
        usleep(1000);
    }
}

/* No bell for 100 ms. */
static void quiet(struct ev_loop *loop)
{
    int64_t until = clock_mono_ms() + 100;
    while (clock_mono_ms() < until) {
        ev_run(loop, EVRUN_NOWAIT);
        usleep(1000);
    }
}

/* Each test: a stream "s" of 4 shards in a fresh file, and a reader's
 * doorbell on it, what it hears going into h. */
typedef struct fx {
    char dir[64];
    char path[128];
    struct ev_loop *loop;
    streamdb_t *db;
    heard_t h;
    doorbell_t *bell;
} fx_t;

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    assert_int_equal(tempdir_make(f->dir, sizeof f->dir, "doorbell"), 0);
    snprintf(f->path, sizeof f->path, "%s/streams.db", f->dir);
    f->loop = ev_loop_new(EVFLAG_AUTO);
    errbuf_t err;
    assert_int_equal(streamdb_open(f->path, 1, &f->db, &err), 0);
    assert_int_equal(streamdb_create_stream(f->db, "s", 4, &err), 0);
    f->bell = doorbell_open(f->loop, f->path, on_bell, &f->h, &err);
    if (!f->bell) fail_msg("doorbell_open %s: %s", f->path, err.msg);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    doorbell_close(f->bell);
    streamdb_close(f->db);
    ev_loop_destroy(f->loop);
    assert_int_equal(tempdir_remove(f->dir), 0);
    free(f);
    return 0;
}

static int64_t rowid(fx_t *f, const char *shard)
{
    int64_t sid = -1;
    errbuf_t err;
    assert_int_equal(streamdb_shard_rowid(f->db, "s", shard, &sid, &err), 0);
    return sid;
}

static void put(fx_t *f, const char *pkey, char *shard_out)
{
    char seq[24];
    errbuf_t err;
    assert_int_equal(streamdb_put(f->db, "s", pkey, strlen(pkey), "x", 1, 1, shard_out, seq, &err), 0);
}

static void test_a_reader_hears_the_shard_a_committed_put_wrote_to_and_not_before_the_commit(void **state)
{
    fx_t *f = *state;
    errbuf_t err;
    char shard[32];
    assert_int_equal(streamdb_begin(f->db, &err), 0);
    for (int i = 0; i < 10; i++) put(f, "same-key", shard);
    quiet(f->loop);
    assert_int_equal(f->h.n, 0); /* nothing committed yet: a woken reader would find nothing */
    assert_int_equal(streamdb_commit(f->db, &err), 0);
    listen(f->loop, &f->h, 1);
    assert_int_equal(f->h.n, 1); /* ten records, one shard: one ring */
    assert_int_equal(f->h.sids[0], rowid(f, shard));
}

static void test_a_rolled_back_put_rings_nothing(void **state)
{
    fx_t *f = *state;
    errbuf_t err;
    char shard[32];
    assert_int_equal(streamdb_begin(f->db, &err), 0);
    put(f, "k", shard);
    streamdb_rollback(f->db);
    quiet(f->loop);
    assert_int_equal(f->h.n, 0);
}

static void test_each_shard_written_in_a_transaction_rings_and_a_split_rings_its_parent(void **state)
{
    fx_t *f = *state;
    errbuf_t err;
    char shard[32];
    int64_t want[4];
    int nwant = 0;
    assert_int_equal(streamdb_begin(f->db, &err), 0);
    for (int i = 0; i < 40; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        put(f, key, shard);
        int64_t sid = rowid(f, shard), known = 0;
        for (int j = 0; j < nwant; j++) known |= want[j] == sid;
        if (!known) want[nwant++] = sid;
    }
    assert_int_equal(streamdb_commit(f->db, &err), 0);
    assert_int_equal(nwant, 4);
    listen(f->loop, &f->h, 4);
    for (int j = 0; j < nwant; j++) assert_true(heard_has(&f->h, want[j]));
    /* a put outside a transaction rings too (it commits by itself) */
    f->h.n = 0;
    put(f, "k0", shard);
    listen(f->loop, &f->h, 1);
    assert_true(heard_has(&f->h, rowid(f, shard)));
    /* the readers of a split shard learn of its end at once */
    f->h.n = 0;
    int64_t parent = rowid(f, "shardId-000000000001");
    assert_int_equal(streamdb_split(f->db, "s", "shardId-000000000001", NULL, &err), 0);
    listen(f->loop, &f->h, 1);
    assert_true(heard_has(&f->h, parent));
}

static void test_names_that_are_not_shards_are_ignored(void **state)
{
    fx_t *f = *state;
    char other[200];
    snprintf(other, sizeof other, "%s-wake/notes.txt", f->path);
    FILE *fp = fopen(other, "w");
    assert_non_null(fp);
    fclose(fp);
    int64_t sids[] = {7};
    doorbell_ring(f->path, sids, 1);
    listen(f->loop, &f->h, 1);
    assert_int_equal(f->h.n, 1);
    assert_int_equal(f->h.sids[0], 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_a_reader_hears_the_shard_a_committed_put_wrote_to_and_not_before_the_commit,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_rolled_back_put_rings_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_each_shard_written_in_a_transaction_rings_and_a_split_rings_its_parent,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_names_that_are_not_shards_are_ignored, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
