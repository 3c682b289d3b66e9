#include "xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void xalloc_oom(size_t n)
{
    char line[128];
    int len = snprintf(line, sizeof line, "level=error event=out_of_memory bytes=%zu\n", n);
    if (len > 0 && write(2, line, (size_t)len) < 0) {
        /* nothing more we can do: we are about to abort anyway */
    }
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) xalloc_oom(n);
    return p;
}

void *xcalloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) xalloc_oom(count * size);
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) xalloc_oom(n);
    return q;
}

char *xstrdup(const char *s)
{
    return s ? xstrndup(s, strlen(s)) : NULL;
}

void xstrset(char **dst, const char *v)
{
    char *copy = xstrdup(v); /* owned by whoever owns *dst */
    free(*dst);
    *dst = copy;
}

char *xstrndup(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}
