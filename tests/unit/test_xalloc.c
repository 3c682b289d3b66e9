/* xalloc: the string helpers' contracts (NULL in, NULL out; xstrset may be
 * given a string that points into the one it replaces). Under AddressSanitizer
 * (make asan-test) a use after free in xstrset fails here too. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "base/xalloc.h"

static void test_xstrdup_and_xstrndup_copy(void **state)
{
    (void)state;
    assert_null(xstrdup(NULL));
    char *a = xstrdup("shardId-000000000001");
    char *b = xstrndup("shardId-000000000001", 7);
    assert_string_equal(a, "shardId-000000000001");
    assert_string_equal(b, "shardId");
    free(a);
    free(b);
}

static void test_xstrset_replaces_and_clears(void **state)
{
    (void)state;
    char *s = NULL;
    xstrset(&s, "TRIM_HORIZON");
    assert_string_equal(s, "TRIM_HORIZON");
    const char *before = s;
    xstrset(&s, "AFTER_SEQUENCE_NUMBER:42");
    assert_string_equal(s, "AFTER_SEQUENCE_NUMBER:42");
    assert_ptr_not_equal(s, before);
    xstrset(&s, NULL);
    assert_null(s);
    xstrset(&s, NULL);
    assert_null(s);
}

static void test_xstrset_from_a_part_of_itself(void **state)
{
    (void)state;
    char *s = xstrdup("AFTER_SEQUENCE_NUMBER:49590338271490256608559692538361571095921575989136588898");
    xstrset(&s, s + strlen("AFTER_SEQUENCE_NUMBER:"));
    assert_string_equal(s, "49590338271490256608559692538361571095921575989136588898");
    xstrset(&s, s);
    assert_string_equal(s, "49590338271490256608559692538361571095921575989136588898");
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_xstrdup_and_xstrndup_copy),
        cmocka_unit_test(test_xstrset_replaces_and_clears),
        cmocka_unit_test(test_xstrset_from_a_part_of_itself),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
