/* backends: opens the source and lease store a config names (local or AWS).
 *
 * One AWS client (HTTP client + credentials chain) per process loop serves
 * both AWS backends (Kinesis and DynamoDB): open it with backend_aws_new,
 * pass it to both, free it after both (aws_client_free). */
#ifndef SHARDRUN_BACKENDS_H
#define SHARDRUN_BACKENDS_H

#include "aws/client.h"
#include "base/errbuf.h"
#include "config/config.h"
#include "lease/lease.h"
#include "source/source.h"

struct ev_loop;

/* The AWS client the config's AWS backends share: 0 with *out set (NULL when
 * neither the source nor the lease store is AWS), or -1 with err set. The
 * caller frees *out with aws_client_free after destroying the backends. */
int backend_aws_new(const config_t *cfg, struct ev_loop *loop, aws_client_t **out, errbuf_t *err);
/* Caller owns the results (source_destroy / lease_store_destroy). `aws` is
 * backend_aws_new's client (NULL for local backends only). A lease store
 * opened with `create` 0 (read-only commands) never creates the DynamoDB
 * table: a missing one is an error. */
source_t *backend_source_new(const config_t *cfg, struct ev_loop *loop, aws_client_t *aws, errbuf_t *err);
lease_store_t *backend_lease_store_new(const config_t *cfg, struct ev_loop *loop, aws_client_t *aws, int create,
                                       errbuf_t *err);
/* The config's `aws` table as the credentials chain's first step. Points into cfg. */
aws_cred_options_t backend_aws_credentials(const config_t *cfg);
/* GetRecords calls per second allowed per shard by the source (0 = no limit). */
int64_t backend_min_poll_interval_ms(const config_t *cfg);

#endif
