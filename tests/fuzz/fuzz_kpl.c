/* fuzz_kpl: libFuzzer harness for KPL de-aggregation.
 *
 * Each input is tried twice: as a raw Kinesis record, and as a protobuf body
 * wrapped with the magic and its correct MD5, since random bytes almost never
 * carry a matching digest and the parser would otherwise go unexercised.
 * Checks, beyond ASan/UBSan: every user record lies inside the input, indexes
 * count up from 0, and the iterator yields exactly kpl_iter_count() records.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iruntime tests/fuzz/fuzz_kpl.c \
 *       runtime/record/kpl.c runtime/base/buf.c runtime/base/log.c runtime/base/xalloc.c -lcrypto -lpthread \
 *       -o build/fuzz_kpl
 *   mkdir -p build/fuzz-corpus
 *   build/fuzz_kpl -max_total_time=30 -dict=tests/fuzz/fuzz_kpl.dict build/fuzz-corpus
 * The dictionary matters: without it libFuzzer rarely builds a record whose
 * partition key index is in range, and the iterator goes unexercised. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "record/kpl.h"

static int inside(const uint8_t *p, size_t n, const uint8_t *base, size_t len)
{
    if (n == 0) return p == NULL || (p >= base && p <= base + len);
    return p >= base && p <= base + len && n <= (size_t)(base + len - p);
}

static void check(const uint8_t *data, size_t len)
{
    kpl_iter_t it;
    kpl_user_record_t r;
    int agg = kpl_iter_init(&it, data, len);
    if (agg != kpl_is_aggregate(data, len)) abort();
    if (!agg) {
        if (kpl_count(data, len) != 1 || kpl_iter_next(&it, &r) != 0) abort();
        return;
    }
    size_t got = 0;
    int rc;
    while ((rc = kpl_iter_next(&it, &r)) == 1) {
        if (r.index != got++) abort();
        if (!inside(r.pkey, r.pkey_len, data, len) || !inside(r.data, r.data_len, data, len))
            abort();
        if (r.ehk != NULL && !inside(r.ehk, r.ehk_len, data, len)) abort();
        if (r.pkey == NULL && r.pkey_len) abort();
    }
    if (rc != 0 || got != kpl_iter_count(&it) || got != kpl_count(data, len)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check(data, size);

    /* Exact-size copy so ASan catches any read past the end. */
    size_t len = KPL_MAGIC_LEN + size + KPL_DIGEST_LEN;
    uint8_t *agg = malloc(len);
    if (agg == NULL) return 0;
    unsigned int mdlen = 0;
    memcpy(agg, KPL_MAGIC, KPL_MAGIC_LEN);
    if (size) memcpy(agg + KPL_MAGIC_LEN, data, size);
    if (EVP_Digest(data, size, agg + KPL_MAGIC_LEN + size, &mdlen, EVP_md5(), NULL) == 1 &&
        mdlen == KPL_DIGEST_LEN)
        check(agg, len);
    free(agg);
    return 0;
}
