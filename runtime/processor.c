#include "processor.h"

#include <ev.h>
#include <lauxlib.h>
#include <limits.h>
#include <lua.h>
#include <lualib.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "clock.h"
#include "log.h"
#include "xalloc.h"

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
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!EVP_Digest(code, len, md, &mdlen, EVP_sha256(), NULL)) memset(md, 0, 8);
    for (int i = 0; i < 8; i++) snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* package.path: the script's folder, the config's lua_path, lua/, then the default. */
static void proc_set_path(lua_State *L, const char *script, char *const *lua_path, size_t n)
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

/* Pushes require("shardrun._host"), or returns -1 with the error pushed. */
static int proc_push_host(lua_State *L)
{
    lua_getglobal(L, "require");
    lua_pushstring(L, "shardrun._host");
    return lua_pcall(L, 1, 1, 0) == 0 ? 0 : -1;
}

/* Runs the script's code; on success pushes P (checked). */
static int proc_load_code(lua_State *L, const proc_script_t *s, int host_idx, errbuf_t *err)
{
    char chunk[PATH_MAX + 2];
    snprintf(chunk, sizeof chunk, "@%s", s->path);
    if (luaL_loadbuffer(L, s->code, s->len, chunk) != 0 || lua_pcall(L, 0, 1, 0) != 0) {
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
static void proc_push_loaded_names(lua_State *L)
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

static void proc_push_shard_ctx(lua_State *L, const proc_shard_info_t *info)
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
    proc_push_shard_ctx(L, info);
    if (lua_pcall(L, 3, 6, 0) != 0) {
        errbuf_set(err, "initialize: %s", lua_tostring(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    int failed = lua_isstring(L, -6) && !strcmp(lua_tostring(L, -6), "error");
    if (failed) errbuf_set(err, "initialize failed: %s", lua_tostring(L, -2) ? lua_tostring(L, -2) : "error");
    lua_pop(L, 6);
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
    proc_set_path(L, path, lua_path, nlua_path);
    int rc = 0;
    if (proc_push_host(L)) {
        rc = errbuf_set(err, "cannot load the runtime's Lua side: %s", lua_tostring(L, -1));
    } else {
        int host = lua_gettop(L);
        proc_push_loaded_names(L);
        int base = lua_gettop(L);
        rc = proc_load_code(L, s, host, err);
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
    free(s);
}

/* ---- per-shard states ------------------------------------------------------ */

struct proc_state {
    lua_State *L;              /* processor thread (one job at a time) */
    proc_script_t *script;     /* version loaded in L */
    proc_script_t *next_script;/* set by the loop thread; swapped at the next job */
    pthread_mutex_t mu;        /* guards next_script, limits, running, interrupted */
    int running;
    int interrupted;
    proc_limits_t limits;
    size_t mem_used;           /* processor thread: the allocator */
    size_t mem_limit;
    int mem_hit;
    int host_ref, p_ref, shard_ref, baseline_ref;
    char *stream, *shard, *position, *worker;
    char **lua_path;
    size_t nlua_path;
};

static void *proc_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    proc_state_t *ps = ud;
    if (nsize == 0) {
        free(ptr);
        ps->mem_used -= osize;
        return NULL;
    }
    if (ps->mem_limit && nsize > osize && ps->mem_used - osize + nsize > ps->mem_limit) {
        ps->mem_hit = 1;
        return NULL; /* Lua raises "not enough memory" */
    }
    void *p = realloc(ptr, nsize);
    if (p) ps->mem_used = ps->mem_used - osize + nsize;
    return p;
}

proc_state_t *proc_state_new(proc_script_t *script, const proc_shard_info_t *info, const proc_limits_t *limits,
                             char *const *lua_path, size_t nlua_path)
{
    proc_state_t *ps = xcalloc(1, sizeof *ps); /* owned by the loop thread: proc_state_free */
    pthread_mutex_init(&ps->mu, NULL);
    proc_script_ref(script);
    ps->next_script = script;
    ps->limits = *limits;
    ps->stream = xstrdup(info->stream);
    ps->shard = xstrdup(info->shard);
    ps->position = xstrdup(info->position);
    ps->worker = xstrdup(info->worker);
    ps->lua_path = nlua_path ? xcalloc(nlua_path, sizeof *ps->lua_path) : NULL;
    for (size_t i = 0; i < nlua_path; i++) ps->lua_path[i] = xstrdup(lua_path[i]);
    ps->nlua_path = nlua_path;
    return ps;
}

static void proc_close_lua(proc_state_t *ps)
{
    if (ps->L) lua_close(ps->L);
    ps->L = NULL;
    ps->mem_used = 0;
}

void proc_state_free(proc_state_t *ps)
{
    if (!ps) return;
    proc_close_lua(ps);
    proc_script_unref(ps->script);
    proc_script_unref(ps->next_script);
    pthread_mutex_destroy(&ps->mu);
    free(ps->stream);
    free(ps->shard);
    free(ps->position);
    free(ps->worker);
    for (size_t i = 0; i < ps->nlua_path; i++) free(ps->lua_path[i]);
    free(ps->lua_path);
    free(ps);
}

void proc_state_set_script(proc_state_t *ps, proc_script_t *script)
{
    proc_script_ref(script);
    pthread_mutex_lock(&ps->mu);
    proc_script_t *old = ps->next_script;
    ps->next_script = script;
    pthread_mutex_unlock(&ps->mu);
    proc_script_unref(old);
}

proc_script_t *proc_state_script(proc_state_t *ps)
{
    pthread_mutex_lock(&ps->mu);
    proc_script_t *s = ps->next_script ? ps->next_script : ps->script;
    pthread_mutex_unlock(&ps->mu);
    return s;
}

void proc_state_set_limits(proc_state_t *ps, const proc_limits_t *limits)
{
    pthread_mutex_lock(&ps->mu);
    ps->limits = *limits;
    pthread_mutex_unlock(&ps->mu);
}

/* The hook is installed only to interrupt: every time it fires it raises, so
 * a pcall inside the script catches one error and meets the next at once. */
static void proc_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    luaL_error(L, "processing timed out (process_timeout_ms)");
}

void proc_interrupt(proc_state_t *ps)
{
    pthread_mutex_lock(&ps->mu);
    if (ps->running && ps->L && !ps->interrupted) {
        ps->interrupted = 1;
        lua_sethook(ps->L, proc_hook, LUA_MASKCOUNT | LUA_MASKCALL | LUA_MASKRET, 1);
    }
    pthread_mutex_unlock(&ps->mu);
}

static void proc_job_set_error(proc_job_t *job, const char *msg, const char *tb)
{
    job->decision = DEC_ERROR;
    free(job->error);
    free(job->traceback);
    job->error = xstrdup(msg ? msg : "unknown error");
    job->traceback = tb && *tb ? xstrdup(tb) : NULL;
}

/* Creates the Lua state with the script loaded and the shard context made.
 * Does not call initialize. */
static int proc_open(proc_state_t *ps, proc_job_t *job)
{
    errbuf_t err;
    pthread_mutex_lock(&ps->mu);
    if (ps->next_script) {
        proc_script_unref(ps->script);
        ps->script = ps->next_script;
        ps->next_script = NULL;
    }
    ps->mem_limit = (size_t)ps->limits.memory_limit_mb * 1024 * 1024;
    pthread_mutex_unlock(&ps->mu);
    ps->mem_hit = 0;
    ps->mem_used = 0;
    /* The counting allocator only where a cap is set: LuaJIT's own allocator
     * is much faster for Lua's many small objects than malloc. */
    lua_State *L = ps->mem_limit ? lua_newstate(proc_alloc, ps) : luaL_newstate();
    if (!L) {
        /* A LuaJIT without custom allocators (non-GC64): no memory cap then. */
        L = luaL_newstate();
        if (!L) xalloc_oom(0);
        if (ps->mem_limit) log_warn("memory_limit_unavailable", "stream=%s shard=%s", ps->stream, ps->shard);
    }
    ps->L = L;
    luaL_openlibs(L);
    proc_set_path(L, ps->script->path, ps->lua_path, ps->nlua_path);
    if (proc_push_host(L)) {
        proc_job_set_error(job, lua_tostring(L, -1), NULL);
        proc_close_lua(ps);
        return -1;
    }
    ps->host_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    /* Modules loaded so far belong to the runtime; those loaded later are the
     * script's and are reloaded with it. */
    proc_push_loaded_names(L);
    ps->baseline_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_rawgeti(L, LUA_REGISTRYINDEX, ps->host_ref);
    if (proc_load_code(L, ps->script, lua_gettop(L), &err)) {
        proc_job_set_error(job, err.msg, NULL);
        proc_close_lua(ps);
        return -1;
    }
    ps->p_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1);
    proc_shard_info_t info = {ps->stream, ps->shard, ps->position, ps->worker};
    proc_push_shard_ctx(L, &info);
    ps->shard_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

/* Hot reload inside the running state: unload the script's own modules, run
 * the new code, keep shard.state (through P.migrate if the new code has it). */
static void proc_swap(proc_state_t *ps, proc_script_t *next)
{
    lua_State *L = ps->L;
    int top = lua_gettop(L);
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "loaded");
    int loaded = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, ps->baseline_ref);
    int base = lua_gettop(L);
    lua_newtable(L); /* keys to drop: cannot clear while iterating */
    int drop = lua_gettop(L);
    int n = 0;
    lua_pushnil(L);
    while (lua_next(L, loaded)) {
        lua_pop(L, 1);
        lua_pushvalue(L, -1);
        lua_rawget(L, base);
        int keep = lua_toboolean(L, -1);
        lua_pop(L, 1);
        if (!keep) {
            lua_pushvalue(L, -1);
            lua_rawseti(L, drop, ++n);
        }
    }
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, drop, i);
        lua_pushnil(L);
        lua_rawset(L, loaded);
    }
    errbuf_t err;
    lua_rawgeti(L, LUA_REGISTRYINDEX, ps->host_ref);
    if (proc_load_code(L, next, lua_gettop(L), &err)) {
        char q[1024];
        log_error("reload_failed", "stream=%s shard=%s script=%s error=%s action=kept_previous", ps->stream,
                  ps->shard, next->path, log_quote(err.msg, q, sizeof q));
        proc_script_unref(next);
        lua_settop(L, top);
        return;
    }
    /* new P on top: migrate(old_state) may replace shard.state */
    lua_getfield(L, -1, "migrate");
    if (lua_isfunction(L, -1)) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, ps->shard_ref);
        lua_getfield(L, -1, "state");
        lua_remove(L, -2);
        if (lua_pcall(L, 1, 1, 0) != 0) {
            char q[1024];
            log_error("migrate_failed", "stream=%s shard=%s error=%s action=state_kept", ps->stream, ps->shard,
                      log_quote(lua_tostring(L, -1), q, sizeof q));
        } else if (lua_istable(L, -1)) {
            lua_rawgeti(L, LUA_REGISTRYINDEX, ps->shard_ref);
            lua_pushvalue(L, -2);
            lua_setfield(L, -2, "state");
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    luaL_unref(L, LUA_REGISTRYINDEX, ps->p_ref);
    ps->p_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    proc_script_unref(ps->script);
    ps->script = next;
    lua_settop(L, top);
    log_info("script_swapped", "stream=%s shard=%s script=%s version=%s", ps->stream, ps->shard, next->path,
             next->hash);
}

/* Reads (kind, index, seq, sub, message, traceback) left by the host. */
static void proc_read_decision(lua_State *L, int base, proc_job_t *job)
{
    const char *kind = lua_tostring(L, base);
    if (!kind) kind = "error";
    if (!strcmp(kind, "error")) {
        proc_job_set_error(job, lua_tostring(L, base + 4), lua_tostring(L, base + 5));
        return;
    }
    if (!strcmp(kind, "none")) job->decision = DEC_NONE;
    else if (!strcmp(kind, "all")) job->decision = DEC_ALL;
    else job->decision = !strcmp(kind, "failed") ? DEC_FAILED : DEC_AT;
    if (job->decision != DEC_AT && job->decision != DEC_FAILED) return;
    if (job->decision == DEC_FAILED) {
        free(job->error);
        job->error = xstrdup(lua_tostring(L, base + 4) ? lua_tostring(L, base + 4) : "record failed");
    }
    if (lua_isnumber(L, base + 1)) {
        job->index = (size_t)lua_tointeger(L, base + 1) - 1;
        return;
    }
    /* a sequence number: find it in the batch (the last record with it, or
     * the one with the given sub-sequence number) */
    const batch_t *b = job->batch;
    size_t slen = 0;
    const char *seq = lua_tolstring(L, base + 2, &slen);
    int has_sub = lua_isnumber(L, base + 3);
    int64_t sub = has_sub ? (int64_t)lua_tonumber(L, base + 3) : 0;
    for (size_t i = b ? b->count : 0; i-- > 0;) {
        if (b->recs[i].seq_len == slen && !memcmp(batch_seq(b, i), seq, slen) &&
            (!has_sub || b->recs[i].sub_seq == sub)) {
            job->index = i;
            return;
        }
    }
    char msg[512];
    snprintf(msg, sizeof msg, "invalid decision: sequence number %.200s is not in this batch (%s %.100s..%.100s)",
             seq ? seq : "?", b && b->count ? "records" : "empty batch", b && b->count ? batch_seq(b, 0) : "",
             b && b->count ? batch_seq(b, b->count - 1) : "");
    proc_job_set_error(job, msg, NULL);
}

/* Calls host.<fn>(P, ...) with nargs extra arguments already pushed after
 * the function slot; leaves the 6 results at base. */
static void proc_call_host(proc_state_t *ps, proc_job_t *job, const char *fn, int nextra)
{
    lua_State *L = ps->L;
    int base = lua_gettop(L) - nextra;
    lua_rawgeti(L, LUA_REGISTRYINDEX, ps->host_ref);
    lua_getfield(L, -1, fn);
    lua_remove(L, -2);
    lua_rawgeti(L, LUA_REGISTRYINDEX, ps->p_ref);
    lua_insert(L, base + 1);
    lua_insert(L, base + 1);   /* fn, P, extra... */
    pthread_mutex_lock(&ps->mu);
    ps->running = 1;
    ps->interrupted = 0;
    pthread_mutex_unlock(&ps->mu);
    int rc = lua_pcall(L, nextra + 1, 6, 0);
    pthread_mutex_lock(&ps->mu);
    ps->running = 0;
    if (ps->interrupted) {
        lua_sethook(L, NULL, 0, 0);
        job->timed_out = 1;
    }
    pthread_mutex_unlock(&ps->mu);
    if (rc != 0) {
        proc_job_set_error(job, lua_tostring(L, -1), NULL);
        lua_settop(L, base);
    } else {
        proc_read_decision(L, base + 1, job);
        lua_settop(L, base);
    }
    if (job->timed_out) proc_job_set_error(job, "processing timed out (process_timeout_ms)", job->traceback);
    if (ps->mem_hit) {
        job->out_of_memory = 1;
        char msg[160];
        snprintf(msg, sizeof msg, "memory limit of %lld MB reached (memory_limit_mb)",
                 (long long)ps->limits.memory_limit_mb);
        proc_job_set_error(job, msg, NULL);
    }
}

static void proc_lifecycle(proc_state_t *ps, proc_job_t *job, const char *name)
{
    lua_pushstring(ps->L, name);
    lua_rawgeti(ps->L, LUA_REGISTRYINDEX, ps->shard_ref);
    proc_call_host(ps, job, "lifecycle", 2);
}

static void proc_run(proc_job_t *job)
{
    proc_state_t *ps = job->ps;
    job->decision = DEC_NONE;
    if (job->kind == JOB_CLOSE) {
        proc_close_lua(ps);
        return;
    }
    if (job->kind == JOB_LEASE_LOST && !ps->L) return;
    if (!ps->L) {
        if (proc_open(ps, job)) return;
        if (job->kind != JOB_INIT) {
            /* recreated after a memory-cap hit: initialize again first */
            proc_lifecycle(ps, job, "initialize");
            if (job->decision == DEC_ERROR) return;
        }
    }
    pthread_mutex_lock(&ps->mu);
    proc_script_t *next = ps->next_script;
    ps->next_script = NULL;
    pthread_mutex_unlock(&ps->mu);
    if (next) proc_swap(ps, next);
    switch (job->kind) {
    case JOB_INIT: proc_lifecycle(ps, job, "initialize"); break;
    case JOB_SHARD_ENDED: proc_lifecycle(ps, job, "shardEnded"); break;
    case JOB_SHUTDOWN: proc_lifecycle(ps, job, "shutdownRequested"); break;
    case JOB_LEASE_LOST: proc_lifecycle(ps, job, "leaseLost"); break;
    case JOB_PROCESS: {
        const batch_t *b = job->batch;
        lua_pushlightuserdata(ps->L, (void *)b->recs);
        lua_pushlightuserdata(ps->L, (void *)batch_arena(b));
        lua_pushinteger(ps->L, (lua_Integer)b->count);
        lua_rawgeti(ps->L, LUA_REGISTRYINDEX, ps->shard_ref);
        proc_call_host(ps, job, "process", 4);
        if (job->decision == DEC_AT || job->decision == DEC_FAILED) {
            if (job->index >= b->count) {
                char msg[128];
                snprintf(msg, sizeof msg, "invalid decision: record index %zu is outside the batch", job->index + 1);
                proc_job_set_error(job, msg, NULL);
            }
        }
        break;
    }
    case JOB_CLOSE: break;
    }
    if (job->out_of_memory) proc_close_lua(ps); /* recreated before the retry */
    else lua_gc(ps->L, LUA_GCSTEP, 0);
}

void proc_job_reset(proc_job_t *job)
{
    free(job->error);
    free(job->traceback);
    job->error = job->traceback = NULL;
    job->decision = DEC_NONE;
    job->index = 0;
    job->timed_out = job->out_of_memory = 0;
    job->elapsed_us = 0;
    job->next = NULL;
}

/* ---- the pool ------------------------------------------------------------- */

struct proc_pool {
    struct ev_loop *loop;
    proc_done_cb done;
    void *ud;
    pthread_t *threads;
    int nthreads;
    pthread_mutex_t mu;        /* guards the queues and stop */
    pthread_cond_t cond;
    proc_job_t *head, *tail;   /* submitted */
    proc_job_t *done_head, *done_tail;
    int stop;
    size_t busy;               /* loop thread only */
    ev_async async;
};

static void *proc_thread(void *arg)
{
    proc_pool_t *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->head && !p->stop) pthread_cond_wait(&p->cond, &p->mu);
        if (!p->head) break;
        proc_job_t *job = p->head;
        p->head = job->next;
        if (!p->head) p->tail = NULL;
        pthread_mutex_unlock(&p->mu);
        job->started_us = clock_mono_us();
        proc_run(job);
        job->elapsed_us = clock_mono_us() - job->started_us;
        pthread_mutex_lock(&p->mu);
        job->next = NULL;
        if (p->done_tail) p->done_tail->next = job;
        else p->done_head = job;
        p->done_tail = job;
        ev_async_send(p->loop, &p->async);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void proc_on_async(struct ev_loop *loop, ev_async *w, int revents)
{
    proc_pool_t *p = w->data;
    pthread_mutex_lock(&p->mu);
    proc_job_t *job = p->done_head;
    p->done_head = p->done_tail = NULL;
    pthread_mutex_unlock(&p->mu);
    while (job) {
        proc_job_t *next = job->next;
        job->next = NULL;
        p->busy--;
        p->done(p->ud, job);
        job = next;
    }
}

proc_pool_t *proc_pool_new(struct ev_loop *loop, int nthreads, proc_done_cb done, void *ud)
{
    proc_pool_t *p = xcalloc(1, sizeof *p); /* owned by the caller: proc_pool_free */
    p->loop = loop;
    p->done = done;
    p->ud = ud;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cond, NULL);
    ev_async_init(&p->async, proc_on_async);
    p->async.data = p;
    ev_async_start(loop, &p->async);
    ev_unref(loop); /* the pool alone must not keep the loop running */
    p->threads = xcalloc((size_t)nthreads, sizeof *p->threads);
    for (int i = 0; i < nthreads; i++) {
        if (pthread_create(&p->threads[i], NULL, proc_thread, p) != 0) {
            log_error("thread_create_failed", "thread=%d", i);
            break;
        }
        p->nthreads++;
    }
    return p;
}

void proc_pool_free(proc_pool_t *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nthreads; i++) pthread_join(p->threads[i], NULL);
    ev_ref(p->loop);
    ev_async_stop(p->loop, &p->async);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cond);
    free(p->threads);
    free(p);
}

void proc_pool_submit(proc_pool_t *p, proc_job_t *job)
{
    proc_job_reset(job);
    p->busy++;
    pthread_mutex_lock(&p->mu);
    if (p->tail) p->tail->next = job;
    else p->head = job;
    p->tail = job;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->mu);
}

size_t proc_pool_busy(proc_pool_t *p)
{
    return p->busy;
}
