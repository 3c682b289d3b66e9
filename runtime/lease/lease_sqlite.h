/* lease_sqlite: the embedded lease store, one table per application in a
 * SQLite file, in the KCL's schema. Many worker processes share the file
 * (WAL); every write is a single conditional UPDATE, so two processes can
 * never both believe they won the same change. Statements run on a thread
 * of the store's own, in the order asked (a file another process holds
 * locked, or a slow disk, never holds up the loop); answers come back on the
 * loop, never inside the call. */
#ifndef SHARDRUN_LEASE_SQLITE_H
#define SHARDRUN_LEASE_SQLITE_H

#include "base/errbuf.h"
#include "lease.h"

/* Caller owns the store; free with lease_store_destroy(). */
lease_store_t *lease_sqlite_new(struct ev_loop *loop, const char *path, const char *table, errbuf_t *err);

/* Parses one row's JSON-array text (parentShardId, childShardIds); -1 if malformed.
 * Caller owns *out (each string and the array). */
int lease_sqlite_parse_ids(const char *json, char ***out, size_t *n);

#endif
