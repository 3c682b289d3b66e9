/* reload: hot reload of processor scripts.
 *
 * Watches every stream's script and the modules it required from its own
 * folder or lua_path (ev_stat: in-place writes and rename-replacement both
 * show up as a changed stat). A burst of changes is debounced; then the new
 * code is read once, compiled and checked in a fresh state (processRecords is
 * a function; initialize runs on a copy of a real shard's context) on a
 * thread of its own: the script's code never runs on the loop thread. A broken
 * version is logged with file:line and counted, and the old one keeps
 * running; a good one is handed to the worker, which swaps it into each shard
 * at its next batch boundary. */
#ifndef SHARDRUN_RELOAD_H
#define SHARDRUN_RELOAD_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "proc/processor.h"

struct ev_loop;
typedef struct reload reload_t;

typedef struct reload_handler {
    /* A new version of stream idx's script passed the checks. The callee
     * takes the reference. */
    void (*swap)(void *ud, size_t idx, proc_script_t *script);
    /* Fills a real shard's context of stream idx for the initialize check;
     * returns 0 when the worker has no shard of it (a sample is used). */
    int (*sample_shard)(void *ud, size_t idx, proc_shard_info_t *out);
} reload_handler_t;

/* Caller owns it: reload_free(). cfg and the scripts stay the caller's;
 * scripts[i] is the version running for stream i. NULL when the checker
 * thread cannot start. */
reload_t *reload_new(struct ev_loop *loop, const config_t *cfg, proc_script_t *const *scripts,
                     const reload_handler_t *h, void *ud);
void reload_free(reload_t *r);

/* Checks stream idx's script now (SIGHUP, or a new processor path); a
 * check asked for while one runs follows it. */
void reload_check(reload_t *r, size_t idx);
/* Checks running or queued (a script's initialize may never return). */
size_t reload_busy(const reload_t *r);
/* Versions of stream idx's script refused by the checks, since the start. */
int64_t reload_failures(const reload_t *r, size_t idx);
/* The last reload error of stream idx (NULL when the last attempt worked). */
const char *reload_error(const reload_t *r, size_t idx);

#define RELOAD_DEBOUNCE_S 0.1
#define RELOAD_POLL_S 0.5

#endif
