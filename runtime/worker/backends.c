#include "backends.h"

#include "base/fspath.h"
#include "lease/lease_dynamodb.h"
#include "lease/lease_sqlite.h"
#include "source/kinesis_fanout.h"
#include "source/source_kinesis.h"
#include "source/source_local.h"

int backend_aws_new(const config_t *cfg, struct ev_loop *loop, aws_client_t **out, errbuf_t *err)
{
    *out = NULL;
    int kinesis = cfg->source.type == BACKEND_AWS, dynamodb = cfg->leases.type == BACKEND_AWS, outputs = 0;
    for (size_t i = 0; i < cfg->noutputs; i++) outputs |= cfg->outputs[i].type == BACKEND_AWS;
    if (!kinesis && !dynamodb && !outputs) return 0;
    /* the source's CA bundle serves DynamoDB too (one trust setting per
     * deployment); STS is asked in the source's region, else the table's */
    aws_http_options_t hopt = {.ca_file = kinesis ? cfg->source.ca_file : NULL};
    aws_cred_options_t cred = backend_aws_credentials(cfg);
    cred.region = kinesis && cfg->source.region ? cfg->source.region : dynamodb ? cfg->leases.region : NULL;
    *out = aws_client_new(loop, &hopt, &cred, err);
    if (!*out) return -1;
    /* credentials that cannot be had (no step configured, a config profile
     * that does not exist) stop the process now, said once */
    if (aws_cred_check(aws_client_cred(*out), err)) {
        aws_client_free(*out);
        *out = NULL;
        return -1;
    }
    return 0;
}

source_t *backend_source_new(const config_t *cfg, struct ev_loop *loop, aws_client_t *aws, errbuf_t *err)
{
    if (cfg->source.type == BACKEND_LOCAL) return source_local_new(loop, cfg->source.path, err);
    source_kinesis_options_t opt = {.aws = aws, .region = cfg->source.region, .endpoint = cfg->source.endpoint,
                                    .http_version = cfg->source.http_version};
    source_t *polling = source_kinesis_new(loop, &opt, err);
    if (!polling || !cfg->source.consumer) return polling;
    /* enhanced fan-out: the polling source still lists shards and puts; a
     * subscription holds at most an eighth of max_buffered_mb past its pause */
    size_t held = (size_t)cfg->max_buffered_mb * 1024 * 1024 / 8;
    source_fanout_options_t fo = {.aws = aws, .region = cfg->source.region, .endpoint = cfg->source.endpoint,
                                  .http_version = cfg->source.http_version, .consumer = cfg->source.consumer,
                                  .max_held_bytes = held < ((size_t)1 << 20) ? (size_t)1 << 20 : held};
    return source_fanout_new(loop, &fo, polling, err);
}

lease_store_t *backend_lease_store_new(const config_t *cfg, struct ev_loop *loop, aws_client_t *aws, int create,
                                       errbuf_t *err)
{
    if (cfg->leases.type == BACKEND_LOCAL) {
        /* as the local stream does: a fresh checkout has no data/ folder yet */
        if (fspath_mkdir_parents(cfg->leases.path, err)) return NULL;
        return lease_sqlite_new(loop, cfg->leases.path, cfg->leases.table, err);
    }
    lease_dynamodb_options_t opt = {aws, cfg->leases.table, cfg->leases.region, cfg->leases.endpoint,
                                    lease_write_budget_ms(cfg->lease_duration_ms, cfg->renew_interval_ms), create};
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
