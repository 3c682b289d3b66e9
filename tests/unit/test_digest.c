/* digest: MD5, SHA-256 and HMAC-SHA256 against published vectors (RFC 1321,
 * FIPS 180-2, RFC 4231), from one thread and from several at once (the
 * algorithms are fetched once and shared). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "base/digest.h"

/* digest_hex, checked against printf once, then used below */
static void hex(const unsigned char *in, size_t n, char *out)
{
    digest_hex(in, n, out);
}

static void test_hex_is_lowercase_and_terminated(void **state)
{
    (void)state;
    const unsigned char in[] = {0x00, 0x0f, 0xa5, 0xff};
    char out[9], want[9];
    memset(out, 'x', sizeof out);
    digest_hex(in, sizeof in, out);
    for (size_t i = 0; i < sizeof in; i++) snprintf(want + 2 * i, 3, "%02x", in[i]);
    assert_string_equal(out, want);
    assert_string_equal(out, "000fa5ff");
}

static void assert_md5(const char *msg, const char *want)
{
    unsigned char md[DIGEST_MD5_LEN];
    char got[2 * DIGEST_MD5_LEN + 1];
    assert_int_equal(digest_md5(msg, strlen(msg), md), 0);
    hex(md, sizeof md, got);
    assert_string_equal(got, want);
}

static void assert_sha256(const char *msg, const char *want)
{
    unsigned char md[DIGEST_SHA256_LEN];
    char got[2 * DIGEST_SHA256_LEN + 1];
    digest_sha256(msg, strlen(msg), md);
    hex(md, sizeof md, got);
    assert_string_equal(got, want);
}

static void test_md5_matches_rfc_1321(void **state)
{
    (void)state;
    assert_md5("", "d41d8cd98f00b204e9800998ecf8427e");
    assert_md5("abc", "900150983cd24fb0d6963f7d28e17f72");
    assert_md5("message digest", "f96b697d7cb7938d525a2f31aaf161d0");
}

static void test_sha256_matches_fips_180_2(void **state)
{
    (void)state;
    assert_sha256("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_sha256("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
                  "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

/* RFC 4231 test cases 1 and 2; and 6: a key longer than a block, which
 * HMAC hashes first. */
static void test_hmac_sha256_matches_rfc_4231(void **state)
{
    (void)state;
    unsigned char key1[20], key6[131], md[DIGEST_SHA256_LEN];
    char got[2 * DIGEST_SHA256_LEN + 1];
    memset(key1, 0x0b, sizeof key1);
    digest_hmac_sha256(key1, sizeof key1, "Hi There", 8, md);
    hex(md, sizeof md, got);
    assert_string_equal(got, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");

    digest_hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, md);
    hex(md, sizeof md, got);
    assert_string_equal(got, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");

    memset(key6, 0xaa, sizeof key6);
    const char *msg6 = "Test Using Larger Than Block-Size Key - Hash Key First";
    digest_hmac_sha256(key6, sizeof key6, msg6, strlen(msg6), md);
    hex(md, sizeof md, got);
    assert_string_equal(got, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

/* Each thread hashes and signs the same inputs many times; every answer must
 * be the single-threaded one (the shared HMAC template is only duplicated,
 * never used in place). */
static void *hash_a_lot(void *arg)
{
    int *bad = arg;
    unsigned char md[DIGEST_SHA256_LEN], want[DIGEST_SHA256_LEN], m5[DIGEST_MD5_LEN];
    digest_hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, want);
    for (int i = 0; i < 2000; i++) {
        digest_hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, md);
        if (memcmp(md, want, sizeof md)) (*bad)++;
        digest_sha256("abc", 3, md);
        if (md[0] != 0xba || md[31] != 0xad) (*bad)++;
        if (digest_md5("abc", 3, m5) || m5[0] != 0x90 || m5[15] != 0x72) (*bad)++;
    }
    return NULL;
}

static void test_threads_share_the_fetched_algorithms(void **state)
{
    (void)state;
    pthread_t t[4];
    int bad[4] = {0};
    for (int i = 0; i < 4; i++) assert_int_equal(pthread_create(&t[i], NULL, hash_a_lot, &bad[i]), 0);
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(bad[i], 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hex_is_lowercase_and_terminated),
        cmocka_unit_test(test_md5_matches_rfc_1321),
        cmocka_unit_test(test_sha256_matches_fips_180_2),
        cmocka_unit_test(test_hmac_sha256_matches_rfc_4231),
        cmocka_unit_test(test_threads_share_the_fetched_algorithms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
