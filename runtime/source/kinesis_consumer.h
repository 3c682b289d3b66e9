/* kinesis_consumer: the enhanced fan-out consumer of one stream, found or
 * registered on the loop.
 *
 * A consumer is a name registered on a stream (RegisterStreamConsumer); its
 * ARN is what SubscribeToShard takes. Every worker of an application looks
 * the consumer up by name (DescribeStreamConsumer) and registers it only when
 * the stream has none of that name, so workers started together, or
 * restarted, share one consumer: a second RegisterStreamConsumer of the same
 * name answers ResourceInUseException, after which the worker looks it up
 * again. A consumer still CREATING is polled until ACTIVE (AWS refuses
 * subscriptions before); one being deleted is waited out, then registered
 * again.
 *
 * Transient failures (throttling, network, 5xx, LimitExceededException) are
 * retried here with backoff, logged once each; a failure for good (no such
 * stream, access denied) is reported to the owner, who may ask again later.
 * Loop thread only. */
#ifndef SHARDRUN_KINESIS_CONSUMER_H
#define SHARDRUN_KINESIS_CONSUMER_H

#include "aws/client.h"
#include "source.h"

struct ev_loop;

typedef struct kinesis_consumer kinesis_consumer_t;

/* Runs when the consumer became ACTIVE (kinesis_consumer_arn is set) or
 * failed for good (kinesis_consumer_error); on the loop, never inside a call
 * of this module. */
typedef void (*kinesis_consumer_cb)(void *ud, kinesis_consumer_t *c);

/* aws and ep must outlive the consumer; strings are copied. Nothing is sent
 * before kinesis_consumer_ensure. Caller frees with kinesis_consumer_free. */
kinesis_consumer_t *kinesis_consumer_new(struct ev_loop *loop, aws_client_t *aws, const aws_endpoint_t *ep,
                                         const char *stream, const char *name, kinesis_consumer_cb cb, void *ud);
/* Cancels what is in flight; the callback does not run. */
void kinesis_consumer_free(kinesis_consumer_t *c);

/* Finds (or registers) the consumer unless it is ACTIVE or being found; after
 * a failure for good, starts again. */
void kinesis_consumer_ensure(kinesis_consumer_t *c);
/* The consumer's ARN was refused (ResourceNotFoundException on subscribe: it
 * was deregistered): forget it and find it again. */
void kinesis_consumer_invalidate(kinesis_consumer_t *c);

/* The ARN while ACTIVE, else NULL. Valid until the next call on c. */
const char *kinesis_consumer_arn(const kinesis_consumer_t *c);
/* SOURCE_OK, or the failure for good (SOURCE_ENOTFOUND: no such stream;
 * SOURCE_EFATAL) with *msg naming the stream and consumer. */
source_err_t kinesis_consumer_error(const kinesis_consumer_t *c, const char **msg);

/* Backoff of the retries, exposed for the tests. */
#define KINESIS_CONSUMER_POLL_MS 500        /* DescribeStreamConsumer while CREATING or DELETING */
#define KINESIS_CONSUMER_RETRY_BASE_MS 500
#define KINESIS_CONSUMER_RETRY_MAX_MS 10000

#endif
