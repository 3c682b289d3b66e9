/* xalloc: allocation that never returns NULL.
 *
 * Out-of-memory is fatal in exactly one place (xalloc_oom), which logs and
 * aborts: a worker that cannot allocate cannot keep its promises about
 * checkpoints, and a supervisor restart re-delivers from the last checkpoint. */
#ifndef SHARDRUN_XALLOC_H
#define SHARDRUN_XALLOC_H

#include <stddef.h>
#include <stdlib.h>  /* free() goes with every x*alloc */

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);          /* NULL in, NULL out */
char *xstrndup(const char *s, size_t n);
/* Replaces the string *dst owns with a copy of v (NULL: none). v may be
 * *dst itself or point into it: the copy is made before the old one is freed. */
void xstrset(char **dst, const char *v);
void xalloc_oom(size_t n) __attribute__((noreturn));

#endif
