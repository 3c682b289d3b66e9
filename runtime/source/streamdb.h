/* streamdb: the local stream, a SQLite file holding streams, shards, records.
 *
 * Synchronous; used by the CLI (create, put, split, merge, list) and, through
 * source_local, by workers. Many processes may use one file at once (WAL).
 * Sequence numbers come from one counter per file, so they increase within a
 * shard and across the shards of a resharding (parent before child). */
#ifndef SHARDRUN_STREAMDB_H
#define SHARDRUN_STREAMDB_H

#include <stddef.h>
#include <stdint.h>

#include "record/batch.h"
#include "record/seqnum.h"
#include "base/errbuf.h"
#include "source.h"

typedef struct streamdb streamdb_t;

/* Opens (creating the file and schema when `create`) the stream file at path.
 * Caller owns the handle; close with streamdb_close(). */
int streamdb_open(const char *path, int create, streamdb_t **out, errbuf_t *err);
void streamdb_close(streamdb_t *db);

int streamdb_create_stream(streamdb_t *db, const char *stream, int shards, errbuf_t *err);
/* Calls fn for each stream: name, open shard count, total shard count, records. */
int streamdb_list_streams(streamdb_t *db,
                          void (*fn)(void *ud, const char *name, int open, int total, int64_t records),
                          void *ud, errbuf_t *err);
/* All shards of a stream, open and closed. Caller owns *out. */
int streamdb_shards(streamdb_t *db, const char *stream, source_shard_list_t **out, errbuf_t *err);

/* Puts are grouped in transactions: begin, put..., commit. */
int streamdb_begin(streamdb_t *db, errbuf_t *err);
int streamdb_commit(streamdb_t *db, errbuf_t *err);
void streamdb_rollback(streamdb_t *db);
/* Appends one record to the open shard whose hash range holds MD5(pkey).
 * Writes the shard id (>= 32 bytes) and sequence number (>= 24 bytes).
 * Returns 0, -1 (the file: busy, I/O, no such stream), or STREAMDB_EINVAL
 * when the record itself can never be stored (over 1 MiB). */
#define STREAMDB_EINVAL (-2)
int streamdb_put(streamdb_t *db, const char *stream, const void *pkey, size_t pkey_len, const void *data,
                 size_t data_len, int64_t arrival_ms, char *shard_out, char *seq_out, errbuf_t *err);
/* The same, routed by hash key h instead of MD5(pkey) (an explicit hash key). */
int streamdb_put_hashed(streamdb_t *db, const char *stream, hashkey_t h, const void *pkey, size_t pkey_len,
                        const void *data, size_t data_len, int64_t arrival_ms, char *shard_out, char *seq_out,
                        errbuf_t *err);

/* Resolves a position into the first sequence number to read. */
int streamdb_iterator(streamdb_t *db, const char *stream, const char *shard, const source_position_t *pos,
                      int64_t *first_seq, errbuf_t *err);
/* Reads up to max records with seq >= from, stopping before the batch would
 * pass max_bytes (0: no limit; at least one record is read). *ended = 1 when
 * the shard is closed and nothing is left after the returned records; *next
 * = where the next read starts. Caller owns *out. */
int streamdb_read(streamdb_t *db, const char *stream, const char *shard, int64_t from, size_t max, size_t max_bytes,
                  batch_t **out, int64_t *next, int *ended, int64_t *millis_behind, errbuf_t *err);
/* The shard's row id: the name of its doorbell (doorbell.h). */
int streamdb_shard_rowid(streamdb_t *db, const char *stream, const char *shard, int64_t *sid, errbuf_t *err);
/* Records in the shard after `checkpoint` (a sentinel or a number); -1 on error. */
int64_t streamdb_records_behind(streamdb_t *db, const char *stream, const char *shard, const char *checkpoint);

/* Splits `shard` at new_start_hash (NULL = the middle of its range) into two
 * children, or merges two adjacent shards into one, as Kinesis does. The
 * parents are closed (their records stay readable); puts go to the children. */
int streamdb_split(streamdb_t *db, const char *stream, const char *shard, const char *new_start_hash,
                   errbuf_t *err);
int streamdb_merge(streamdb_t *db, const char *stream, const char *shard, const char *adjacent,
                   errbuf_t *err);

/* Sequence numbers are written with this many digits (zero-padded). */
#define STREAMDB_SEQ_DIGITS 20
void streamdb_format_seq(int64_t seq, char *out /* >= 24 bytes */);

#endif
