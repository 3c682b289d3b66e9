#include "backends.h"

#include "lease/lease_dynamodb.h"
#include "lease/lease_sqlite.h"
#include "source/source_kinesis.h"
#include "source/source_local.h"

source_t *backend_source_new(const config_t *cfg, struct ev_loop *loop, errbuf_t *err)
{
    if (cfg->source.type == BACKEND_LOCAL) return source_local_new(loop, cfg->source.path, err);
    aws_cred_options_t cred = backend_aws_credentials(cfg);
    source_kinesis_options_t opt = {cfg->source.region, cfg->source.endpoint, cfg->source.ca_file, &cred};
    return source_kinesis_new(loop, &opt, err);
}

lease_store_t *backend_lease_store_new(const config_t *cfg, struct ev_loop *loop, errbuf_t *err)
{
    if (cfg->leases.type == BACKEND_LOCAL) return lease_sqlite_new(loop, cfg->leases.path, cfg->leases.table, err);
    /* the source's CA bundle serves DynamoDB too (one trust setting per deployment) */
    aws_cred_options_t cred = backend_aws_credentials(cfg);
    lease_dynamodb_options_t opt = {cfg->leases.table, cfg->leases.region, cfg->leases.endpoint,
                                    cfg->source.type == BACKEND_AWS ? cfg->source.ca_file : NULL, &cred};
    return lease_dynamodb_new(loop, &opt, err);
}

int64_t backend_min_poll_interval_ms(const config_t *cfg)
{
    /* Kinesis allows 5 GetRecords calls per second per shard. */
    return cfg->source.type == BACKEND_LOCAL ? 0 : 200;
}

aws_cred_options_t backend_aws_credentials(const config_t *cfg)
{
    aws_cred_options_t c = {0};
    c.access_key_id = cfg->aws.access_key_id;
    c.secret_access_key = cfg->aws.secret_access_key;
    c.session_token = cfg->aws.session_token;
    c.profile = cfg->aws.profile;
    return c;
}
