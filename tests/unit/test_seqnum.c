/* seqnum, hash keys, batches and the local stream's shard choice. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "record/batch.h"
#include "record/seqnum.h"
#include "source/streamdb.h"

static void test_sequence_numbers_compare_as_numbers(void **state)
{
    assert_true(seqnum_cmp("9", "10") < 0);
    assert_true(seqnum_cmp("0009", "9") == 0);
    assert_true(seqnum_cmp("49590338271490256608559692538361571095921575989136588898",
                           "49590338271490256608559692538361571095921575989136588899") < 0);
    assert_true(seqnum_cmp("100", "99") > 0);
    assert_true(seqnum_cmp_sub("5", 2, "5", 1) > 0);
    assert_true(seqnum_cmp_sub("5", 0, "6", 0) < 0);
    assert_true(seqnum_valid("0"));
    assert_false(seqnum_valid(""));
    assert_false(seqnum_valid("12a"));
    assert_false(seqnum_valid("-1"));
    assert_true(seqnum_is_sentinel("SHARD_END"));
    assert_true(seqnum_is_sentinel("TRIM_HORIZON"));
    assert_false(seqnum_is_sentinel("123"));
}

static void test_hash_keys_are_md5_as_128_bit_numbers(void **state)
{
    char out[48];
    /* MD5("a") = 0cc175b9c0f1b6a831c399e269772661 */
    hashkey_t h = hashkey_of("a", 1);
    assert_string_equal(hashkey_format(h, out), "16955237001963240173058271559858726497");
    hashkey_t back;
    assert_int_equal(hashkey_parse(out, &back), 0);
    assert_true(back == h);
    assert_string_equal(hashkey_format(HASHKEY_MAX, out), "340282366920938463463374607431768211455");
    assert_int_equal(hashkey_parse("340282366920938463463374607431768211456", &back), -1); /* 2^128 */
    assert_int_equal(hashkey_parse("x", &back), -1);
}

static void test_batch_copies_binary_data_and_grows(void **state)
{
    batch_t *b = batch_new(3, 8);
    char big[5000];
    memset(big, 0xAB, sizeof big);
    assert_int_equal(batch_add(&b, "a\0b", 3, "k", 1, "1", 1, 0, 10), 0);
    assert_int_equal(batch_add(&b, big, sizeof big, "k2", 2, "2", 1, 7, 20), 0);
    assert_int_equal(batch_add(&b, "", 0, "k3", 2, "3", 1, 0, 30), 0);
    assert_int_equal(batch_add(&b, "x", 1, "k", 1, "4", 1, 0, 40), -1); /* full */
    assert_int_equal(b->count, 3);
    assert_memory_equal(batch_data(b, 0), "a\0b", 3);
    assert_memory_equal(batch_data(b, 1), big, sizeof big);
    assert_int_equal(b->recs[1].sub_seq, 7);
    assert_string_equal(batch_seq(b, 2), "3");
    batch_t *s = batch_slice(b, 1, 3);
    assert_int_equal(s->count, 2);
    assert_memory_equal(batch_data(s, 0), big, sizeof big);
    assert_string_equal(batch_pkey(s, 1), "k3");
    batch_free(s);
    batch_free(b);
}

/* A new stream file at a fresh temporary path, written into `path`; the caller unlinks it. */
static streamdb_t *temp_streamdb(char path[static 40])
{
    strcpy(path, "/tmp/shardrun-test-streamdb-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    unlink(path);
    streamdb_t *db = NULL;
    errbuf_t err;
    assert_int_equal(streamdb_open(path, 1, &db, &err), 0);
    return db;
}

static void test_put_routes_by_md5_of_the_key_over_hash_ranges(void **state)
{
    char path[40];
    streamdb_t *db = temp_streamdb(path);
    errbuf_t err;
    assert_int_equal(streamdb_create_stream(db, "s", 4, &err), 0);
    source_shard_list_t *l = NULL;
    assert_int_equal(streamdb_shards(db, "s", &l, &err), 0);
    assert_int_equal(l->count, 4);
    char shard[32], seq[24], prev_seq[24] = "";
    for (int i = 0; i < 200; i++) {
        char key[16];
        snprintf(key, sizeof key, "key-%d", i);
        assert_int_equal(streamdb_put(db, "s", key, strlen(key), "d", 1, 1000, shard, seq, &err), 0);
        /* the shard whose range holds MD5(key) */
        hashkey_t h = hashkey_of(key, strlen(key)), lo, hi;
        const source_shard_t *sh = source_shard_find(l, shard);
        assert_non_null(sh);
        assert_int_equal(hashkey_parse(sh->start_hash, &lo), 0);
        assert_int_equal(hashkey_parse(sh->end_hash, &hi), 0);
        assert_true(h >= lo && h <= hi);
        assert_true(seqnum_cmp(seq, prev_seq[0] ? prev_seq : "0") > 0);
        strcpy(prev_seq, seq);
    }
    source_shard_list_free(l);
    assert_int_equal(streamdb_put(db, "missing", "k", 1, "d", 1, 0, shard, seq, &err), -1);
    assert_non_null(strstr(err.msg, "no stream named missing"));
    /* split then merge: parents closed, children cover the range */
    assert_int_equal(streamdb_split(db, "s", "shardId-000000000000", NULL, &err), 0);
    assert_int_equal(streamdb_shards(db, "s", &l, &err), 0);
    assert_int_equal(l->count, 6);
    assert_non_null(l->shards[0].end_seq);
    assert_string_equal(l->shards[4].parent, "shardId-000000000000");
    assert_string_equal(l->shards[4].start_hash, l->shards[0].start_hash);
    assert_string_equal(l->shards[5].end_hash, l->shards[0].end_hash);
    source_shard_list_free(l);
    assert_int_equal(streamdb_merge(db, "s", "shardId-000000000004", "shardId-000000000005", &err), 0);
    assert_int_equal(streamdb_merge(db, "s", "shardId-000000000001", "shardId-000000000003", &err), -1);
    assert_non_null(strstr(err.msg, "not an adjacent pair of shards eligible for merging"));
    streamdb_close(db);
    unlink(path);
}

/* Kinesis merges only two open shards whose hash ranges touch ("not an
 * adjacent pair of shards eligible for merging"). The first and last shards of
 * a stream do not touch: the range ends at 2^128-1 and starts at 0, which is
 * where an unsigned `hi + 1 == lo` test wraps around. */
static void test_merge_refuses_shards_that_are_not_an_adjacent_open_pair(void **state)
{
    char path[40];
    streamdb_t *db = temp_streamdb(path);
    errbuf_t err;
    source_shard_list_t *l = NULL;
    assert_int_equal(streamdb_create_stream(db, "m", 3, &err), 0);
    assert_int_equal(streamdb_create_stream(db, "one", 1, &err), 0);

    /* the first and the last shard, in either order */
    assert_int_equal(streamdb_merge(db, "m", "shardId-000000000000", "shardId-000000000002", &err), -1);
    assert_non_null(strstr(err.msg, "not an adjacent pair of shards eligible for merging"));
    assert_non_null(strstr(err.msg, "shardId-000000000000"));
    assert_non_null(strstr(err.msg, "shardId-000000000002"));
    assert_int_equal(streamdb_merge(db, "m", "shardId-000000000002", "shardId-000000000000", &err), -1);
    assert_non_null(strstr(err.msg, "not an adjacent pair of shards eligible for merging"));
    /* a shard with itself, also where its range is the whole key space */
    assert_int_equal(streamdb_merge(db, "m", "shardId-000000000001", "shardId-000000000001", &err), -1);
    assert_non_null(strstr(err.msg, "not an adjacent pair of shards eligible for merging"));
    assert_int_equal(streamdb_merge(db, "one", "shardId-000000000000", "shardId-000000000000", &err), -1);
    assert_non_null(strstr(err.msg, "not an adjacent pair of shards eligible for merging"));
    /* nothing changed: every refused merge left the shards open, no child */
    assert_int_equal(streamdb_shards(db, "m", &l, &err), 0);
    assert_int_equal(l->count, 3);
    for (size_t i = 0; i < l->count; i++) assert_null(l->shards[i].end_seq);
    source_shard_list_free(l);

    /* adjacent open shards merge; a closed parent is no longer eligible */
    assert_int_equal(streamdb_merge(db, "m", "shardId-000000000001", "shardId-000000000002", &err), 0);
    assert_int_equal(streamdb_merge(db, "m", "shardId-000000000000", "shardId-000000000001", &err), -1);
    assert_non_null(strstr(err.msg, "not an adjacent pair of shards eligible for merging"));
    assert_non_null(strstr(err.msg, "closed"));
    /* the child covers both parents' ranges and touches shard 0: they merge */
    assert_int_equal(streamdb_merge(db, "m", "shardId-000000000003", "shardId-000000000000", &err), 0);
    assert_int_equal(streamdb_shards(db, "m", &l, &err), 0);
    assert_int_equal(l->count, 5);
    assert_string_equal(l->shards[4].start_hash, "0");
    assert_string_equal(l->shards[4].end_hash, "340282366920938463463374607431768211455");
    source_shard_list_free(l);
    streamdb_close(db);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sequence_numbers_compare_as_numbers),
        cmocka_unit_test(test_hash_keys_are_md5_as_128_bit_numbers),
        cmocka_unit_test(test_batch_copies_binary_data_and_grows),
        cmocka_unit_test(test_put_routes_by_md5_of_the_key_over_hash_ranges),
        cmocka_unit_test(test_merge_refuses_shards_that_are_not_an_adjacent_open_pair),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
