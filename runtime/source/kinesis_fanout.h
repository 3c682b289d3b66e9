/* kinesis_fanout: the Kinesis source reading by enhanced fan-out
 * (SubscribeToShard), the KCL's default way to read.
 *
 * A push source (source.h): per shard being read, one SubscribeToShard
 * stream of the stream's consumer (kinesis_consumer: found or registered by
 * name) pushes events of records; get_records answers with the next event
 * (or a part of it: at most max_records records, never splitting a KPL
 * aggregate) as soon as there is one. Listing shards, puts and the like go to
 * the polling Kinesis source it wraps.
 *
 * Positions. An iterator here is the position itself, no network call:
 * "TRIM_HORIZON", "LATEST", "AT_TIMESTAMP:<ms>", "AT_SEQUENCE_NUMBER:<seq>",
 * "AFTER_SEQUENCE_NUMBER:<seq>". Each answer's next_iterator is
 * AFTER_SEQUENCE_NUMBER of the event's ContinuationSequenceNumber (or of the
 * last record handed over, after a part); NULL at the shard's end. A read
 * with the iterator the previous answer gave goes on with the subscription;
 * any other opens a new one there.
 *
 * Subscriptions end (after 5 minutes on AWS, or when the service closes
 * them): the next one opens after the last event received, so nothing is
 * skipped and nothing read twice (records at or before the last one received
 * are dropped, should the service send them again). Errors (exception
 * events, HTTP errors, broken framing, a stream silent for idle_ms) close the
 * subscription; it opens again after the last event received, with jittered
 * backoff (ResourceInUseException: the previous owner's subscription is
 * still open; LimitExceededException: one subscription per second per shard
 * and consumer), and events received before the error are kept. A consumer
 * that vanished (ResourceNotFoundException) is found or registered again.
 * Errors that retrying cannot fix (access denied, KMS) fail the read.
 *
 * Backpressure: when an event arrives and no read waits for it, the transfer
 * is paused (HTTP/2 flow control or TCP then hold the service back) until
 * the shard reads again. What arrives after the pause took effect is kept up
 * to max_held_bytes per shard; past that the subscription is closed, the
 * events after the first kept one dropped, and it opens again after that
 * one once it is read.
 *
 * Shard end: an event without ContinuationSequenceNumber ends the shard (its
 * ChildShards are logged; shard sync creates the children's leases from
 * ListShards, as for polling). kinesis-mock never sends one (it keeps
 * sending empty events on a closed shard), so for a shard the last
 * ListShards showed closed, an empty event makes the source ask GetRecords
 * after the continuation once (at most once a second); when that answers the
 * shard's end, so does the source.
 *
 * Loop thread only. */
#ifndef SHARDRUN_KINESIS_FANOUT_H
#define SHARDRUN_KINESIS_FANOUT_H

#include <stddef.h>

#include "aws/client.h"
#include "base/errbuf.h"
#include "source.h"

struct ev_loop;

typedef struct source_fanout_options {
    aws_client_t *aws;        /* the process's AWS client (shared; outlives the source) */
    const char *region;       /* as for source_kinesis */
    const char *endpoint;
    int http_version;         /* AWS_HTTP_VERSION_* of the subscriptions */
    const char *consumer;     /* the consumer's name (each stream has its own of that name) */
    size_t max_held_bytes;    /* per shard, events received after the pause; 0 = 8 MiB */
    long idle_ms;             /* a subscription silent this long is dead; 0 = SOURCE_FANOUT_IDLE_MS */
} source_fanout_options_t;

/* Takes `polling` (a source_kinesis of the same endpoint) in every case: it
 * is destroyed with the fan-out source, or here on failure. Caller owns the
 * result (source_destroy). NULL with err set when the region cannot be
 * resolved. */
source_t *source_fanout_new(struct ev_loop *loop, const source_fanout_options_t *opt, source_t *polling,
                            errbuf_t *err);

/* Both AWS and kinesis-mock send events while a subscription lasts, records
 * or not (the mock every second): 35 s of silence is a dead connection. */
#define SOURCE_FANOUT_IDLE_MS 35000
#define SOURCE_FANOUT_MIN_OPEN_MS 1000   /* between two subscriptions of one shard */
#define SOURCE_FANOUT_RETRY_BASE_MS 500
#define SOURCE_FANOUT_RETRY_MAX_MS 10000

#endif
