#include "strdist.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

size_t strdist(const char *a, const char *b)
{
    size_t n = strlen(a), m = strlen(b);
    /* three rows of the optimal-string-alignment table */
    size_t *rows = xcalloc(3 * (m + 1), sizeof *rows); /* freed below */
    size_t *pp = rows, *p = rows + m + 1, *c = rows + 2 * (m + 1);
    for (size_t j = 0; j <= m; j++)
        p[j] = j;
    for (size_t i = 1; i <= n; i++) {
        c[0] = i;
        for (size_t j = 1; j <= m; j++) {
            int ai = tolower((unsigned char)a[i - 1]), bj = tolower((unsigned char)b[j - 1]);
            size_t best = p[j - 1] + (ai != bj);
            if (p[j] + 1 < best) best = p[j] + 1;
            if (c[j - 1] + 1 < best) best = c[j - 1] + 1;
            if (i > 1 && j > 1 && ai == tolower((unsigned char)b[j - 2]) && tolower((unsigned char)a[i - 2]) == bj &&
                pp[j - 2] + 1 < best)
                best = pp[j - 2] + 1;
            c[j] = best;
        }
        size_t *t = pp;
        pp = p;
        p = c;
        c = t;
    }
    size_t d = p[m];
    free(rows);
    return d;
}

const char *strdist_nearest(const char *word, const char *const *candidates)
{
    size_t n = strlen(word), limit = n < 5 ? 1 : n < 12 ? 2 : n / 4;
    const char *best = NULL;
    size_t best_d = limit + 1;
    for (const char *const *c = candidates; *c; c++) {
        if (!strcmp(*c, word)) return NULL;
        size_t d = strdist(word, *c);
        if (d < best_d) {
            best_d = d;
            best = *c;
        }
    }
    return best;
}
