/* eventstream: incremental decoder of application/vnd.amazon.eventstream.
 *
 * The framing AWS uses for streaming responses (SubscribeToShard among
 * them), per https://smithy.io/2.0/aws/amazon-eventstream.html. Every
 * integer is big-endian:
 *
 *     total_length u32 | headers_length u32 | prelude_crc u32   (the prelude)
 *     headers[headers_length] | payload[...] | message_crc u32
 *
 * prelude_crc is the CRC32 of the first 8 bytes, message_crc that of every
 * byte before it; payload length = total_length - headers_length - 16.
 * A header is  name_len u8 (>= 1) | name | type u8 | value, the type one of
 * eventstream_type_t below.
 *
 * Protocol only: this module knows the headers that say what a message is
 * (:message-type, :event-type, ...) but nothing of Kinesis; payloads are
 * handed over as bytes.
 *
 * Bytes arrive in chunks cut anywhere (one HTTP body callback each): give a
 * chunk to eventstream_feed(), then call eventstream_next() until it returns
 * 0. A message that lies whole inside the chunk is decoded in place (no
 * copy); the tail of a message cut by the chunk's end is copied into the
 * decoder until the rest arrives. Any framing error (bad CRC, impossible
 * lengths, a malformed header) is final: the stream has lost its framing and
 * must be dropped, as the format requires; the decoder then answers every
 * call with the same error until eventstream_reset().
 *
 * Nothing here is shared: one decoder per stream, used by one thread. */
#ifndef SHARDRUN_EVENTSTREAM_H
#define SHARDRUN_EVENTSTREAM_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

#define EVENTSTREAM_PRELUDE_LEN 12
#define EVENTSTREAM_MIN_MESSAGE 16 /* prelude + message CRC, no headers, no payload */
/* The largest message the format allows (24 MiB payload + 128 KiB headers +
 * 16), the default bound of a decoder. The spec asks clients not to enforce
 * those limits; a bound is needed anyway, since a corrupt length that passed
 * its CRC must not make us buffer 4 GiB. */
#define EVENTSTREAM_MAX_MESSAGE ((size_t)24 * 1024 * 1024 + 128 * 1024 + 16)

typedef enum {
    EVENTSTREAM_OK = 0,
    EVENTSTREAM_EPRELUDE_CRC, /* the prelude's CRC32 does not match */
    EVENTSTREAM_EMESSAGE_CRC, /* the message's CRC32 does not match */
    EVENTSTREAM_ELENGTH,      /* total_length < 16, or headers_length beyond it */
    EVENTSTREAM_ETOO_LARGE,   /* total_length above the decoder's bound */
    EVENTSTREAM_EHEADER,      /* malformed headers: cut short, empty name, a protocol
                                 header twice or not a string */
    EVENTSTREAM_EHEADER_TYPE, /* a header value type outside 0..9 */
    EVENTSTREAM_ETRUNCATED,   /* the stream ended inside a message */
} eventstream_err_t;

/* Header value types, numbered as on the wire. */
typedef enum {
    EVENTSTREAM_BOOL_TRUE = 0,
    EVENTSTREAM_BOOL_FALSE = 1,
    EVENTSTREAM_BYTE = 2,       /* int8 */
    EVENTSTREAM_SHORT = 3,      /* int16 */
    EVENTSTREAM_INTEGER = 4,    /* int32 */
    EVENTSTREAM_LONG = 5,       /* int64 */
    EVENTSTREAM_BYTE_ARRAY = 6, /* u16 length + bytes */
    EVENTSTREAM_STRING = 7,     /* u16 length + UTF-8 (not checked) */
    EVENTSTREAM_TIMESTAMP = 8,  /* int64 milliseconds since the epoch */
    EVENTSTREAM_UUID = 9,       /* 16 bytes */
} eventstream_type_t;

/* Bytes inside a message: p is NULL (len 0) when the header is absent. Not
 * NUL-terminated. */
typedef struct eventstream_span {
    const char *p;
    size_t len;
} eventstream_span_t;

/* What :message-type says. */
typedef enum {
    EVENTSTREAM_KIND_NONE,      /* no :message-type header */
    EVENTSTREAM_KIND_EVENT,     /* "event": :event-type names it */
    EVENTSTREAM_KIND_EXCEPTION, /* "exception": :exception-type names it, payload says why */
    EVENTSTREAM_KIND_ERROR,     /* "error": :error-code and :error-message */
    EVENTSTREAM_KIND_OTHER,     /* any other value */
} eventstream_kind_t;

/* One decoded message. Every pointer points into the chunk last fed or into
 * the decoder, and is valid until the next eventstream_feed(),
 * eventstream_next(), eventstream_reset() or eventstream_free(). */
typedef struct eventstream_message {
    eventstream_kind_t kind;
    eventstream_span_t message_type; /* the protocol headers (string-typed) */
    eventstream_span_t event_type;
    eventstream_span_t exception_type;
    eventstream_span_t content_type;
    eventstream_span_t error_code;
    eventstream_span_t error_message;
    const uint8_t *headers; /* the raw header block, for eventstream_header_next() */
    size_t headers_len;
    const uint8_t *payload; /* NULL when payload_len is 0 */
    size_t payload_len;
    uint64_t offset; /* stream offset of the message's first byte */
} eventstream_message_t;

/* One header, as eventstream_header_next() yields it. */
typedef struct eventstream_header {
    eventstream_span_t name;
    eventstream_type_t type;
    int64_t i;            /* BOOL_* (1 or 0), BYTE, SHORT, INTEGER, LONG, TIMESTAMP */
    const uint8_t *bytes; /* BYTE_ARRAY, STRING, UUID (16 bytes); NULL otherwise */
    size_t bytes_len;
} eventstream_header_t;

/* Embed it in its owner; init before use, free when done. */
typedef struct eventstream_decoder {
    buf_t partial;       /* owned: an incomplete message copied from earlier chunks */
    size_t partial_need; /* its total length once its prelude is in, else 0 */
    int partial_done;    /* `partial` was yielded: empty it at the next call */
    const uint8_t *in;   /* the chunk being decoded (the caller's) */
    size_t in_len, in_pos;
    size_t max_message;
    uint64_t offset;       /* stream offset of in[in_pos] */
    uint64_t messages;     /* messages yielded so far */
    eventstream_err_t err; /* sticky */
    char errmsg[400];
} eventstream_decoder_t;

/* max_message: the largest total_length accepted (0: EVENTSTREAM_MAX_MESSAGE). */
void eventstream_init(eventstream_decoder_t *d, size_t max_message);
/* Frees the buffered bytes; init again to reuse. */
void eventstream_free(eventstream_decoder_t *d);
/* Back to the start of a new stream (a new subscription): drops any partial
 * message and the error, keeps the bound and the allocation. */
void eventstream_reset(eventstream_decoder_t *d);

/* Hands the decoder the next chunk of the stream. The bytes must stay valid
 * until eventstream_next() has returned 0 or -1 for them; the previous chunk
 * must have been drained that way first (asserted, unless the decoder is in
 * error: then nothing more is read). */
void eventstream_feed(eventstream_decoder_t *d, const void *data, size_t len);

/* 1: a message is in *m; 0: the chunk is used up (a message cut at its end
 * is kept for the next chunk); -1: a framing error (eventstream_error(),
 * eventstream_errmsg()), final for this stream. */
int eventstream_next(eventstream_decoder_t *d, eventstream_message_t *m);

/* The stream has ended (after eventstream_next() returned 0): 0 if it ended
 * on a message boundary, -1 (EVENTSTREAM_ETRUNCATED, or an earlier error)
 * if it stopped inside one. */
int eventstream_finish(eventstream_decoder_t *d);

eventstream_err_t eventstream_error(const eventstream_decoder_t *d);
/* A sentence naming the error, the stream offset and message number; "" when
 * there is none. Valid until the next call on d. */
const char *eventstream_errmsg(const eventstream_decoder_t *d);
const char *eventstream_err_name(eventstream_err_t e);

/* Walks the headers of a message yielded by eventstream_next(), in wire
 * order: set *pos to 0 first. 1 and *h filled, or 0 after the last one. The
 * block was checked when the message was decoded, so nothing can fail here. */
int eventstream_header_next(const eventstream_message_t *m, size_t *pos, eventstream_header_t *h);

/* 1 if the span holds exactly the C string s. */
int eventstream_span_eq(eventstream_span_t span, const char *s);

#endif
