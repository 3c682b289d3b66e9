/* kpl: de-aggregation of KPL aggregated records (see kpl.h for the format).
 *
 * A small protobuf reader does all the parsing: every read is checked against
 * the end of its enclosing message, varints longer than 64 bits are rejected,
 * and unknown fields of every wire type (groups included) are skipped, as a
 * generated proto2 parser would. kpl_iter_init() validates the whole
 * aggregate once, so kpl_iter_next() only has to walk it. */
#include "kpl.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "base/digest.h"
#include "base/log.h"
#include "base/xalloc.h"

/* Protobuf wire types. */
enum { PB_VARINT = 0, PB_I64 = 1, PB_LEN = 2, PB_SGROUP = 3, PB_EGROUP = 4, PB_I32 = 5 };
#define PB_MAX_FIELD 0x1FFFFFFFu
/* Nesting of unknown groups we are willing to skip; deeper is malformed (and
 * bounds the skipper's stack). */
#define PB_MAX_GROUP_DEPTH 32

/* Field numbers of AggregatedRecord, Record and Tag. */
enum { AGG_PKEY_TABLE = 1, AGG_EHK_TABLE = 2, AGG_RECORDS = 3 };
enum { REC_PKEY_INDEX = 1, REC_EHK_INDEX = 2, REC_DATA = 3, REC_TAGS = 4 };
enum { TAG_KEY = 1, TAG_VALUE = 2 };

/* A read cursor over one message: [p, p + len), next byte at pos. */
typedef struct pb {
    const uint8_t *p;
    size_t len;
    size_t pos;
} pb_t;

static void pb_init(pb_t *r, const uint8_t *p, size_t len, size_t pos)
{
    r->p = p;
    r->len = len;
    r->pos = pos;
}

static int pb_eof(const pb_t *r) { return r->pos >= r->len; }

/* Reads a base-128 varint of at most 64 bits. Returns 0, or -1 on truncation
 * or overflow. */
static int pb_varint(pb_t *r, uint64_t *out)
{
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (r->pos >= r->len) return -1;
        uint8_t b = r->p[r->pos++];
        /* The 10th byte may only carry the 64th bit. */
        if (shift == 63 && b > 1) return -1;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

/* Reads a field key. Returns 0, or -1 for field number 0 / out of range or an
 * undefined wire type (6, 7). */
static int pb_tag(pb_t *r, uint32_t *field, int *wt)
{
    uint64_t key;
    if (pb_varint(r, &key) != 0) return -1;
    uint64_t f = key >> 3;
    int w = (int)(key & 7);
    if (f == 0 || f > PB_MAX_FIELD || w > PB_I32) return -1;
    *field = (uint32_t)f;
    *wt = w;
    return 0;
}

/* Reads the payload of a length-delimited field; *p points into the input. */
static int pb_bytes(pb_t *r, const uint8_t **p, size_t *n)
{
    uint64_t len;
    if (pb_varint(r, &len) != 0) return -1;
    if (len > (uint64_t)(r->len - r->pos)) return -1;
    *p = r->p + r->pos;
    *n = (size_t)len;
    r->pos += (size_t)len;
    return 0;
}

static int pb_advance(pb_t *r, size_t n)
{
    if (n > r->len - r->pos) return -1;
    r->pos += n;
    return 0;
}

/* Skips a field's payload of any wire type but groups. */
static int pb_skip_scalar(pb_t *r, int wt)
{
    uint64_t v;
    const uint8_t *p;
    size_t n;
    switch (wt) {
    case PB_VARINT: return pb_varint(r, &v);
    case PB_I64: return pb_advance(r, 8);
    case PB_I32: return pb_advance(r, 4);
    case PB_LEN: return pb_bytes(r, &p, &n);
    default: return -1;
    }
}

/* Skips an unknown field's payload, whose key (`field`, `wt`) was just read.
 * A group runs until the END_GROUP of the same field number; nested groups
 * are tracked on a bounded stack instead of by recursion. */
static int pb_skip(pb_t *r, uint32_t field, int wt)
{
    if (wt == PB_EGROUP) return -1; /* an END_GROUP nobody opened */
    if (wt != PB_SGROUP) return pb_skip_scalar(r, wt);

    uint32_t open[PB_MAX_GROUP_DEPTH];
    int depth = 0;
    open[depth++] = field;
    while (depth > 0) {
        uint32_t f;
        int w;
        if (pb_tag(r, &f, &w) != 0) return -1;
        if (w == PB_EGROUP) {
            if (open[depth - 1] != f) return -1;
            depth--;
        } else if (w == PB_SGROUP) {
            if (depth == PB_MAX_GROUP_DEPTH) return -1;
            open[depth++] = f;
        } else if (pb_skip_scalar(r, w) != 0) {
            return -1;
        }
    }
    return 0;
}

/* A parsed Record: indexes are checked against the tables by the caller. */
typedef struct kpl_rec {
    uint64_t pkey_index;
    uint64_t ehk_index;
    int has_pkey_index;
    int has_ehk_index;
    int has_data;
    const uint8_t *data;
    size_t data_len;
} kpl_rec_t;

/* A Tag is only validated (its required key present), never exposed, so that
 * "valid aggregate" means what it means to the KCL's protobuf parser. */
static int kpl_check_tag(const uint8_t *p, size_t len)
{
    pb_t r;
    pb_init(&r, p, len, 0);
    int has_key = 0;
    while (!pb_eof(&r)) {
        uint32_t f;
        int wt;
        if (pb_tag(&r, &f, &wt) != 0) return -1;
        if (f == TAG_KEY && wt == PB_LEN) has_key = 1;
        if (pb_skip(&r, f, wt) != 0) return -1;
    }
    return has_key ? 0 : -1;
}

/* Parses one Record message. A known field with an unexpected wire type is an
 * unknown field (as in generated parsers); a repeated scalar keeps the last. */
static int kpl_parse_record(const uint8_t *p, size_t len, kpl_rec_t *rec)
{
    pb_t r;
    pb_init(&r, p, len, 0);
    memset(rec, 0, sizeof *rec);
    while (!pb_eof(&r)) {
        uint32_t f;
        int wt;
        if (pb_tag(&r, &f, &wt) != 0) return -1;
        if (f == REC_PKEY_INDEX && wt == PB_VARINT) {
            if (pb_varint(&r, &rec->pkey_index) != 0) return -1;
            rec->has_pkey_index = 1;
        } else if (f == REC_EHK_INDEX && wt == PB_VARINT) {
            if (pb_varint(&r, &rec->ehk_index) != 0) return -1;
            rec->has_ehk_index = 1;
        } else if (f == REC_DATA && wt == PB_LEN) {
            if (pb_bytes(&r, &rec->data, &rec->data_len) != 0) return -1;
            rec->has_data = 1;
        } else if (f == REC_TAGS && wt == PB_LEN) {
            const uint8_t *tp;
            size_t tn;
            if (pb_bytes(&r, &tp, &tn) != 0) return -1;
            if (kpl_check_tag(tp, tn) != 0) return -1;
        } else if (pb_skip(&r, f, wt) != 0) {
            return -1;
        }
    }
    return rec->has_pkey_index && rec->has_data ? 0 : -1;
}

/* Notes entry number t->count of a key table, found at top-level offset
 * `off`. Marks sit every `stride` entries; when they run out, every other
 * one is dropped and the stride doubles, so one pass suffices. */
static void kpl_table_add(kpl_table_t *t, size_t off)
{
    size_t k = t->count++;
    if (t->stride == 0) t->stride = 1;
    if (k % t->stride) return;
    size_t slot = k / t->stride;
    if (slot == KPL_ITER_MARKS) {
        for (size_t i = 0; i < KPL_ITER_MARKS / 2; i++) t->mark[i] = t->mark[2 * i];
        t->stride *= 2;
        if (k % t->stride) return;
        slot = k / t->stride;
    }
    t->mark[slot] = off;
}

/* Finds entry `idx` of the key table stored as top-level field `field`,
 * scanning from the nearest mark. Returns 0, or -1 if it is not there. */
static int kpl_table_get(const kpl_iter_t *it, const kpl_table_t *t, uint32_t field,
                         uint64_t idx, const uint8_t **p, size_t *n)
{
    if (idx >= t->count) return -1;
    size_t m = (size_t)idx / t->stride;
    size_t entry = m * t->stride;
    pb_t r;
    pb_init(&r, it->pb, it->pb_len, t->mark[m]);
    while (!pb_eof(&r)) {
        uint32_t f;
        int wt;
        if (pb_tag(&r, &f, &wt) != 0) return -1;
        if (f == field && wt == PB_LEN) {
            if (pb_bytes(&r, p, n) != 0) return -1;
            if (entry++ == idx) return 0;
        } else if (pb_skip(&r, f, wt) != 0) {
            return -1;
        }
    }
    return -1;
}

/* Computes MD5(p[0..n)) into out. Returns 0, or -1 when this OpenSSL cannot
 * (e.g. FIPS mode without MD5), logged once: aggregates then pass through. */
static int kpl_md5_digest(const uint8_t *p, size_t n, uint8_t out[KPL_DIGEST_LEN])
{
    static atomic_flag warned = ATOMIC_FLAG_INIT;
    if (!digest_md5(p, n, out)) return 0;
    if (!atomic_flag_test_and_set(&warned))
        log_error("kpl_md5_unavailable",
                  "reason=\"OpenSSL cannot compute MD5\" effect=\"KPL aggregates are passed "
                  "through undecoded\" fix=\"enable the default provider\"");
    return -1;
}

int kpl_iter_init(kpl_iter_t *it, const uint8_t *data, size_t len)
{
    memset(it, 0, sizeof *it);
    if (data == NULL || len < KPL_MAGIC_LEN + KPL_DIGEST_LEN) return 0;
    if (memcmp(data, KPL_MAGIC, KPL_MAGIC_LEN) != 0) return 0;

    const uint8_t *pb = data + KPL_MAGIC_LEN;
    size_t pb_len = len - KPL_MAGIC_LEN - KPL_DIGEST_LEN;
    uint8_t digest[KPL_DIGEST_LEN];
    if (kpl_md5_digest(pb, pb_len, digest) != 0) return 0;
    if (memcmp(digest, pb + pb_len, KPL_DIGEST_LEN) != 0) return 0;

    /* One pass: count the tables (noting marks), parse every record, and
     * remember the largest indexes; tables may legally come after records,
     * so ranges are checked at the end. */
    kpl_iter_t v;
    memset(&v, 0, sizeof v);
    uint64_t max_pkey = 0, max_ehk = 0;
    int any_ehk = 0;
    pb_t r;
    pb_init(&r, pb, pb_len, 0);
    while (!pb_eof(&r)) {
        size_t at = r.pos;
        uint32_t f;
        int wt;
        if (pb_tag(&r, &f, &wt) != 0) return 0;
        if (f == AGG_PKEY_TABLE && wt == PB_LEN) {
            kpl_table_add(&v.pkeys, at);
            if (pb_skip(&r, f, wt) != 0) return 0;
        } else if (f == AGG_EHK_TABLE && wt == PB_LEN) {
            kpl_table_add(&v.ehks, at);
            if (pb_skip(&r, f, wt) != 0) return 0;
        } else if (f == AGG_RECORDS && wt == PB_LEN) {
            const uint8_t *rp;
            size_t rn;
            kpl_rec_t rec;
            if (pb_bytes(&r, &rp, &rn) != 0) return 0;
            if (kpl_parse_record(rp, rn, &rec) != 0) return 0;
            if (rec.pkey_index > max_pkey) max_pkey = rec.pkey_index;
            if (rec.has_ehk_index) {
                any_ehk = 1;
                if (rec.ehk_index > max_ehk) max_ehk = rec.ehk_index;
            }
            v.count++;
        } else if (pb_skip(&r, f, wt) != 0) {
            return 0;
        }
    }
    if (v.count > 0 && max_pkey >= (uint64_t)v.pkeys.count) return 0;
    if (any_ehk && max_ehk >= (uint64_t)v.ehks.count) return 0;

    v.pb = pb;
    v.pb_len = pb_len;
    *it = v;
    return 1;
}

int kpl_iter_next(kpl_iter_t *it, kpl_user_record_t *out)
{
    if (it->pb == NULL) return 0; /* a plain record: nothing to expand */
    pb_t r;
    pb_init(&r, it->pb, it->pb_len, it->pos);
    while (!pb_eof(&r)) {
        uint32_t f;
        int wt;
        if (pb_tag(&r, &f, &wt) != 0) return -1;
        if (!(f == AGG_RECORDS && wt == PB_LEN)) {
            if (pb_skip(&r, f, wt) != 0) return -1;
            continue;
        }
        const uint8_t *rp;
        size_t rn;
        kpl_rec_t rec;
        if (pb_bytes(&r, &rp, &rn) != 0) return -1;
        if (kpl_parse_record(rp, rn, &rec) != 0) return -1;
        memset(out, 0, sizeof *out);
        if (kpl_table_get(it, &it->pkeys, AGG_PKEY_TABLE, rec.pkey_index, &out->pkey,
                          &out->pkey_len) != 0)
            return -1;
        if (rec.has_ehk_index &&
            kpl_table_get(it, &it->ehks, AGG_EHK_TABLE, rec.ehk_index, &out->ehk,
                          &out->ehk_len) != 0)
            return -1;
        out->data = rec.data;
        out->data_len = rec.data_len;
        out->index = it->next++;
        it->pos = r.pos;
        return 1;
    }
    it->pos = r.pos;
    return it->next == it->count ? 0 : -1;
}

size_t kpl_iter_count(const kpl_iter_t *it) { return it->count; }

int kpl_is_aggregate(const uint8_t *data, size_t len)
{
    kpl_iter_t it;
    return kpl_iter_init(&it, data, len);
}

size_t kpl_count(const uint8_t *data, size_t len)
{
    kpl_iter_t it;
    return kpl_iter_init(&it, data, len) ? it.count : 1;
}
