/* kpl: de-aggregation of records written by the Kinesis Producer Library.
 *
 * An aggregated Kinesis record's data is
 *     F3 89 9A C2 | protobuf AggregatedRecord | MD5(protobuf) (16 bytes)
 * with
 *     AggregatedRecord { repeated string partition_key_table = 1;
 *                        repeated string explicit_hash_key_table = 2;
 *                        repeated Record records = 3; }
 *     Record { required uint64 partition_key_index = 1;
 *              optional uint64 explicit_hash_key_index = 2;
 *              required bytes data = 3; repeated Tag tags = 4; }
 *
 * As in the KCL, anything that is not a well-formed aggregate (wrong magic,
 * wrong MD5, a protobuf that does not parse, a missing required field, an
 * index outside its table) is a plain record: the caller passes its data
 * through unchanged. No input can make these functions read out of bounds.
 *
 * Nothing here allocates: user records point into the caller's buffer, which
 * must outlive the iterator and the records it yields. Thread-safe (no shared
 * mutable state besides OpenSSL's once-initialised MD5 method). */
#ifndef SHARDRUN_KPL_H
#define SHARDRUN_KPL_H

#include <stddef.h>
#include <stdint.h>

#define KPL_MAGIC "\xF3\x89\x9A\xC2"
#define KPL_MAGIC_LEN 4
#define KPL_DIGEST_LEN 16
/* Offsets remembered per key table, so finding key i scans at most
 * table_size / KPL_ITER_MARKS entries instead of the whole table. */
#define KPL_ITER_MARKS 32

/* One user record. All pointers point into the aggregate passed to
 * kpl_iter_init(); ehk is NULL (ehk_len 0) when the record has none. */
typedef struct kpl_user_record {
    const uint8_t *pkey;
    size_t pkey_len;
    const uint8_t *ehk; /* explicit hash key (decimal string), or NULL */
    size_t ehk_len;
    const uint8_t *data;
    size_t data_len;
    size_t index; /* 0-based position in the aggregate = sub-sequence number */
} kpl_user_record_t;

/* A key table (partition keys or explicit hash keys) of the aggregate. */
typedef struct kpl_table {
    size_t count;
    size_t stride;                /* entries between two marks */
    size_t mark[KPL_ITER_MARKS];  /* offset of the field of entry k*stride */
} kpl_table_t;

/* Iterator over the user records of one aggregate. Embed it anywhere (stack,
 * batch struct); it owns nothing, so there is nothing to free. */
typedef struct kpl_iter {
    const uint8_t *pb; /* protobuf bytes (between magic and digest) */
    size_t pb_len;
    size_t pos;        /* offset of the next top-level field to look at */
    size_t next;       /* index of the next user record */
    size_t count;      /* user records in the aggregate */
    kpl_table_t pkeys;
    kpl_table_t ehks;
} kpl_iter_t;

/* Returns 1 if data is a valid aggregate (magic, MD5, protobuf, indexes all
 * good), 0 if it is a plain record to pass through unchanged. */
int kpl_is_aggregate(const uint8_t *data, size_t len);

/* Validates `data` as a whole and prepares `it` to yield its user records.
 * Returns 1 for a valid aggregate (it may hold 0 records), 0 for a plain
 * record (then `it` yields nothing). `data` must outlive `it`. */
int kpl_iter_init(kpl_iter_t *it, const uint8_t *data, size_t len);

/* Yields the next user record in order into *out: 1 got one, 0 end,
 * -1 malformed (cannot happen after kpl_iter_init returned 1; checked anyway). */
int kpl_iter_next(kpl_iter_t *it, kpl_user_record_t *out);

/* User records in the aggregate (0 for an iterator on a plain record). */
size_t kpl_iter_count(const kpl_iter_t *it);

/* How many records `data` expands to: its user records if it is a valid
 * aggregate (possibly 0), otherwise 1 (itself, passed through). */
size_t kpl_count(const uint8_t *data, size_t len);

#endif
