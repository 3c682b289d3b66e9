/* errbuf: an error message the callee writes and the caller prints.
 *
 * Functions that can fail for reasons a user must see (bad config, missing
 * stream, corrupt file) take an errbuf_t* and return -1 with the message set;
 * the message names the thing (file, field, stream, shard) and what to do. */
#ifndef SHARDRUN_ERRBUF_H
#define SHARDRUN_ERRBUF_H

typedef struct errbuf {
    char msg[1024];
} errbuf_t;

/* Sets the message (printf-style) and returns -1, so `return errbuf_set(...)`. */
int errbuf_set(errbuf_t *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
