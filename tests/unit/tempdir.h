/* tempdir: a fresh directory under /tmp for one test, files written into it,
 * and its removal with everything in it (header only, for the unit tests;
 * include it after cmocka.h: a file that cannot be written fails the test).
 *
 * One helper instead of each test's own write_file/mkdtemp/"rm -rf": the
 * config tests, the backends test and the AWS fixture (aws_fixture.h) all
 * load files they have just written into a directory of their own. */
#ifndef SHARDRUN_TEST_TEMPDIR_H
#define SHARDRUN_TEST_TEMPDIR_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>

/* Makes /tmp/shardrun-test-<name>-XXXXXX into dir (n bytes); 0 or -1. */
static inline int tempdir_make(char *dir, size_t n, const char *name)
{
    snprintf(dir, n, "/tmp/shardrun-test-%s-XXXXXX", name);
    return mkdtemp(dir) ? 0 : -1;
}

/* Writes text into dir/name (created or truncated) and returns its path, in
 * a buffer of its own that the next call overwrites. */
static inline const char *tempdir_write(const char *dir, const char *name, const char *text)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
    return path;
}

static inline int tempdir_remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Removes dir and everything below it (links are removed, not followed);
 * 0 or -1. */
static inline int tempdir_remove(const char *dir)
{
    return nftw(dir, tempdir_remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
