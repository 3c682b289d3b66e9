/* processor_internal: what processor.c (the per-shard states) and
 * proc_script.c (script versions) share: the steps that make a Lua state
 * ready to run a script. Not for other modules: they see processor.h only. */
#ifndef SHARDRUN_PROCESSOR_INTERNAL_H
#define SHARDRUN_PROCESSOR_INTERNAL_H

#include <lua.h>

#include "base/errbuf.h"
#include "processor.h"

/* package.path: the script's folder, the config's lua_path, lua/, then the default. */
void proc_set_path(lua_State *L, const char *script, char *const *lua_path, size_t n);
/* Pushes require("shardrun._host"), or returns -1 with the error pushed. */
int proc_push_host(lua_State *L);
/* Marks the modules loaded so far (the runtime's): pushes a set of names. */
void proc_push_loaded_names(lua_State *L);
/* Runs the script's code; on success pushes P (checked by _host.check). */
int proc_load_code(lua_State *L, const proc_script_t *s, int host_idx, errbuf_t *err);
/* Pushes the `shard` table a script sees (id, stream, position, worker, state). */
void proc_push_shard_ctx(lua_State *L, const proc_shard_info_t *info);

#endif
