/* proc_script: a processor script's versions, and the Lua environment every
 * state that runs one gets (package.path, the runtime's _host module, the
 * shard context). Used by the per-shard states (processor.c) and by hot
 * reload's checks; knows nothing of threads or batches. */
#ifndef SHARDRUN_PROC_SCRIPT_H
#define SHARDRUN_PROC_SCRIPT_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

#include "base/errbuf.h"

/* Shard context given to the script as `shard` (id, stream, position, worker). */
typedef struct proc_shard_info {
    const char *stream;
    const char *shard;
    const char *position;
    const char *worker;
} proc_shard_info_t;

/* One version of a processor script: its code as read from disk, so every
 * shard that swaps to it runs the same bytes even if the file changes again. */
typedef struct proc_script {
    char *path;
    char *code;
    size_t len;
    char *bc;                 /* the code compiled once (lua_dump): each shard's state loads this */
    size_t bc_len;
    char hash[17];            /* hex of the first 8 bytes of the SHA-256 of the code */
    int64_t loaded_ms;        /* wall clock, for status */
    char **deps;              /* files of the modules it required from its folder or lua_path */
    size_t ndeps;
    int refs;                 /* atomic */
} proc_script_t;

/* Reads and validates a script in a fresh state: it compiles, returns a
 * table with processRecords, and, when `check_shard` is given, its
 * initialize runs without error on a copy of that shard's context. Caller
 * owns the result: proc_script_unref(). lua_path: extra require folders. */
proc_script_t *proc_script_load(const char *path, char *const *lua_path, size_t nlua_path,
                                const proc_shard_info_t *check_shard, errbuf_t *err);
void proc_script_ref(proc_script_t *s);
void proc_script_unref(proc_script_t *s);

/* Where lua/shardrun lives (SHARDRUN_LUA_DIR, or next to the executable). */
const char *proc_lua_dir(void);

/* ---- setting up a Lua state for a script (processor.c) ---- */

/* package.path: the script's folder, the config's lua_path, lua/, then the default. */
void proc_script_set_path(lua_State *L, const char *script, char *const *lua_path, size_t n);
/* Pushes the runtime's shardrun._host module (also in package.loaded), or
 * returns -1 with the error pushed. Its code is compiled once per process. */
int proc_script_push_host(lua_State *L);
/* Marks the modules loaded so far (the runtime's): pushes a set of names. */
void proc_script_push_loaded_names(lua_State *L);
/* Runs the script's code; on success pushes P (checked by _host.check). */
int proc_script_run_code(lua_State *L, const proc_script_t *s, int host_idx, errbuf_t *err);
/* Pushes the `shard` table a script sees (id, stream, position, worker, state). */
void proc_script_push_shard_ctx(lua_State *L, const proc_shard_info_t *info);

#endif
