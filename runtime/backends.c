#include "backends.h"

#include "lease_sqlite.h"
#include "source_local.h"

source_t *backend_source_new(const config_t *cfg, struct ev_loop *loop, errbuf_t *err)
{
    if (cfg->source.type == BACKEND_LOCAL) return source_local_new(loop, cfg->source.path, err);
    errbuf_set(err, "%s: source.type = \"kinesis\" is not available in this build", cfg->path);
    return NULL;
}

lease_store_t *backend_lease_store_new(const config_t *cfg, struct ev_loop *loop, errbuf_t *err)
{
    if (cfg->leases.type == BACKEND_LOCAL) return lease_sqlite_new(loop, cfg->leases.path, cfg->leases.table, err);
    errbuf_set(err, "%s: leases.type = \"dynamodb\" is not available in this build", cfg->path);
    return NULL;
}

int64_t backend_min_poll_interval_ms(const config_t *cfg)
{
    /* Kinesis allows 5 GetRecords calls per second per shard. */
    return cfg->source.type == BACKEND_LOCAL ? 0 : 200;
}
