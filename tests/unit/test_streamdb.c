/* The local stream file's reads (source/streamdb.c): every record read
 * carries its sequence number as the 20-digit string of its stored number,
 * also where the numbers of a shard's records are not consecutive (shards
 * share one counter) and cross a carry (999 -> 1000, ...); a read of a
 * caught-up shard returns an empty batch. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "source/streamdb.h"

static char dir[64], path[128];

static int setup(void **state)
{
    snprintf(dir, sizeof dir, "/tmp/shardrun-streamdb-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/streams.db", dir);
    return 0;
}

static int teardown(void **state)
{
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

static void set_counter(int64_t v)
{
    sqlite3 *db;
    char sql[128];
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    snprintf(sql, sizeof sql, "UPDATE meta SET value=%" PRId64 " WHERE key='next_seq'", v);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

static void test_sequence_numbers_read_are_the_stored_numbers_across_gaps_and_carries(void **state)
{
    streamdb_t *db;
    errbuf_t err;
    assert_int_equal(streamdb_open(path, 1, &db, &err), 0);
    assert_int_equal(streamdb_create_stream(db, "s", 3, &err), 0);
    /* runs of puts starting just below carries, spread over three shards */
    const int64_t starts[] = {1, 990, 99990, 9999999990, INT64_C(999999999999999990)};
    int64_t total = 0;
    for (size_t k = 0; k < sizeof starts / sizeof *starts; k++) {
        set_counter(starts[k]);
        assert_int_equal(streamdb_begin(db, &err), 0);
        for (int i = 0; i < 30; i++) {
            char key[16], shard[32], seq[24];
            snprintf(key, sizeof key, "k%d", i);
            assert_int_equal(streamdb_put(db, "s", key, strlen(key), "x", 1, 1, shard, seq, &err), 0);
            total++;
        }
        assert_int_equal(streamdb_commit(db, &err), 0);
    }
    sqlite3 *raw;
    assert_int_equal(sqlite3_open(path, &raw), SQLITE_OK);
    int64_t seen = 0;
    for (int sh = 0; sh < 3; sh++) {
        char shard[32];
        snprintf(shard, sizeof shard, "shardId-%012d", sh);
        /* the stored numbers, in order */
        sqlite3_stmt *q;
        assert_int_equal(sqlite3_prepare_v2(raw, "SELECT r.seq FROM records r JOIN shards h ON r.sid = h.sid WHERE "
                                                 "h.shard_id = ? ORDER BY r.seq", -1, &q, NULL), SQLITE_OK);
        sqlite3_bind_text(q, 1, shard, -1, SQLITE_STATIC);
        /* read in pages of 7, as successive GetRecords calls */
        int64_t from = 0;
        for (;;) {
            batch_t *b;
            int64_t next, behind;
            int ended;
            assert_int_equal(streamdb_read(db, "s", shard, from, 7, 0, &b, &next, &ended, &behind, &err), 0);
            for (size_t i = 0; i < b->count; i++) {
                assert_int_equal(sqlite3_step(q), SQLITE_ROW);
                char want[24];
                streamdb_format_seq(sqlite3_column_int64(q, 0), want);
                assert_string_equal(batch_seq(b, i), want);
                seen++;
            }
            size_t n = b->count;
            batch_free(b);
            from = next;
            if (n < 7) break;
        }
        assert_int_equal(sqlite3_step(q), SQLITE_DONE);
        sqlite3_finalize(q);
        /* caught up: an empty batch */
        batch_t *b;
        int64_t next, behind;
        int ended;
        assert_int_equal(streamdb_read(db, "s", shard, from, 7, 0, &b, &next, &ended, &behind, &err), 0);
        assert_int_equal(b->count, 0);
        assert_int_equal(next, from);
        batch_free(b);
    }
    assert_int_equal(seen, total);
    sqlite3_close(raw);
    streamdb_close(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sequence_numbers_read_are_the_stored_numbers_across_gaps_and_carries,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
