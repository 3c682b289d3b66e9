/* test_luajit_hook: the LuaJIT we link can interrupt JIT-compiled loops.
 *
 * process_timeout_ms relies on a count hook (lua_sethook + LUA_MASKCOUNT)
 * raising an error once a deadline has passed. Stock Debian LuaJIT never runs
 * the hook inside compiled traces, so `while true do x = x + 1 end` spins
 * forever; the project's build (scripts/build-luajit.sh) enables
 * LUAJIT_ENABLE_CHECKHOOK. Each loop runs in a forked child so a LuaJIT
 * without CHECKHOOK makes this test fail after a few seconds instead of
 * hanging the suite.
 *
 * Also checks that a C Lua module (lua-cjson's cjson.so, which leaves lua_*
 * unresolved) loads into a program linked with the static libluajit: that
 * needs the executable to export its symbols (-Wl,-E in the Makefile). */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#define HOOK_EVERY 1000        /* instructions between hook calls */
#define DEADLINE_MS 200        /* the script's time budget */
#define MUST_STOP_WITHIN_MS 1000
#define WATCHDOG_MS 5000       /* a child still running then has hung */

/* Child exit codes, so the parent can say what went wrong. */
enum { CHILD_INTERRUPTED = 0, CHILD_TOO_SLOW = 10, CHILD_NOT_HOOK_ERROR = 11,
       CHILD_LOAD_FAILED = 12, CHILD_NO_JIT = 13 };

static double deadline; /* monotonic seconds; only the forked child uses it */

static double now_s(void) {
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) return 0;
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Raises a Lua error once the deadline has passed, as the processor will. */
static void deadline_hook(lua_State *L, lua_Debug *ar) {
    (void)ar;
    if (now_s() >= deadline) luaL_error(L, "shardrun: deadline exceeded");
}

/* Runs `code` under the hook; returns a CHILD_* code. */
static int run_with_deadline(const char *code) {
    lua_State *L = luaL_newstate();
    if (L == NULL) return CHILD_LOAD_FAILED;
    luaL_openlibs(L);
    /* The point is JIT-compiled loops: make sure the JIT is really on. */
    if (luaL_dostring(L, "assert(jit and jit.status(), 'JIT is off')") != 0) {
        lua_close(L);
        return CHILD_NO_JIT;
    }
    if (luaL_loadstring(L, code) != 0) {
        fprintf(stderr, "load: %s\n", lua_tostring(L, -1));
        lua_close(L);
        return CHILD_LOAD_FAILED;
    }
    double start = now_s();
    deadline = start + DEADLINE_MS / 1000.0;
    lua_sethook(L, deadline_hook, LUA_MASKCOUNT, HOOK_EVERY);
    int rc = lua_pcall(L, 0, 0, 0);
    double took_ms = (now_s() - start) * 1000.0;
    const char *msg = lua_tostring(L, -1);
    int ok = rc == LUA_ERRRUN && msg && strstr(msg, "deadline exceeded");
    fprintf(stderr, "interrupted after %.0f ms: %s\n", took_ms, msg ? msg : "(no message)");
    lua_close(L);
    if (!ok) return CHILD_NOT_HOOK_ERROR;
    return took_ms <= MUST_STOP_WITHIN_MS ? CHILD_INTERRUPTED : CHILD_TOO_SLOW;
}

/* Forks, runs `code` in the child and fails the test unless the child was
 * interrupted by the hook in time. Kills the child if it hangs. */
static void assert_interrupted(const char *code) {
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) _exit(run_with_deadline(code));

    int status = 0;
    double give_up = now_s() + WATCHDOG_MS / 1000.0;
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) break;
        if (w < 0 && errno != EINTR) fail_msg("waitpid: %s", strerror(errno));
        if (now_s() >= give_up) {
            if (kill(pid, SIGKILL) != 0) fail_msg("kill: %s", strerror(errno));
            if (waitpid(pid, &status, 0) != pid) fail_msg("waitpid after kill failed");
            fail_msg("loop was NOT interrupted within %d ms: this LuaJIT ignores count "
                     "hooks in compiled code (run scripts/build-luajit.sh)", WATCHDOG_MS);
        }
        usleep(10 * 1000);
    }
    if (!WIFEXITED(status)) fail_msg("child died with signal %d", WTERMSIG(status));
    switch (WEXITSTATUS(status)) {
    case CHILD_INTERRUPTED: return;
    case CHILD_TOO_SLOW: fail_msg("interrupted, but later than %d ms", MUST_STOP_WITHIN_MS);
    case CHILD_NOT_HOOK_ERROR: fail_msg("pcall ended without the hook's error");
    case CHILD_NO_JIT: fail_msg("the JIT is disabled, so this test proves nothing");
    default: fail_msg("child exit status %d", WEXITSTATUS(status));
    }
}

/* Forks, runs `code` without any hook, and fails unless it finishes within
 * the watchdog time (a miscompiled loop spins forever). */
static void assert_completes(const char *code) {
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        lua_State *L = luaL_newstate();
        luaL_openlibs(L);
        _exit(luaL_dostring(L, code) == 0 ? 0 : 3);
    }
    int status = 0;
    double give_up = now_s() + WATCHDOG_MS / 1000.0;
    while (waitpid(pid, &status, WNOHANG) != pid) {
        if (now_s() >= give_up) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fail_msg("the loop did not finish within %d ms (miscompiled under CHECKHOOK?)", WATCHDOG_MS);
        }
        usleep(10 * 1000);
    }
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* Regression: with CHECKHOOK, traces starting at a pairs()/next() loop
 * (BC_ITERN) closed before recording the iteration and spun forever; see
 * the fix in scripts/build-luajit.sh. */
static void test_compiled_pairs_loops_finish(void **state) {
    (void)state;
    assert_completes("local t = {} for i = 1, 35 do t[tostring(i)] = 1 end\n"
                     "for round = 1, 200 do local n = 0 for _ in pairs(t) do n = n + 1 end assert(n == 35) end");
    assert_completes("local t = {} for i = 1, 1000 do t['k' .. i] = i end\n"
                     "local s = 0 for round = 1, 100 do for k, v in pairs(t) do s = s + v end end\n"
                     "assert(s == 100 * 500500)\n"
                     "local u = {} for i = 1, 50 do u[i] = {a = i} end\n"
                     "for r = 1, 100 do for _, x in pairs(u) do for k, v in pairs(x) do s = s + v end end end\n"
                     "local k, n = next(t), 0 while k do n = n + 1 k = next(t, k) end assert(n == 1000)");
}

static void test_hook_interrupts_endless_pairs_loop(void **state) {
    (void)state;
    assert_interrupted("local t = {} for i = 1, 40 do t[tostring(i)] = i end\n"
                       "local n = 0 while true do for _, v in pairs(t) do n = n + v end end");
}

static void test_hook_interrupts_compiled_while_true_loop(void **state) {
    (void)state;
    assert_interrupted("local x = 0 while true do x = x + 1 end");
}

static void test_hook_interrupts_compiled_numeric_for_loop(void **state) {
    (void)state;
    assert_interrupted("local x = 0 for i = 1, 1e12 do x = x + i end");
}

static void test_require_cjson_loads_c_module_into_static_luajit(void **state) {
    (void)state;
    lua_State *L = luaL_newstate();
    assert_non_null(L);
    luaL_openlibs(L);
    const char *code =
        "local cjson = require 'cjson'\n"
        "local t = cjson.decode(cjson.encode({ shard = 'shardId-000', n = 3 }))\n"
        "assert(t.shard == 'shardId-000' and t.n == 3, 'cjson round trip')\n";
    int rc = luaL_dostring(L, code);
    if (rc != 0) fail_msg("require 'cjson' failed: %s", lua_tostring(L, -1));
    lua_close(L);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hook_interrupts_compiled_while_true_loop),
        cmocka_unit_test(test_hook_interrupts_compiled_numeric_for_loop),
        cmocka_unit_test(test_compiled_pairs_loops_finish),
        cmocka_unit_test(test_hook_interrupts_endless_pairs_loop),
        cmocka_unit_test(test_require_cjson_loads_c_module_into_static_luajit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
