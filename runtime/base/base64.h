/* base64: the standard alphabet with padding (RFC 4648 section 4), as the
 * Kinesis JSON API uses for record data.
 *
 * Decoding is strict, as Kinesis itself is: the input length must be a
 * multiple of 4, '=' may only pad the last group, and no other byte than the
 * 64 letters is accepted (no whitespace, no URL alphabet). Nothing here
 * allocates; no input can make a function write past `out`. */
#ifndef SHARDRUN_BASE64_H
#define SHARDRUN_BASE64_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* An upper bound of the decoded size of `len` input bytes. */
static inline size_t base64_decoded_max(size_t len)
{
    return len / 4 * 3 + 3;
}

/* Decodes `len` bytes of `in` into `out` (room for base64_decoded_max(len)
 * bytes). Returns the decoded length, or -1 when `in` is not canonical padded
 * base64 (then `out` holds garbage). */
long base64_decode(const char *in, size_t len, uint8_t *out);

/* Appends the encoding of data[0..len) to `out`. Returns 0, or -1 when out's
 * bound was hit (out is then left as it was). */
int base64_encode(buf_t *out, const void *data, size_t len);

#endif
