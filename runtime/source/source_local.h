/* source_local: the stream source over a local SQLite stream file.
 *
 * Each request runs at once on the loop thread (the queries are short and
 * indexed) and its callback is delivered on the next loop turn (defer). The
 * iterator is the decimal sequence number where the next read starts. */
#ifndef SHARDRUN_SOURCE_LOCAL_H
#define SHARDRUN_SOURCE_LOCAL_H

#include "base/errbuf.h"
#include "source.h"

/* Caller owns the source; free with source_destroy(). */
source_t *source_local_new(struct ev_loop *loop, const char *path, errbuf_t *err);

#endif
