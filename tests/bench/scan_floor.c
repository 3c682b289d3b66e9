/* scan_floor: the floor of the local-source benchmarks (scripts/bench.py).
 *
 *   scan_floor STREAM_FILE STREAM [--page N] [--json FIELD]
 *
 * Reads every record of every shard of STREAM from the stream file the way
 * the local source does (runtime/source/streamdb.c, streamdb_read): the same
 * SELECT over the same columns, one page of at most N rows (default 10000,
 * the default max_records) per statement run, shard after shard, each column
 * fetched as the source fetches it. It does nothing else: no copy into a
 * batch, no sequence-number formatting, no leases, no Lua. With --json FIELD
 * each record's data is also parsed with cJSON and FIELD read as a number,
 * the floor of a processor that decodes every record.
 *
 * Prints one JSON line: {"records": N, "bytes": B, "check": X}. The caller
 * measures the process's CPU (wait4), as it does for shardrun.
 *
 * Bare on purpose: it links SQLite (and cJSON), nothing of the runtime, so an
 * overhead added to the runtime can never hide in the floor. */
#include <cjson/cJSON.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The local source's read statement (streamdb_open), word for word. */
static const char *const read_sql = "SELECT seq, arrival_ms, pkey, data FROM records WHERE sid=? AND seq>=? "
                                    "AND (? IS NULL OR seq<=?) ORDER BY seq LIMIT ?";

typedef struct totals {
    int64_t records;
    int64_t bytes;
    uint64_t check; /* folds in every value read, so no read can be skipped */
} totals_t;

static int usage(void)
{
    fprintf(stderr, "usage: scan_floor STREAM_FILE STREAM [--page N] [--json FIELD]\n");
    return 2;
}

static int fail(sqlite3 *db, const char *what)
{
    fprintf(stderr, "scan_floor: %s: %s\n", what, db ? sqlite3_errmsg(db) : "out of memory");
    return 1;
}

/* One shard, page after page, as successive GetRecords calls read it. */
static int scan_shard(sqlite3 *db, sqlite3_stmt *st, int64_t sid, int64_t end_seq, int page, const char *field,
                      totals_t *t)
{
    int64_t from = 0;
    for (;;) {
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, sid);
        sqlite3_bind_int64(st, 2, from);
        if (end_seq >= 0) {
            sqlite3_bind_int64(st, 3, end_seq);
            sqlite3_bind_int64(st, 4, end_seq);
        } else {
            sqlite3_bind_null(st, 3);
            sqlite3_bind_null(st, 4);
        }
        sqlite3_bind_int64(st, 5, page);
        int n = 0, rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            int64_t seq = sqlite3_column_int64(st, 0);
            int64_t arrival = sqlite3_column_int64(st, 1);
            const unsigned char *pkey = sqlite3_column_blob(st, 2);
            int pkey_len = sqlite3_column_bytes(st, 2);
            const unsigned char *data = sqlite3_column_blob(st, 3);
            int data_len = sqlite3_column_bytes(st, 3);
            t->check += (uint64_t)seq ^ (uint64_t)arrival;
            t->check += (pkey_len ? pkey[0] : 0) + (data_len ? data[data_len - 1] : 0);
            t->bytes += pkey_len + data_len;
            if (field) {
                cJSON *doc = cJSON_ParseWithLength((const char *)data, (size_t)data_len);
                const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, field);
                if (!cJSON_IsNumber(v)) {
                    fprintf(stderr, "scan_floor: record %lld: no number field %s in its JSON data\n",
                            (long long)seq, field);
                    cJSON_Delete(doc);
                    return 1;
                }
                t->check += (uint64_t)v->valuedouble;
                cJSON_Delete(doc);
            }
            from = seq + 1;
            n++;
        }
        if (rc != SQLITE_DONE) return fail(db, "read records");
        t->records += n;
        if (n < page) return 0;
    }
}

int main(int argc, char **argv)
{
    if (argc < 3) return usage();
    const char *path = argv[1], *stream = argv[2], *field = NULL;
    int page = 10000;
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--page") && i + 1 < argc) page = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--json") && i + 1 < argc) field = argv[++i];
        else return usage();
    }
    if (page < 1) return usage();
    sqlite3 *db = NULL;
    /* NOMUTEX, as the source opens its connection (one thread uses it): in
     * SQLite's default serialized mode every sqlite3_column_* call takes and
     * drops the connection's mutex, ~11% of this scan's CPU that shardrun
     * never pays, and a floor must not pay what the runtime does not. */
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
        return fail(db, path);
    sqlite3_stmt *shards = NULL, *read = NULL;
    if (sqlite3_prepare_v2(db, "SELECT sid, coalesce(end_seq, -1) FROM shards WHERE stream=? ORDER BY sid", -1,
                           &shards, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, read_sql, -1, &read, NULL) != SQLITE_OK)
        return fail(db, "prepare");
    sqlite3_bind_text(shards, 1, stream, -1, SQLITE_STATIC);
    totals_t t = {0};
    int nshards = 0, rc;
    while ((rc = sqlite3_step(shards)) == SQLITE_ROW) {
        nshards++;
        if (scan_shard(db, read, sqlite3_column_int64(shards, 0), sqlite3_column_int64(shards, 1), page, field, &t))
            return 1;
    }
    if (rc != SQLITE_DONE) return fail(db, "list shards");
    if (!nshards) {
        fprintf(stderr, "scan_floor: %s: no stream named %s\n", path, stream);
        return 1;
    }
    sqlite3_finalize(read);
    sqlite3_finalize(shards);
    sqlite3_close(db);
    printf("{\"records\": %lld, \"bytes\": %lld, \"check\": %llu}\n", (long long)t.records, (long long)t.bytes,
           (unsigned long long)t.check);
    return 0;
}
