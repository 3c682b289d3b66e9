/* processor: decisions, errors, timeouts and memory caps, through real Lua
 * states on the processor pool. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proc/processor.h"

static struct ev_loop *loop;
static proc_pool_t *pool;
static char dir[64];
static int jobs_done;

static void on_done(void *ud, proc_job_t *job)
{
    jobs_done++;
}

static int setup(void **state)
{
    char cwd[512];
    assert_non_null(getcwd(cwd, sizeof cwd));
    char lua[600];
    snprintf(lua, sizeof lua, "%s/lua", cwd);
    setenv("SHARDRUN_LUA_DIR", lua, 1);
    snprintf(dir, sizeof dir, "/tmp/shardrun-test-proc-XXXXXX");
    assert_non_null(mkdtemp(dir));
    loop = ev_loop_new(EVFLAG_AUTO);
    pool = proc_pool_new(loop, 2, on_done, NULL);
    return 0;
}

static int teardown(void **state)
{
    proc_pool_free(pool);
    ev_loop_destroy(loop);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static proc_script_t *script(const char *name, const char *body, errbuf_t *err)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(body, f);
    fclose(f);
    return proc_script_load(path, NULL, 0, NULL, err);
}

static batch_t *make_batch(size_t n)
{
    batch_t *b = batch_new(n, 64);
    for (size_t i = 0; i < n; i++) {
        char seq[24], data[32];
        snprintf(seq, sizeof seq, "%020zu", 100 + i);
        snprintf(data, sizeof data, "r%zu", i);
        batch_add(&b, data, strlen(data), "pk", 2, seq, strlen(seq), 0, 1000);
    }
    return b;
}

/* Waits (up to 30 s) for the job submitted after `before` jobs were done.
 * The pool's watcher does not keep the loop alive, so poll. */
static void wait_done(int before)
{
    for (int i = 0; i < 30000 && jobs_done == before; i++) {
        ev_run(loop, EVRUN_NOWAIT);
        if (jobs_done == before) usleep(1000);
    }
    assert_int_equal(jobs_done, before + 1);
}

/* Runs one job to completion. */
static void run_job(proc_job_t *job, proc_job_kind_t kind, proc_state_t *ps, const batch_t *b)
{
    job->kind = kind;
    job->ps = ps;
    job->batch = b;
    int before = jobs_done;
    proc_pool_submit(pool, job);
    wait_done(before);
}

typedef struct fixture {
    proc_script_t *s;
    proc_state_t *ps;
    proc_job_t job;
    batch_t *b;
} fixture_t;

static void open_fixture(fixture_t *f, const char *body, const proc_limits_t *limits)
{
    errbuf_t err;
    memset(f, 0, sizeof *f);
    f->s = script("p.lua", body, &err);
    if (!f->s) fail_msg("%s", err.msg);
    proc_shard_info_t info = {"stream", "shardId-1", "TRIM_HORIZON", "w"};
    proc_limits_t none = {0, 0, 0};
    f->ps = proc_state_new(f->s, &info, limits ? limits : &none, NULL, 0);
    run_job(&f->job, JOB_INIT, f->ps, NULL);
    assert_int_equal(f->job.decision, DEC_NONE);
    f->b = make_batch(5);
}

static void close_fixture(fixture_t *f)
{
    run_job(&f->job, JOB_CLOSE, f->ps, NULL);
    proc_job_reset(&f->job);
    proc_state_free(f->ps);
    proc_script_unref(f->s);
    batch_free(f->b);
}

/* processRecords returns `ret` (Lua expression over records). */
static void decide(const char *ret, proc_decision_t want, size_t index, const char *error_part)
{
    char body[512];
    snprintf(body, sizeof body, "local P = {}\nfunction P.processRecords(records, shard)\n  return %s\nend\nreturn P\n",
             ret);
    fixture_t f;
    open_fixture(&f, body, NULL);
    run_job(&f.job, JOB_PROCESS, f.ps, f.b);
    if (f.job.decision != want)
        fail_msg("%s: decision %d, want %d (error: %s)", ret, f.job.decision, want, f.job.error ? f.job.error : "-");
    if (want == DEC_AT || want == DEC_FAILED) assert_int_equal(f.job.index, index);
    if (error_part && (!f.job.error || !strstr(f.job.error, error_part)))
        fail_msg("%s: error \"%s\" lacks \"%s\"", ret, f.job.error ? f.job.error : "(none)", error_part);
    close_fixture(&f);
}

static void test_decisions(void **state)
{
    decide("nil", DEC_NONE, 0, NULL);
    decide("\"checkpoint\"", DEC_ALL, 0, NULL);
    decide("{ checkpoint = records[3] }", DEC_AT, 2, NULL);
    decide("records[2]", DEC_AT, 1, NULL);
    decide("records[4].sequenceNumber", DEC_AT, 3, NULL);
    decide("{ failed = records[2], error = \"bad data\" }", DEC_FAILED, 1, "bad data");
    decide("{ failed = records[1] }", DEC_FAILED, 0, NULL);
}

static void test_invalid_decisions_are_errors_naming_the_value(void **state)
{
    decide("\"00000000000000000999\"", DEC_ERROR, 0, "sequence number 00000000000000000999 is not in this batch");
    decide("42", DEC_ERROR, 0, "got a number 42");
    decide("true", DEC_ERROR, 0, "invalid decision");
    decide("{ checkpoint = 5 }", DEC_ERROR, 0, "not a number");
    decide("{ foo = 1 }", DEC_ERROR, 0, "invalid decision");
}

/* What the metrics count by kind: an invalid decision is not a raised error;
 * the job reports its state's memory. */
static void test_invalid_decisions_are_told_apart_from_raised_errors(void **state)
{
    static const char *const bodies[] = {
        "local P = {}\nfunction P.processRecords(r) return 42 end\nreturn P\n",
        "local P = {}\nfunction P.processRecords(r) return { checkpoint = 'nope' } end\nreturn P\n",
        "local P = {}\nfunction P.processRecords(r) error('boom') end\nreturn P\n",
        "local P = {}\nfunction P.processRecords(r) return 'checkpoint' end\nreturn P\n",
    };
    static const int invalid[] = {1, 1, 0, 0};
    for (size_t i = 0; i < 4; i++) {
        fixture_t f;
        open_fixture(&f, bodies[i], NULL);
        run_job(&f.job, JOB_PROCESS, f.ps, f.b);
        assert_int_equal(f.job.decision, i < 3 ? DEC_ERROR : DEC_ALL);
        assert_int_equal(f.job.invalid_decision, invalid[i]);
        assert_true(f.job.lua_bytes > 1000); /* a Lua state with the standard libraries */
        close_fixture(&f);
    }
}

static void test_raised_error_carries_message_and_traceback(void **state)
{
    fixture_t f;
    open_fixture(&f, "local P = {}\nlocal function inner() error('poison record') end\n"
                     "function P.processRecords(records) inner() end\nreturn P\n", NULL);
    run_job(&f.job, JOB_PROCESS, f.ps, f.b);
    assert_int_equal(f.job.decision, DEC_ERROR);
    assert_non_null(strstr(f.job.error, "p.lua:2: poison record"));
    assert_non_null(f.job.traceback);
    assert_non_null(strstr(f.job.traceback, "inner"));
    close_fixture(&f);
}

static void test_records_read_lazily_and_unusable_after_the_batch(void **state)
{
    fixture_t f;
    open_fixture(&f, "local P = {}\nlocal kept\n"
                     "function P.processRecords(records, shard)\n"
                     "  if kept then local _ = kept.partitionKey end\n"
                     "  assert(#records == 5 and records[2].data == 'r1' and records[2].partitionKey == 'pk')\n"
                     "  assert(records[5].sequenceNumber == '00000000000000000104')\n"
                     "  assert(records[1].approximateArrivalTimestamp == 1000 and records[1].subSequenceNumber == 0)\n"
                     "  local n = 0 for _, r in ipairs(records) do n = n + #r.data end assert(n == 10)\n"
                     "  kept = records[3]\n"
                     "  return 'checkpoint'\nend\nreturn P\n", NULL);
    run_job(&f.job, JOB_PROCESS, f.ps, f.b);
    if (f.job.decision != DEC_ALL) fail_msg("%s", f.job.error);
    run_job(&f.job, JOB_PROCESS, f.ps, f.b);
    assert_int_equal(f.job.decision, DEC_ERROR);
    assert_non_null(strstr(f.job.error, "used after that batch ended"));
    close_fixture(&f);
}

/* A batch ends however its call ends: returned, raised, timed out. A record
 * kept from it must never read the freed batch, which a later batch may
 * reuse (a timed-out call never runs a line of Lua after processRecords, so
 * liveness must not depend on one). */
static void kept_record_after(const char *how, const proc_limits_t *lim)
{
    char body[1024];
    snprintf(body, sizeof body,
             "local P = {}\n"
             "function P.processRecords(records, shard)\n"
             "  if shard.state.kept then\n"
             "    local ok, err = pcall(function() return shard.state.kept.data end)\n"
             "    if ok then error('kept record read: ' .. tostring(err)) end\n"
             "    if not tostring(err):find('used after that batch ended', 1, true) then error(err) end\n"
             "    return 'checkpoint'\n"
             "  end\n"
             "  shard.state.kept = records[2]\n"
             "  %s\n"
             "end\nreturn P\n",
             how);
    fixture_t f;
    open_fixture(&f, body, lim);
    batch_t *first = make_batch(5);
    f.job.kind = JOB_PROCESS;
    f.job.ps = f.ps;
    f.job.batch = first;
    int before = jobs_done;
    proc_pool_submit(pool, &f.job);
    if (lim && lim->timeout_ms) {
        usleep(200 * 1000);
        proc_interrupt(f.ps); /* what the shard's timer does */
    }
    wait_done(before);
    assert_int_equal(f.job.decision, DEC_ERROR);
    batch_free(first);
    /* the next batch may take the freed memory: fill it with other records */
    batch_t *second = batch_new(5, 64);
    for (int i = 0; i < 5; i++) batch_add(&second, "rec-17", 6, "pk", 2, "00000000000000000200", 20, 0, 1000);
    run_job(&f.job, JOB_PROCESS, f.ps, second);
    if (f.job.decision != DEC_ALL) fail_msg("%s: decision %d error %s", how, f.job.decision, f.job.error);
    batch_free(second);
    close_fixture(&f);
}

static void test_a_record_kept_past_its_batch_never_reads_freed_memory(void **state)
{
    proc_limits_t timeout = {200, 0, 0};
    kept_record_after("while true do end", &timeout);                          /* timed out */
    kept_record_after("while true do pcall(function() end) end", &timeout);   /* timed out through pcall */
    kept_record_after("error('poison')", NULL);                               /* raised */
    kept_record_after("return 'nonsense decision'", NULL);                    /* invalid decision */
}

static void test_timeout_interrupts_busy_loops_even_through_pcall(void **state)
{
    static const char *const loops[] = {
        "while true do end",
        "local x = 0 while true do x = x + 1 end",
        "while true do pcall(function() for i = 1, 1e6 do end end) end",
    };
    for (size_t i = 0; i < sizeof loops / sizeof *loops; i++) {
        char body[512];
        snprintf(body, sizeof body, "local P = {}\nfunction P.processRecords(records)\n  %s\nend\nreturn P\n",
                 loops[i]);
        fixture_t f;
        proc_limits_t lim = {200, 0, 0};
        open_fixture(&f, body, &lim);
        f.job.kind = JOB_PROCESS;
        f.job.ps = f.ps;
        f.job.batch = f.b;
        int before = jobs_done;
        proc_pool_submit(pool, &f.job);
        usleep(200 * 1000);
        proc_interrupt(f.ps); /* what the shard's timer does */
        wait_done(before);
        assert_int_equal(f.job.decision, DEC_ERROR);
        assert_true(f.job.timed_out);
        /* the state is usable again afterwards: the hook is gone */
        close_fixture(&f);
    }
}

static void test_memory_cap_is_an_error_and_the_state_is_recreated(void **state)
{
    fixture_t f;
    proc_limits_t lim = {0, 16, 0};
    open_fixture(&f, "local P = {}\nlocal inits = 0\nfunction P.initialize() inits = inits + 1 end\n"
                     "function P.processRecords(records)\n"
                     "  if records[1].data == 'grow' then local t = {} for i = 1, 1e9 do t[i] = ('x'):rep(100) .. i end end\n"
                     "  return inits == 1 and 'checkpoint' or nil\nend\nreturn P\n", &lim);
    batch_t *grow = batch_new(1, 16);
    batch_add(&grow, "grow", 4, "k", 1, "1", 1, 0, 0);
    run_job(&f.job, JOB_PROCESS, f.ps, grow);
    assert_int_equal(f.job.decision, DEC_ERROR);
    assert_true(f.job.out_of_memory);
    assert_non_null(strstr(f.job.error, "memory limit of 16 MB"));
    /* next batch: a fresh state (initialize ran again, so inits == 1 again) */
    run_job(&f.job, JOB_PROCESS, f.ps, f.b);
    if (f.job.decision != DEC_ALL) fail_msg("decision %d error %s", f.job.decision, f.job.error);
    batch_free(grow);
    close_fixture(&f);
}

/* A shard's state collects when its heap has grown fourfold (a batch is
 * mostly garbage once processed, processor.c); a capped state at LuaJIT's
 * own pace, so garbage does not fill its cap. The script reports the pace it
 * runs at: processRecords fails naming it unless it is `want`, or if the
 * collector, off while the runtime builds the state, was left off. */
static void gc_pause_is(const proc_limits_t *limits, int want)
{
    char body[512];
    snprintf(body, sizeof body,
             "local P = {}\nfunction P.processRecords(records)\n"
             "  if not collectgarbage('isrunning') then error('the collector is stopped') end\n"
             "  local pause = collectgarbage('setpause', 100)\n"
             "  collectgarbage('setpause', pause)\n"
             "  if pause ~= %d then error('pause ' .. pause) end\n"
             "  return 'checkpoint'\nend\nreturn P\n",
             want);
    fixture_t f;
    open_fixture(&f, body, limits);
    run_job(&f.job, JOB_PROCESS, f.ps, f.b);
    if (f.job.decision != DEC_ALL) fail_msg("want pause %d: %s", want, f.job.error ? f.job.error : "no error");
    close_fixture(&f);
}

static void test_gc_waits_longer_unless_a_memory_cap_is_set(void **state)
{
    (void)state;
    proc_limits_t capped = {0, 16, 0};
    gc_pause_is(NULL, 400);
    gc_pause_is(&capped, 200);
}

static void test_script_validation(void **state)
{
    errbuf_t err;
    assert_null(script("a.lua", "local P = {}\nfunction P.processRecords( end\nreturn P\n", &err));
    assert_non_null(strstr(err.msg, "a.lua:2:"));
    assert_null(script("b.lua", "return { initialize = function() end }\n", &err));
    assert_non_null(strstr(err.msg, "has no processRecords function"));
    assert_null(script("c.lua", "return 42\n", &err));
    assert_non_null(strstr(err.msg, "must return a table"));
    assert_null(script("d.lua", "error('at load')\n", &err));
    assert_non_null(strstr(err.msg, "d.lua:1: at load"));
    proc_script_t *s = script("e.lua", "return { processRecords = function() end }\n", &err);
    assert_non_null(s);
    assert_int_equal(strlen(s->hash), 16);
    proc_script_unref(s);
}

/* ---- shard.emit and onTimer ---- */

static void open_emitting(fixture_t *f, const char *body, int64_t limit)
{
    errbuf_t err;
    memset(f, 0, sizeof *f);
    f->s = script("e.lua", body, &err);
    if (!f->s) fail_msg("%s", err.msg);
    proc_shard_info_t info = {"stream", "shardId-1", "TRIM_HORIZON", "w"};
    proc_limits_t lim = {0, 0, limit};
    f->ps = proc_state_new(f->s, &info, &lim, NULL, 0);
    char *names[] = {"a", "b"};
    proc_state_set_outputs(f->ps, names, 2);
    run_job(&f->job, JOB_INIT, f->ps, NULL);
    if (f->job.decision != DEC_NONE) fail_msg("initialize: %s", f->job.error);
    f->b = make_batch(5);
}

static void test_emitted_records_are_copied_into_the_job_in_emit_order(void **state)
{
    fixture_t f;
    open_emitting(&f, "local P = {}\nfunction P.processRecords(records, shard)\n"
                      "  for i = 1, #records do shard.emit('b', records[i].data .. '\\0!', 'k' .. i) end\n"
                      "  shard.emit('a', '', 'key', '340282366920938463463374607431768211455')\n"
                      "  collectgarbage() -- the strings may go: the job has its own copies\n"
                      "  return 'checkpoint'\nend\nreturn P\n", 0);
    run_job(&f.job, JOB_PROCESS, f.ps, f.b);
    if (f.job.decision != DEC_ALL) fail_msg("%s", f.job.error);
    const emitbuf_t *e = &f.job.emits;
    assert_int_equal(e->count, 6);
    assert_int_equal(e->recs[0].output, 1);
    assert_int_equal(e->recs[0].data_len, 4);
    assert_memory_equal(emitbuf_data(e, 0), "r0\0!", 4);
    assert_string_equal(emitbuf_pkey(e, 4), "k5");
    assert_null(emitbuf_hash_key(e, 4));
    assert_int_equal(e->recs[5].output, 0);
    assert_int_equal(e->recs[5].data_len, 0);
    assert_string_equal(emitbuf_hash_key(e, 5), "340282366920938463463374607431768211455");
    assert_int_equal(e->bytes, 5 * 4 + 5 * 2 + 3 + 39);
    close_fixture(&f);
}

/* processRecords calls shard.emit(args); the error names the problem. */
static void emit_error(const char *args, const char *want)
{
    char body[512];
    snprintf(body, sizeof body, "local P = {}\nfunction P.processRecords(records, shard)\n  shard.emit(%s)\n"
             "  return 'checkpoint'\nend\nreturn P\n", args);
    fixture_t f;
    open_emitting(&f, body, 0);
    run_job(&f.job, JOB_PROCESS, f.ps, f.b);
    assert_int_equal(f.job.decision, DEC_ERROR);
    if (!strstr(f.job.error, want)) fail_msg("shard.emit(%s): \"%s\" lacks \"%s\"", args, f.job.error, want);
    assert_non_null(strstr(f.job.error, "e.lua:3:")); /* the script's line, not the runtime's */
    close_fixture(&f);
}

static void test_emit_checks_its_arguments(void **state)
{
    emit_error("'c', 'x', 'k'", "no output named \"c\" (outputs: a, b)");
    emit_error("'a', nil, 'k'", "data must be a string, got a nil");
    emit_error("'a', 'x', ''", "partitionKey must be a string of 1 to 256 bytes");
    emit_error("'a', 'x', string.rep('k', 257)", "partitionKey must be a string of 1 to 256 bytes");
    emit_error("'a', 'x', 'k\\0'", "without NUL");
    emit_error("'a', 'x', 'k', 'abc'", "explicitHashKey must be a decimal string");
    emit_error("'a', 'x', 'k', '340282366920938463463374607431768211456'", "explicitHashKey must be");
    emit_error("'a', string.rep('x', 1024 * 1024 + 1), 'k'", "over the 1 MiB record limit");
}

static void test_one_call_emits_at_most_its_limit(void **state)
{
    fixture_t f;
    open_emitting(&f, "local P = {}\nfunction P.processRecords(records, shard)\n"
                      "  for i = 1, 10 do shard.emit('a', string.rep('x', 30), 'k') end\n"
                      "end\nreturn P\n", 100);
    run_job(&f.job, JOB_PROCESS, f.ps, f.b);
    assert_int_equal(f.job.decision, DEC_ERROR);
    assert_non_null(strstr(f.job.error, "emitted more than max_emit_buffer_mb"));
    assert_int_equal(f.job.emits.count, 3); /* what came before the limit stays: the shard drops it */
    close_fixture(&f);
}

static void test_leaseLost_cannot_emit(void **state)
{
    fixture_t f;
    open_emitting(&f, "local P = {}\nfunction P.processRecords() end\n"
                      "function P.leaseLost(shard) shard.emit('a', 'x', 'k') end\nreturn P\n", 0);
    run_job(&f.job, JOB_LEASE_LOST, f.ps, NULL);
    assert_int_equal(f.job.decision, DEC_ERROR);
    assert_non_null(strstr(f.job.error, "not available in leaseLost"));
    assert_int_equal(f.job.emits.count, 0);
    close_fixture(&f);
}

/* onTimer returns `ret`; checks the decision (and position, for DEC_AT). */
static void timer_decides(const char *ret, proc_decision_t want, const char *seq, int64_t sub, const char *error_part)
{
    char body[512];
    snprintf(body, sizeof body, "local P = {}\nfunction P.processRecords() end\n"
             "function P.onTimer(shard, now)\n  assert(now == 1700000000123)\n  return %s\nend\nreturn P\n", ret);
    fixture_t f;
    open_emitting(&f, body, 0);
    f.job.now_ms = 1700000000123;
    run_job(&f.job, JOB_TIMER, f.ps, NULL);
    if (f.job.decision != want)
        fail_msg("%s: decision %d, want %d (%s)", ret, f.job.decision, want, f.job.error ? f.job.error : "-");
    if (seq) {
        assert_string_equal(f.job.cp_seq, seq);
        assert_int_equal(f.job.cp_sub, sub);
    }
    if (error_part && (!f.job.error || !strstr(f.job.error, error_part)))
        fail_msg("%s: error \"%s\" lacks \"%s\"", ret, f.job.error ? f.job.error : "(none)", error_part);
    close_fixture(&f);
}

static void test_onTimer_decisions(void **state)
{
    timer_decides("nil", DEC_NONE, NULL, 0, NULL);
    timer_decides("'checkpoint'", DEC_ALL, NULL, 0, NULL);
    timer_decides("'00000000000000000104'", DEC_AT, "00000000000000000104", 0, NULL);
    timer_decides("{ sequenceNumber = '49590', subSequenceNumber = 3 }", DEC_AT, "49590", 3, NULL);
    timer_decides("{ checkpoint = { sequenceNumber = '7' } }", DEC_AT, "7", 0, NULL);
    timer_decides("42", DEC_ERROR, NULL, 0, "got a number 42");
    timer_decides("'soon'", DEC_ERROR, NULL, 0, "invalid decision");
    timer_decides("error('late')", DEC_ERROR, NULL, 0, "late");
}

static void test_onTimer_runs_in_the_shards_state_and_may_emit(void **state)
{
    fixture_t f;
    open_emitting(&f, "local P = {}\nfunction P.processRecords(records, shard) shard.state.n = #records end\n"
                      "function P.onTimer(shard, now) shard.emit('a', tostring(shard.state.n), 'k') end\n"
                      "return P\n", 0);
    run_job(&f.job, JOB_PROCESS, f.ps, f.b);
    run_job(&f.job, JOB_TIMER, f.ps, NULL);
    assert_int_equal(f.job.decision, DEC_NONE);
    assert_int_equal(f.job.emits.count, 1);
    assert_memory_equal(emitbuf_data(&f.job.emits, 0), "5", 1);
    /* a script without onTimer: nothing happens */
    close_fixture(&f);
    open_emitting(&f, "return { processRecords = function() end }\n", 0);
    run_job(&f.job, JOB_TIMER, f.ps, NULL);
    assert_int_equal(f.job.decision, DEC_NONE);
    close_fixture(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decisions),
        cmocka_unit_test(test_invalid_decisions_are_errors_naming_the_value),
        cmocka_unit_test(test_invalid_decisions_are_told_apart_from_raised_errors),
        cmocka_unit_test(test_raised_error_carries_message_and_traceback),
        cmocka_unit_test(test_records_read_lazily_and_unusable_after_the_batch),
        cmocka_unit_test(test_a_record_kept_past_its_batch_never_reads_freed_memory),
        cmocka_unit_test(test_timeout_interrupts_busy_loops_even_through_pcall),
        cmocka_unit_test(test_memory_cap_is_an_error_and_the_state_is_recreated),
        cmocka_unit_test(test_gc_waits_longer_unless_a_memory_cap_is_set),
        cmocka_unit_test(test_script_validation),
        cmocka_unit_test(test_emitted_records_are_copied_into_the_job_in_emit_order),
        cmocka_unit_test(test_emit_checks_its_arguments),
        cmocka_unit_test(test_one_call_emits_at_most_its_limit),
        cmocka_unit_test(test_leaseLost_cannot_emit),
        cmocka_unit_test(test_onTimer_decisions),
        cmocka_unit_test(test_onTimer_runs_in_the_shards_state_and_may_emit),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
