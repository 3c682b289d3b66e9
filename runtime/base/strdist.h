/* strdist: "did you mean ...?" for names a user typed (config fields,
 * enum values, commands). */
#ifndef SHARDRUN_STRDIST_H
#define SHARDRUN_STRDIST_H

#include <stddef.h>

/* The edit distance between a and b: insertions, deletions, substitutions
 * and swaps of two adjacent characters count one each; letters compare
 * without case. */
size_t strdist(const char *a, const char *b);

/* The candidate (of a NULL-ended list) closest to `word`, if it is close
 * enough to be what was meant: at most 1 edit for words under 5 characters,
 * 2 under 12, a quarter of the length beyond (`shutdown_grace` is 3 edits
 * from `shutdown_grace_ms`). NULL when none is, or when `word` is listed. */
const char *strdist_nearest(const char *word, const char *const *candidates);

#endif
