/* Shard sync over an in-memory lease store: creates go out parents first,
 * so no table ever holds a child without its parents. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "memstore.h"
#include "vsched.h"
#include "worker/shardsync.h"

/* A source whose only call is list_shards, answered by the test. */
typedef struct fake_source {
    source_t base;
    source_shards_cb cb;
    void *ud;
} fake_source_t;

static void fake_list(source_t *s, const char *stream, source_shards_cb cb, void *ud)
{
    fake_source_t *f = (fake_source_t *)s;
    f->cb = cb;
    f->ud = ud;
}

static const source_ops_t fake_ops = {.name = "fake", .list_shards = fake_list};

static void shard(source_shard_t *s, const char *id, const char *parent, const char *adjacent, int closed)
{
    memset(s, 0, sizeof *s);
    s->id = strdup(id);
    s->parent = parent ? strdup(parent) : NULL;
    s->adjacent_parent = adjacent ? strdup(adjacent) : NULL;
    s->start_hash = strdup("0");
    s->end_hash = strdup("1");
    s->start_seq = strdup("1");
    s->end_seq = closed ? strdup("9") : NULL;
}

static int has_row(memstore_t *ms, const char *key)
{
    return memstore_row(ms, key) != NULL;
}

/* A split (s0 -> s1, s2) then a merge (s1 + s2 -> s3), listed children
 * first: the creates still go s0, then s1 and s2 together, then s3. */
static void test_creates_go_out_parents_first_in_waves(void **state)
{
    vsched_t vs;
    memstore_t ms;
    vsched_init(&vs, 0);
    memstore_init(&ms, &vs, 5);
    config_stream_t stream = {.name = "s", .initial_position = POS_TRIM_HORIZON};
    config_t cfg = {.application = "app", .streams = &stream, .nstreams = 1};
    fake_source_t src = {.base = {&fake_ops, NULL}};
    shardsync_t *ss = shardsync_new(&src.base, &ms.base, &cfg, NULL, NULL, NULL);
    shardsync_run(ss);
    assert_non_null(src.cb);
    source_shard_list_t *l = calloc(1, sizeof *l);
    l->count = 4;
    l->shards = calloc(4, sizeof *l->shards);
    shard(&l->shards[0], "s3", "s1", "s2", 0);
    shard(&l->shards[1], "s2", "s0", NULL, 1);
    shard(&l->shards[2], "s1", "s0", NULL, 1);
    shard(&l->shards[3], "s0", NULL, NULL, 1);
    src.cb(src.ud, SOURCE_OK, NULL, l);
    vsched_advance(&vs, 5);                      /* the table scan is answered: wave 1 */
    assert_int_equal(ms.calls[LEASE_WRITE_CREATE], 1);
    vsched_advance(&vs, 5);                      /* s0 exists: wave 2 */
    assert_true(has_row(&ms, "s0"));
    assert_int_equal(ms.calls[LEASE_WRITE_CREATE], 3);
    assert_false(has_row(&ms, "s3"));
    vsched_advance(&vs, 5);                      /* s1 and s2 exist: wave 3 */
    assert_true(has_row(&ms, "s1") && has_row(&ms, "s2"));
    assert_int_equal(ms.calls[LEASE_WRITE_CREATE], 4);
    vsched_advance(&vs, 5);
    assert_true(has_row(&ms, "s3"));
    assert_int_equal(shardsync_runs(ss), 1);
    assert_string_equal(memstore_row(&ms, "s3")->parents[1], "s2");
    shardsync_free(ss);
    lease_store_destroy(&ms.base);
    vsched_free(&vs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_creates_go_out_parents_first_in_waves),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
