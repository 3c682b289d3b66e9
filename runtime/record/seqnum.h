/* seqnum: sequence numbers and hash keys, the two big decimals of Kinesis.
 *
 * Sequence numbers are decimal strings of up to 128 digits (Kinesis uses 56);
 * they are compared as numbers without converting them. Hash keys are 128-bit
 * unsigned integers (MD5 of the partition key), also written in decimal. */
#ifndef SHARDRUN_SEQNUM_H
#define SHARDRUN_SEQNUM_H

#include <stddef.h>
#include <stdint.h>

#define SEQNUM_MAX_DIGITS 128

/* 1 if s is a non-empty decimal number without sign (leading zeros allowed). */
int seqnum_valid(const char *s);
/* <0, 0, >0 as a is numerically below, equal to, above b. Both must be valid. */
int seqnum_cmp(const char *a, const char *b);
/* Compares (seq, sub) pairs, the order of KPL user records. */
int seqnum_cmp_sub(const char *a, int64_t asub, const char *b, int64_t bsub);

/* Checkpoint sentinels the KCL writes in the lease table instead of a number. */
#define SEQNUM_TRIM_HORIZON "TRIM_HORIZON"
#define SEQNUM_LATEST "LATEST"
#define SEQNUM_AT_TIMESTAMP "AT_TIMESTAMP"
#define SEQNUM_SHARD_END "SHARD_END"
/* 1 if s is one of the sentinels above. */
int seqnum_is_sentinel(const char *s);

typedef unsigned __int128 hashkey_t;
#define HASHKEY_MAX (~(hashkey_t)0)

/* MD5 of the partition key as a big-endian 128-bit number, as Kinesis does. */
hashkey_t hashkey_of(const void *key, size_t len);
/* Parses a decimal hash key; returns 0 or -1 (not a number, or above 2^128-1). */
int hashkey_parse(const char *s, hashkey_t *out);
/* Writes the decimal form into out (at least 40 bytes). Returns out. */
char *hashkey_format(hashkey_t h, char *out);

#endif
