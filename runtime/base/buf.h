/* buf: one growable byte buffer used everywhere instead of ad-hoc realloc loops.
 *
 * A buf_t is embedded in its owner and starts zeroed (BUF_INIT). It keeps a NUL
 * after the content so text can be used as a C string. Growth beyond `max`
 * (0 = unlimited) fails with -1 and leaves the content unchanged. Out-of-memory
 * aborts the process (see xalloc.h), so appends only fail on the bound. */
#ifndef SHARDRUN_BUF_H
#define SHARDRUN_BUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct buf {
    char *data;   /* owned; NULL until the first append */
    size_t len;
    size_t cap;
    size_t max;   /* 0 = no bound */
} buf_t;

#define BUF_INIT {NULL, 0, 0, 0}

void buf_init(buf_t *b, size_t max);
void buf_free(buf_t *b);                 /* frees the data; b can be reused */
void buf_reset(buf_t *b);                /* len = 0, keeps the allocation */
int buf_reserve(buf_t *b, size_t extra); /* room for `extra` more bytes + NUL */
int buf_append(buf_t *b, const void *p, size_t n);
int buf_append_str(buf_t *b, const char *s);
int buf_append_char(buf_t *b, char c);
int buf_printf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(buf_t *b, const char *fmt, va_list ap);
/* Hands the data to the caller (who frees it with free()); b becomes empty.
 * Returns an empty string rather than NULL when nothing was appended. */
char *buf_detach(buf_t *b);
/* Content as a C string ("" when empty); valid until the next change to b. */
const char *buf_str(const buf_t *b);

#endif
