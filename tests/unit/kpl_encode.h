/* kpl_encode: a KPL aggregate writer for the tests (header-only, static).
 *
 * The runtime only reads aggregates; tests need to make them. Appends one
 * aggregate holding recs[0..n) to `out` (magic, protobuf AggregatedRecord,
 * MD5). Partition keys and explicit hash keys are de-duplicated into the
 * tables; a record with ehk == NULL gets no explicit hash key. Returns 0, or
 * -1 if `out`'s bound was hit or a record is malformed (out is then left as
 * it was). test_kpl checks it against the runtime's reader. */
#ifndef SHARDRUN_TEST_KPL_ENCODE_H
#define SHARDRUN_TEST_KPL_ENCODE_H

#include <openssl/evp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "record/kpl.h"

enum { KPLW_VARINT = 0, KPLW_LEN = 2 };
enum { KPLW_AGG_PKEY_TABLE = 1, KPLW_AGG_EHK_TABLE = 2, KPLW_AGG_RECORDS = 3 };
enum { KPLW_REC_PKEY_INDEX = 1, KPLW_REC_EHK_INDEX = 2, KPLW_REC_DATA = 3 };

static int kpl_encode_md5(const uint8_t *p, size_t n, uint8_t out[KPL_DIGEST_LEN])
{
    unsigned int len = 0;
    return EVP_Digest(p, n, out, &len, EVP_md5(), NULL) == 1 && len == KPL_DIGEST_LEN ? 0 : -1;
}

static size_t pbw_varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static int pbw_varint(buf_t *b, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = 0;
    while (v >= 0x80) {
        tmp[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    tmp[n++] = (uint8_t)v;
    return buf_append(b, tmp, n);
}

static int pbw_tag(buf_t *b, uint32_t field, int wt)
{
    return pbw_varint(b, ((uint64_t)field << 3) | (uint64_t)wt);
}

static int pbw_bytes(buf_t *b, uint32_t field, const uint8_t *p, size_t n)
{
    if (pbw_tag(b, field, KPLW_LEN) != 0 || pbw_varint(b, n) != 0) return -1;
    return n ? buf_append(b, p, n) : 0;
}

static int kpl_same(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    return an == bn && (an == 0 || memcmp(a, b, an) == 0);
}

/* Index of record i's key in the table whose entries are the keys of records
 * first[0..*count), appending it if new. `ehk` picks which key. */
static size_t kpl_intern(const kpl_user_record_t *recs, size_t *first, size_t *count, size_t i,
                         int ehk)
{
    const uint8_t *p = ehk ? recs[i].ehk : recs[i].pkey;
    size_t n = ehk ? recs[i].ehk_len : recs[i].pkey_len;
    for (size_t k = 0; k < *count; k++) {
        const kpl_user_record_t *o = &recs[first[k]];
        if (ehk ? kpl_same(o->ehk, o->ehk_len, p, n) : kpl_same(o->pkey, o->pkey_len, p, n))
            return k;
    }
    first[*count] = i;
    return (*count)++;
}

static int kpl_encode(buf_t *out, const kpl_user_record_t *recs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((recs[i].pkey == NULL && recs[i].pkey_len) || (recs[i].data == NULL && recs[i].data_len) ||
            (recs[i].ehk == NULL && recs[i].ehk_len))
            return -1;
    if (n > SIZE_MAX / (4 * sizeof(size_t))) return -1;

    /* One scratch allocation: per-record table indexes, and for each table
     * the record that first used each distinct key. Freed below. (Never
     * NULL, even for n == 0: pointer arithmetic on NULL is undefined.) */
    size_t *scratch = malloc(4 * (n ? n : 1) * sizeof(size_t));
    if (!scratch) return -1;
    size_t *pidx = scratch, *eidx = scratch + n, *pfirst = scratch + 2 * n,
           *efirst = scratch + 3 * n;
    size_t np = 0, ne = 0;
    for (size_t i = 0; i < n; i++) {
        pidx[i] = kpl_intern(recs, pfirst, &np, i, 0);
        eidx[i] = recs[i].ehk ? kpl_intern(recs, efirst, &ne, i, 1) : 0;
    }

    /* Built in a private buffer so `out` is untouched on failure. */
    buf_t b = BUF_INIT;
    int rc = buf_append(&b, KPL_MAGIC, KPL_MAGIC_LEN);
    for (size_t k = 0; rc == 0 && k < np; k++)
        rc = pbw_bytes(&b, KPLW_AGG_PKEY_TABLE, recs[pfirst[k]].pkey, recs[pfirst[k]].pkey_len);
    for (size_t k = 0; rc == 0 && k < ne; k++)
        rc = pbw_bytes(&b, KPLW_AGG_EHK_TABLE, recs[efirst[k]].ehk, recs[efirst[k]].ehk_len);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        int has_ehk = recs[i].ehk != NULL;
        size_t body = 1 + pbw_varint_len(pidx[i]) +
                      (has_ehk ? 1 + pbw_varint_len(eidx[i]) : 0) +
                      1 + pbw_varint_len(recs[i].data_len) + recs[i].data_len;
        rc = pbw_tag(&b, KPLW_AGG_RECORDS, KPLW_LEN);
        if (rc == 0) rc = pbw_varint(&b, body);
        if (rc == 0) rc = pbw_tag(&b, KPLW_REC_PKEY_INDEX, KPLW_VARINT);
        if (rc == 0) rc = pbw_varint(&b, pidx[i]);
        if (rc == 0 && has_ehk) rc = pbw_tag(&b, KPLW_REC_EHK_INDEX, KPLW_VARINT);
        if (rc == 0 && has_ehk) rc = pbw_varint(&b, eidx[i]);
        if (rc == 0) rc = pbw_bytes(&b, KPLW_REC_DATA, recs[i].data, recs[i].data_len);
    }
    free(scratch);

    uint8_t digest[KPL_DIGEST_LEN];
    if (rc == 0)
        rc = kpl_encode_md5((const uint8_t *)b.data + KPL_MAGIC_LEN, b.len - KPL_MAGIC_LEN, digest);
    if (rc == 0) rc = buf_append(&b, digest, KPL_DIGEST_LEN);
    if (rc == 0) rc = buf_append(out, b.data, b.len);
    buf_free(&b);
    return rc == 0 ? 0 : -1;
}

#endif
