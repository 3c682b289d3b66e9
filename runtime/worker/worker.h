/* worker: one shardrun process. Owns the loop thread and everything on it
 * (source, lease store, coordinator, shard sync, shards) and the processor
 * pool; handles signals and graceful shutdown. */
#ifndef SHARDRUN_WORKER_H
#define SHARDRUN_WORKER_H

#include "config/config.h"

typedef struct worker_options {
    int drain;    /* exit 0 once every owned shard is caught up (and leases released) */
} worker_options_t;

/* Runs until SIGTERM/SIGINT (or drained). Returns the process exit status:
 * 0 clean, 1 runtime failure, 2 bad config or script. SIGHUP re-reads the
 * config file and applies what can change live to *cfg (the caller still
 * frees it). */
int worker_run(config_t *cfg, const worker_options_t *opt);

/* hostname:pid:random, the default worker id. Caller frees. */
char *worker_default_id(void);

#endif
