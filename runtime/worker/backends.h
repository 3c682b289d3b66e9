/* backends: opens the source and lease store a config names (local or AWS). */
#ifndef SHARDRUN_BACKENDS_H
#define SHARDRUN_BACKENDS_H

#include "config/config.h"
#include "aws/credentials.h"
#include "base/errbuf.h"
#include "lease/lease.h"
#include "source/source.h"

struct ev_loop;

/* Caller owns the results (source_destroy / lease_store_destroy). */
source_t *backend_source_new(const config_t *cfg, struct ev_loop *loop, errbuf_t *err);
lease_store_t *backend_lease_store_new(const config_t *cfg, struct ev_loop *loop, errbuf_t *err);
/* The config's `aws` table as the credentials chain's first step. Points into cfg. */
aws_cred_options_t backend_aws_credentials(const config_t *cfg);
/* GetRecords calls per second allowed per shard by the source (0 = no limit). */
int64_t backend_min_poll_interval_ms(const config_t *cfg);

#endif
