#include "processor.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "base/buf.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/xalloc.h"

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
    /* The generation of the batch processRecords is running on, 0 between
     * calls. Records check it before every read (see _host.lua): it is set
     * here, on the processor thread, around the call, so no Lua line needs
     * to run for a batch to end, whatever way the call ends. */
    int32_t live_gen;
    int32_t last_gen;
    /* Where shard.emit copies records: the running job's buffer, or NULL
     * when the call may not emit (leaseLost). Processor thread only. */
    emitbuf_t *emits;
    size_t emit_limit;         /* bytes one call may emit; 0 = none */
    char **outputs;            /* names shard.emit accepts (index = output) */
    size_t noutputs;
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
    for (size_t i = 0; i < ps->noutputs; i++) free(ps->outputs[i]);
    free(ps->outputs);
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

void proc_state_set_outputs(proc_state_t *ps, char *const *names, size_t n)
{
    ps->outputs = n ? xcalloc(n, sizeof *ps->outputs) : NULL; /* owned by ps */
    for (size_t i = 0; i < n; i++) ps->outputs[i] = xstrdup(names[i]);
    ps->noutputs = n;
}

/* shard.emit's way into C (called through the FFI by _host.lua, which has
 * checked the arguments): copies the record into the running job's buffer.
 * 0, or -1 when the call has emitted its limit, -2 when this call may not
 * emit. Processor thread. */
static int proc_emit(void *ctx, uint32_t output, const char *data, size_t data_len, const char *pkey,
                     size_t pkey_len, const char *hash_key, size_t hash_key_len)
{
    proc_state_t *ps = ctx;
    emitbuf_t *e = ps->emits;
    if (!e) return -2;
    if (output >= ps->noutputs) return -3;
    if (ps->emit_limit && e->bytes + data_len + pkey_len + hash_key_len > ps->emit_limit) return -1;
    emitbuf_add(e, output, data, data_len, pkey, pkey_len, hash_key, hash_key_len);
    return 0;
}

/* host.attach_emit(shard, outputs, limit_mb): shard.emit for this state. */
static void proc_attach_emit(proc_state_t *ps)
{
    lua_State *L = ps->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, ps->host_ref);
    lua_getfield(L, -1, "attach_emit");
    lua_remove(L, -2);
    lua_rawgeti(L, LUA_REGISTRYINDEX, ps->shard_ref);
    lua_createtable(L, (int)ps->noutputs, 0);
    for (size_t i = 0; i < ps->noutputs; i++) {
        lua_pushstring(L, ps->outputs[i]);
        lua_rawseti(L, -2, (int)i + 1);
    }
    lua_pushnumber(L, (lua_Number)ps->limits.emit_limit_bytes / (1024.0 * 1024.0));
    lua_call(L, 3, 0);
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

/* LuaJIT starts a collection cycle when the heap has doubled since the last
 * one, a pace for states whose garbage is small beside what they keep. A
 * shard's state is the other way round: a batch's records, and all the
 * script decodes from them, are garbage once processRecords returns, but a
 * cycle running during the batch marks every one of them, and at that pace
 * cycles come every batch or two. Waiting for the heap to grow fourfold
 * halves the cycles: 18% less CPU for a script that decodes every record with
 * cjson, 3% for a no-op (make bench-local; process RSS did not grow), at the
 * price of a heap up to 4x, not 2x, what the state keeps. Under
 * memory_limit_mb that garbage would count against the cap (the allocator
 * cannot collect), so a capped state keeps LuaJIT's pace. */
#define PROC_GC_PAUSE 400 /* percent, as collectgarbage("setpause") */

static void proc_pace_gc(lua_State *L, size_t mem_limit)
{
    if (!mem_limit) lua_gc(L, LUA_GCSETPAUSE, PROC_GC_PAUSE);
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
    proc_pace_gc(L, ps->mem_limit);
    /* No collection while the runtime builds the state (libraries, host
     * module): all of it stays live, yet a young heap's small threshold ran
     * several cycles over it, 4% of opening 1000 shards. */
    lua_gc(L, LUA_GCSTOP, 0);
    luaL_openlibs(L);
    proc_script_set_path(L, ps->script->path, ps->lua_path, ps->nlua_path);
    if (proc_script_push_host(L)) {
        proc_job_set_error(job, lua_tostring(L, -1), NULL);
        proc_close_lua(ps);
        return -1;
    }
    lua_getfield(L, -1, "bind");
    lua_pushlightuserdata(L, &ps->live_gen);
    lua_pushlightuserdata(L, (void *)proc_emit); /* a function pointer, cast back by the FFI */
    lua_pushlightuserdata(L, ps);
    lua_call(L, 3, 0);
    ps->host_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    /* Modules loaded so far belong to the runtime; those loaded later are the
     * script's and are reloaded with it. */
    proc_script_push_loaded_names(L);
    ps->baseline_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    /* On again before the script's own code runs, with the threshold a
     * finished cycle would set (LuaJIT: -1 = from the heap and the pause). */
    lua_gc(L, LUA_GCRESTART, -1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, ps->host_ref);
    if (proc_script_run_code(L, ps->script, lua_gettop(L), &err)) {
        proc_job_set_error(job, err.msg, NULL);
        proc_close_lua(ps);
        return -1;
    }
    ps->p_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1);
    proc_shard_info_t info = {ps->stream, ps->shard, ps->position, ps->worker};
    proc_script_push_shard_ctx(L, &info);
    ps->shard_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    proc_attach_emit(ps);
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
    if (proc_script_run_code(L, next, lua_gettop(L), &err)) {
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

/* Reads (kind, index, message, traceback) left by the host: _host.lua has
 * already resolved a decision to the index of a record of the batch. */
static void proc_read_decision(lua_State *L, int base, proc_job_t *job)
{
    const char *kind = lua_tostring(L, base);
    if (!kind) kind = "error";
    if (!strcmp(kind, "error") || !strcmp(kind, "invalid")) {
        job->invalid_decision = !strcmp(kind, "invalid");
        proc_job_set_error(job, lua_tostring(L, base + 2), lua_tostring(L, base + 3));
        return;
    }
    if (!strcmp(kind, "none")) job->decision = DEC_NONE;
    else if (!strcmp(kind, "all")) job->decision = DEC_ALL;
    else job->decision = !strcmp(kind, "failed") ? DEC_FAILED : DEC_AT;
    if (job->decision != DEC_AT && job->decision != DEC_FAILED) return;
    if (job->decision == DEC_FAILED) {
        free(job->error);
        job->error = xstrdup(lua_tostring(L, base + 2) ? lua_tostring(L, base + 2) : "record failed");
    }
    lua_Integer i = lua_isnumber(L, base + 1) ? lua_tointeger(L, base + 1) : 0;
    const batch_t *b = job->batch;
    if (!b || i < 1 || (size_t)i > b->count) {
        char msg[128];
        snprintf(msg, sizeof msg, "invalid decision: record index %lld is outside the batch", (long long)i);
        proc_job_set_error(job, msg, NULL);
        job->invalid_decision = 1;
        return;
    }
    job->index = (size_t)i - 1;
}

/* Reads what host.timer left: (kind, sub, sequence number) or ("error",
 * nil, message, traceback); kind "at" names a position, not checked here. */
static void proc_read_timer_decision(lua_State *L, int base, proc_job_t *job)
{
    const char *kind = lua_tostring(L, base);
    if (!kind || strcmp(kind, "at")) {
        proc_read_decision(L, base, job);
        return;
    }
    const char *seq = lua_tostring(L, base + 2);
    if (!seq) {
        proc_job_set_error(job, "onTimer: invalid decision (no sequence number)", NULL);
        return;
    }
    job->decision = DEC_AT;
    job->cp_seq = xstrdup(seq); /* owned by the job */
    job->cp_sub = (int64_t)lua_tonumber(L, base + 1);
}

typedef void (*proc_reader_fn)(lua_State *L, int base, proc_job_t *job);

/* Calls host.<fn>(P, ...) with nargs extra arguments already pushed after
 * the function slot and reads its 4 results into the job. */
static void proc_call_host(proc_state_t *ps, proc_job_t *job, const char *fn, int nextra, proc_reader_fn read)
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
    int rc = lua_pcall(L, nextra + 1, 4, 0);
    ps->live_gen = 0; /* the batch has ended, however the call did */
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
        read(L, base + 1, job);
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
    proc_call_host(ps, job, "lifecycle", 2, proc_read_decision);
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
    /* leaseLost may not emit: nothing emitted then could be acknowledged
     * before a checkpoint, and no checkpoint follows */
    ps->emits = job->kind == JOB_LEASE_LOST ? NULL : &job->emits;
    pthread_mutex_lock(&ps->mu);
    ps->emit_limit = (size_t)ps->limits.emit_limit_bytes;
    pthread_mutex_unlock(&ps->mu);
    if (!ps->L) {
        if (proc_open(ps, job)) {
            ps->emits = NULL;
            return;
        }
        if (job->kind != JOB_INIT) {
            /* recreated after a memory-cap hit: initialize again first */
            proc_lifecycle(ps, job, "initialize");
            if (job->decision == DEC_ERROR) {
                ps->emits = NULL;
                return;
            }
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
        if (++ps->last_gen <= 0) ps->last_gen = 1; /* 0 means "no batch" */
        lua_pushlightuserdata(ps->L, (void *)b->recs);
        lua_pushlightuserdata(ps->L, (void *)batch_arena(b));
        lua_pushinteger(ps->L, (lua_Integer)b->count);
        lua_rawgeti(ps->L, LUA_REGISTRYINDEX, ps->shard_ref);
        lua_pushinteger(ps->L, ps->last_gen);
        ps->live_gen = ps->last_gen;
        proc_call_host(ps, job, "process", 5, proc_read_decision);
        break;
    }
    case JOB_TIMER:
        lua_rawgeti(ps->L, LUA_REGISTRYINDEX, ps->shard_ref);
        lua_pushnumber(ps->L, (lua_Number)job->now_ms);
        proc_call_host(ps, job, "timer", 2, proc_read_timer_decision);
        break;
    case JOB_CLOSE: break;
    }
    ps->emits = NULL;
    /* A collector step once a batch (or a timer's flush) is done starts the
     * next cycle, if none is running, while the batch's records are garbage
     * rather than partway through the next batch, when they are all live: a
     * decoding script spends a fifth more CPU without it (make bench-local,
     * cjson row). After a lifecycle call, which makes little garbage, it
     * would only mark the whole state again: 6% of a 1000-shard drain. */
    if (job->out_of_memory) proc_close_lua(ps); /* recreated before the retry */
    else if (job->kind == JOB_PROCESS || job->kind == JOB_TIMER) lua_gc(ps->L, LUA_GCSTEP, 0);
    job->lua_bytes = ps->L ? (int64_t)lua_gc(ps->L, LUA_GCCOUNT, 0) * 1024 + lua_gc(ps->L, LUA_GCCOUNTB, 0) : -1;
}

void proc_job_reset(proc_job_t *job)
{
    free(job->error);
    free(job->traceback);
    free(job->cp_seq);
    emitbuf_clear(&job->emits);
    job->error = job->traceback = job->cp_seq = NULL;
    job->cp_sub = 0;
    job->decision = DEC_NONE;
    job->index = 0;
    job->timed_out = job->out_of_memory = job->invalid_decision = 0;
    job->elapsed_us = 0;
    job->lua_bytes = -1;
}

/* ---- the pool ------------------------------------------------------------- */

struct proc_pool {
    tpool_t *threads;
    proc_done_cb done;
    void *ud;
};

static void proc_job_run(tpool_job_t *tp)
{
    proc_job_t *job = (proc_job_t *)tp; /* tp is the job's first member */
    job->started_us = clock_mono_us();
    proc_run(job);
    job->elapsed_us = clock_mono_us() - job->started_us;
}

static void proc_job_done(tpool_job_t *tp)
{
    proc_job_t *job = (proc_job_t *)tp;
    job->pool->done(job->pool->ud, job);
}

proc_pool_t *proc_pool_new(struct ev_loop *loop, int nthreads, proc_done_cb done, void *ud)
{
    tpool_t *threads = tpool_new(loop, nthreads, "processor");
    if (!threads) return NULL;
    proc_pool_t *p = xcalloc(1, sizeof *p); /* owned by the caller: proc_pool_free */
    p->threads = threads;
    p->done = done;
    p->ud = ud;
    return p;
}

void proc_pool_free(proc_pool_t *p)
{
    if (!p) return;
    tpool_free(p->threads);
    free(p);
}

void proc_pool_submit(proc_pool_t *p, proc_job_t *job)
{
    proc_job_reset(job);
    job->tp = (tpool_job_t){.run = proc_job_run, .done = proc_job_done};
    job->pool = p;
    tpool_submit(p->threads, &job->tp);
}

size_t proc_pool_busy(proc_pool_t *p)
{
    return tpool_busy(p->threads);
}
