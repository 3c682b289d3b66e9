/* proc_script: a processor script's versions, and the Lua environment every
 * state that runs one gets (package.path, the runtime's _host module, the
 * shard context). The per-shard states and the pool are in processor.c. */
#include "proc_script.h"

#include <lauxlib.h>
#include <limits.h>
#include <lua.h>
#include <lualib.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/clock.h"
#include "base/digest.h"
#include "base/xalloc.h"

/* ---- where the Lua side lives ------------------------------------------ */

static char proc_lua_dir_path[PATH_MAX];
static pthread_once_t proc_lua_dir_once = PTHREAD_ONCE_INIT;

static int proc_dir_has_host(const char *dir)
{
    char p[PATH_MAX + 32];
    snprintf(p, sizeof p, "%s/shardrun/_host.lua", dir);
    return access(p, R_OK) == 0;
}

static void proc_find_lua_dir(void)
{
    const char *env = getenv("SHARDRUN_LUA_DIR");
    if (env && *env) {
        snprintf(proc_lua_dir_path, sizeof proc_lua_dir_path, "%s", env);
        return;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) *slash = '\0';
        static const char *const rel[] = {"lua", "../lua", "../share/shardrun/lua"};
        for (size_t i = 0; i < sizeof rel / sizeof *rel; i++) {
            char cand[PATH_MAX];
            snprintf(cand, sizeof cand, "%.3000s/%s", exe, rel[i]);
            if (proc_dir_has_host(cand)) {
                if (!realpath(cand, proc_lua_dir_path)) snprintf(proc_lua_dir_path, sizeof proc_lua_dir_path, "%s", cand);
                return;
            }
        }
    }
    snprintf(proc_lua_dir_path, sizeof proc_lua_dir_path, "/usr/share/shardrun/lua");
}

const char *proc_lua_dir(void)
{
    pthread_once(&proc_lua_dir_once, proc_find_lua_dir);
    return proc_lua_dir_path;
}

/* ---- scripts --------------------------------------------------------------- */

static int proc_read_file(const char *path, char **out, size_t *len, errbuf_t *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) return errbuf_set(err, "%s: cannot read processor script", path);
    size_t cap = 4096, n = 0;
    char *buf = xmalloc(cap); /* handed to the caller */
    size_t got;
    while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) buf = xrealloc(buf, cap *= 2);
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return errbuf_set(err, "%s: read error", path);
    }
    *out = buf;
    *len = n;
    return 0;
}

static void proc_hash(const char *code, size_t len, char out[17])
{
    unsigned char md[DIGEST_SHA256_LEN];
    digest_sha256(code, len, md);
    digest_hex(md, 8, out); /* the first 8 bytes name the version */
}

/* package.path: the script's folder, the config's lua_path, lua/, then the default. */
void proc_script_set_path(lua_State *L, const char *script, char *const *lua_path, size_t n)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    const char *slash = strrchr(script, '/');
    if (slash) {
        lua_pushlstring(L, script, (size_t)(slash - script));
        const char *dir = lua_tostring(L, -1);
        lua_pop(L, 1);
        lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;", dir, dir);
        luaL_addvalue(&b);
    }
    for (size_t i = 0; i < n; i++) {
        lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;", lua_path[i], lua_path[i]);
        luaL_addvalue(&b);
    }
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;", proc_lua_dir(), proc_lua_dir());
    luaL_addvalue(&b);
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    const char *def = lua_tostring(L, -1);
    lua_pop(L, 2);
    luaL_addstring(&b, def ? def : "");
    luaL_pushresult(&b);
    lua_getglobal(L, "package");
    lua_insert(L, -2);
    lua_setfield(L, -2, "path");
    lua_pop(L, 1);
}

/* ---- compiled once: every shard's state loads bytecode, not source ------- */

static int proc_dump_writer(lua_State *L, const void *p, size_t n, void *ud)
{
    return buf_append(ud, p, n); /* an unbounded buffer: never fails */
}

/* The function on top of L as bytecode (debug info kept: tracebacks name
 * the file and line). Caller frees *out. */
static void proc_dump(lua_State *L, char **out, size_t *len)
{
    buf_t b = BUF_INIT;
    lua_dump(L, proc_dump_writer, &b);
    *len = b.len;
    *out = buf_detach(&b); /* handed to the caller */
}

/* shardrun._host compiled once per process: parsing it took most of a new
 * shard's start (issue 18's 1,000 shards). NULL when it cannot be read:
 * require then finds it, or says why not. */
static char *proc_host_bc;
static size_t proc_host_bc_len;
static pthread_once_t proc_host_once = PTHREAD_ONCE_INIT;

static void proc_compile_host(void)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/shardrun/_host.lua", proc_lua_dir());
    lua_State *L = luaL_newstate();
    if (!L) xalloc_oom(0);
    if (luaL_loadfile(L, path) == 0) proc_dump(L, &proc_host_bc, &proc_host_bc_len);
    lua_close(L);
}

int proc_script_push_host(lua_State *L)
{
    pthread_once(&proc_host_once, proc_compile_host);
    if (!proc_host_bc) {
        lua_getglobal(L, "require");
        lua_pushstring(L, "shardrun._host");
        return lua_pcall(L, 1, 1, 0) == 0 ? 0 : -1;
    }
    if (luaL_loadbuffer(L, proc_host_bc, proc_host_bc_len, "=shardrun._host") != 0) return -1;
    lua_pushstring(L, "shardrun._host"); /* what require passes */
    if (lua_pcall(L, 1, 1, 0) != 0) return -1;
    /* as require would: other modules (shardrun.testing) find it loaded */
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "loaded");
    lua_pushvalue(L, -3);
    lua_setfield(L, -2, "shardrun._host");
    lua_pop(L, 2);
    return 0;
}

/* Runs the script's code; on success pushes P (checked). */
int proc_script_run_code(lua_State *L, const proc_script_t *s, int host_idx, errbuf_t *err)
{
    char chunk[PATH_MAX + 2];
    snprintf(chunk, sizeof chunk, "@%s", s->path);
    int rc = s->bc ? luaL_loadbuffer(L, s->bc, s->bc_len, chunk) : luaL_loadbuffer(L, s->code, s->len, chunk);
    if (rc != 0 || lua_pcall(L, 0, 1, 0) != 0) {
        errbuf_set(err, "%s", lua_tostring(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    lua_getfield(L, host_idx, "check");
    lua_pushvalue(L, -2);
    lua_pushstring(L, s->path);
    if (lua_pcall(L, 2, 0, 0) != 0) {
        errbuf_set(err, "%s", lua_tostring(L, -1));
        lua_pop(L, 2);
        return -1;
    }
    return 0;
}

/* Marks the modules loaded so far (the runtime's): pushes a set of names. */
void proc_script_push_loaded_names(lua_State *L)
{
    lua_newtable(L);
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "loaded");
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        lua_pop(L, 1);
        lua_pushvalue(L, -1);
        lua_pushboolean(L, 1);
        lua_settable(L, -6);
    }
    lua_pop(L, 2);
}

static int proc_under(const char *file, const char *dir)
{
    size_t n = strlen(dir);
    return n && !strncmp(file, dir, n) && file[n] == '/';
}

/* The files of modules the script required (not in the set at base_idx)
 * that live in its own folder or a lua_path folder: a hot reload watches them. */
static void proc_collect_deps(lua_State *L, proc_script_t *s, int base_idx, char *const *lua_path, size_t nlua_path)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", s->path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    lua_getglobal(L, "package");
    int pkg = lua_gettop(L);
    lua_getfield(L, pkg, "loaded");
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING) continue;
        lua_pushvalue(L, -1);
        lua_rawget(L, base_idx);
        int runtime = lua_toboolean(L, -1);
        lua_pop(L, 1);
        if (runtime) continue;
        lua_getfield(L, pkg, "searchpath");
        lua_pushvalue(L, -2);
        lua_getfield(L, pkg, "path");
        if (lua_pcall(L, 2, 1, 0) != 0 || !lua_isstring(L, -1)) {
            lua_pop(L, 1);
            continue;
        }
        char real[PATH_MAX];
        const char *file = realpath(lua_tostring(L, -1), real) ? real : lua_tostring(L, -1);
        int mine = proc_under(file, dir);
        for (size_t i = 0; i < nlua_path && !mine; i++) mine = proc_under(file, lua_path[i]);
        if (mine) {
            s->deps = xrealloc(s->deps, (s->ndeps + 1) * sizeof *s->deps); /* owned by the script */
            s->deps[s->ndeps++] = xstrdup(file);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 2);
}

void proc_script_push_shard_ctx(lua_State *L, const proc_shard_info_t *info)
{
    lua_createtable(L, 0, 6);
    lua_pushstring(L, info->shard);
    lua_setfield(L, -2, "id");
    lua_pushstring(L, info->stream);
    lua_setfield(L, -2, "stream");
    lua_pushstring(L, info->position);
    lua_setfield(L, -2, "position");
    lua_pushstring(L, info->worker);
    lua_setfield(L, -2, "worker");
    lua_newtable(L);
    lua_setfield(L, -2, "state");
}

/* The version's identity covers the modules it required too: editing a
 * module is a new version. */
static void proc_hash_version(proc_script_t *s)
{
    if (!s->ndeps) return;
    buf_t all = BUF_INIT;
    buf_append(&all, s->code, s->len);
    for (size_t i = 0; i < s->ndeps; i++) {
        char *code = NULL;
        size_t len = 0;
        errbuf_t err;
        buf_append_str(&all, s->deps[i]);
        if (!proc_read_file(s->deps[i], &code, &len, &err)) buf_append(&all, code, len);
        free(code);
    }
    proc_hash(all.data, all.len, s->hash);
    buf_free(&all);
}

/* Runs P.initialize(shard) in the validation state (P on top). */
static int proc_check_initialize(lua_State *L, int host_idx, const proc_shard_info_t *info, errbuf_t *err)
{
    lua_getfield(L, host_idx, "lifecycle");
    lua_pushvalue(L, -2);
    lua_pushstring(L, "initialize");
    proc_script_push_shard_ctx(L, info);
    /* shard.emit checks its arguments and keeps nothing: a check emits no record */
    lua_getfield(L, host_idx, "attach_check_emit");
    lua_pushvalue(L, -2);
    lua_call(L, 1, 0);
    if (lua_pcall(L, 3, 4, 0) != 0) {
        errbuf_set(err, "initialize: %s", lua_tostring(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    /* results: kind, index, message, traceback */
    int failed = lua_isstring(L, -4) && !strcmp(lua_tostring(L, -4), "error");
    if (failed) errbuf_set(err, "initialize failed: %s", lua_tostring(L, -2) ? lua_tostring(L, -2) : "error");
    lua_pop(L, 4);
    return failed ? -1 : 0;
}

proc_script_t *proc_script_load(const char *path, char *const *lua_path, size_t nlua_path,
                                const proc_shard_info_t *check_shard, errbuf_t *err)
{
    proc_script_t *s = xcalloc(1, sizeof *s); /* owned by the caller: proc_script_unref */
    s->path = xstrdup(path);
    s->refs = 1;
    if (proc_read_file(path, &s->code, &s->len, err)) {
        proc_script_unref(s);
        return NULL;
    }
    proc_hash(s->code, s->len, s->hash);
    s->loaded_ms = clock_wall_ms();
    /* Validate in a throwaway state, so a broken script never reaches a shard. */
    lua_State *L = luaL_newstate();
    if (!L) xalloc_oom(0);
    luaL_openlibs(L);
    proc_script_set_path(L, path, lua_path, nlua_path);
    int rc = 0;
    char chunk[PATH_MAX + 2];
    snprintf(chunk, sizeof chunk, "@%s", path);
    if (proc_script_push_host(L)) {
        rc = errbuf_set(err, "cannot load the runtime's Lua side: %s", lua_tostring(L, -1));
    } else if (luaL_loadbuffer(L, s->code, s->len, chunk) != 0) {
        rc = errbuf_set(err, "%s", lua_tostring(L, -1)); /* a syntax error: file and line */
    } else {
        proc_dump(L, &s->bc, &s->bc_len); /* compiled once, for every shard */
        lua_pop(L, 1);
        int host = lua_gettop(L);
        proc_script_push_loaded_names(L);
        int base = lua_gettop(L);
        rc = proc_script_run_code(L, s, host, err);
        if (!rc) {
            proc_collect_deps(L, s, base, lua_path, nlua_path);
            proc_hash_version(s);
        }
        if (!rc && check_shard) rc = proc_check_initialize(L, host, check_shard, err);
    }
    lua_close(L);
    if (rc) {
        proc_script_unref(s);
        return NULL;
    }
    return s;
}

void proc_script_ref(proc_script_t *s)
{
    __atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
}

void proc_script_unref(proc_script_t *s)
{
    if (!s || __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) > 0) return;
    for (size_t i = 0; i < s->ndeps; i++) free(s->deps[i]);
    free(s->deps);
    free(s->path);
    free(s->code);
    free(s->bc);
    free(s);
}
