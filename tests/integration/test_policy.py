"""Error policy: an uncaught error never skips a record silently.

One shard, 1000 records r0..r999 in one batch; poison records raise. The
processor writes the records of a batch only when the whole batch succeeded,
and every call ("call first last count") to calls.log, so each test knows
exactly which records were processed, how often each batch ran, and where the
checkpoint ends."""
import hashlib
import json
import os
import time

from conftest import processed_log, processed_log_processor, wait_for

PROCESSOR = r'''
local P = {}
local poison = {}
for k in (os.getenv("POISON") or ""):gmatch("[^,]+") do poison[k] = true end
function P.processRecords(records, shard)
  local calls = assert(io.open("calls.log", "a"))
  calls:write("call ", records[1].data, " ", records[#records].data, " ", #records, "\n")
  calls:close()
  local done = {}
  for i = 1, #records do
    local d = records[i].data
    if poison[d] then
      if os.getenv("MODE") == "failed" then
        local out = assert(io.open("processed.log", "a"))
        out:write(table.concat(done))
        out:close()
        return { failed = records[i], error = "bad record " .. d }
      end
      error("poison record " .. d)
    end
    done[#done + 1] = d .. "\n"
  end
  local out = assert(io.open("processed.log", "a"))
  out:write(table.concat(done))
  out:close()
  return "checkpoint"
end
function P.shutdownRequested() return "checkpoint" end
return P
'''


def prepare(env, on_error, poison=("r500",), mode="raise", n=1000, extra=None):
    env.write("p.lua", PROCESSOR)
    stream = {"name": "s", "processor": "p.lua", "max_records": n}
    if on_error is not None:  # None: the default policy
        stream["on_error"] = on_error
    stream.update(extra or {})
    env.config([stream])
    env.create_stream("s", 1)
    env.put("s", [f"r{i}" for i in range(n)], partition_key="k")
    env.extra_env.update({"POISON": ",".join(poison), "MODE": mode})


def calls(env):
    p = env.dir / "calls.log"
    return [l.split()[1:] for l in p.read_text().splitlines()] if p.exists() else []


def checkpoint(env):
    (row,) = env.leases().values()
    return row["checkpoint"]


def last_seq(env, index):
    # local sequence numbers: 20 digits, records numbered from 1 in put order
    return f"{index + 1:020d}"


def run_drain(env, timeout=60):
    w = env.worker("--drain")
    assert w.wait(timeout) == 0, w.logs()
    return w


def test_skip_by_batch_skips_the_failing_batch_and_says_so(env):
    prepare(env, {"isolate": "batch", "retries": 0, "final": "skip", "breaker": False})
    w = run_drain(env)
    assert processed_log(env) == []
    (ev,) = w.events("records_skipped")
    assert ev["count"] == "1000" and ev["first"] == last_seq(env, 0) and ev["last"] == last_seq(env, 999)
    assert "poison record r500" in ev["error"]
    assert checkpoint(env) == last_seq(env, 999)


def test_skip_skips_only_the_poison_record(env):
    prepare(env, "skip")
    w = run_drain(env)
    got = processed_log(env)
    assert sorted(got) == sorted(f"r{i}" for i in range(1000) if i != 500)
    assert got == [f"r{i}" for i in range(1000) if i != 500], "order within the shard is kept"
    (ev,) = w.events("records_skipped")
    assert ev["count"] == "1" and ev["first"] == last_seq(env, 500)
    assert checkpoint(env) == last_seq(env, 999)


def test_isolation_narrows_down_two_poison_records(env):
    prepare(env, {"retries": 0, "final": "skip"}, poison=("r3", "r777"))
    w = run_drain(env)
    assert processed_log(env) == [f"r{i}" for i in range(1000) if i not in (3, 777)]
    assert len(w.events("batch_failed")) > 2, "each bisection step is logged"
    skipped = sorted(e["first"] for e in w.events("records_skipped"))
    assert skipped == [last_seq(env, 3), last_seq(env, 777)]


def test_dead_letter_writes_the_poison_record_before_checkpointing_past_it(env):
    prepare(env, {"retries": 0, "final": "dead_letter", "dead_letter": {"file": "dlq.jsonl"}})
    run_drain(env)
    assert processed_log(env) == [f"r{i}" for i in range(1000) if i != 500]
    lines = [json.loads(l) for l in (env.dir / "dlq.jsonl").read_text().splitlines()]
    assert len(lines) == 1
    d = lines[0]
    assert d["stream"] == "s" and d["shard"] == "shardId-000000000000"
    assert d["sequenceNumber"] == last_seq(env, 500) and d["partitionKey"] == "k"
    assert d["data"] == "cjUwMA=="  # base64 of r500
    assert "poison record r500" in d["error"] and "p.lua:" in d["traceback"] and "_host" not in d["traceback"]
    assert d["attempts"] >= 1 and d["time"]
    assert checkpoint(env) == last_seq(env, 999)


def test_dead_letter_replay_puts_the_records_back(env):
    prepare(env, {"isolate": "batch", "retries": 0, "breaker": False, "final": "dead_letter",
                  "dead_letter": {"file": "dlq.jsonl"}})
    run_drain(env)
    assert len((env.dir / "dlq.jsonl").read_text().splitlines()) == 1000
    env.run("stream", "create", "again", "--shards", "2")
    env.run("dlq", "replay", "dlq.jsonl", "--to", "again")
    listing = env.run("stream", "list").stdout.decode()
    assert "again" in listing and "records=1000" in listing.split("again")[1].split("\n")[0]


def test_unwritable_dead_letter_destination_never_checkpoints_past_the_records(env):
    # a folder that does not exist: the write fails even for root
    prepare(env, {"retries": 0, "final": "dead_letter", "dead_letter": {"file": "missing/dlq.jsonl"}})
    w = env.worker()
    wait_for(lambda: w.events("dead_letter_failed"), what="a failed dead-letter write")
    time.sleep(0.5)
    w.stop()
    # the good records before the poison one are done; nothing at or after r500 is checkpointed
    assert checkpoint(env) == last_seq(env, 499)
    assert processed_log(env) == [f"r{i}" for i in range(500)], "the shard waits at the poison record"
    # once the destination exists, the write succeeds and the shard goes on
    (env.dir / "missing").mkdir()
    w2 = env.worker("--drain")
    assert w2.wait(60) == 0, w2.logs()
    assert checkpoint(env) == last_seq(env, 999)
    assert len((env.dir / "missing" / "dlq.jsonl").read_text().splitlines()) == 1


def test_halt_stops_the_shard_at_the_failing_record_and_status_says_halted(env):
    # isolation first: the records before the poison one are processed and
    # checkpointed; the shard stops at it, after its retries
    prepare(env, "halt")
    w = env.worker()
    wait_for(lambda: w.events("shard_halted"), what="shard_halted")
    assert checkpoint(env) == last_seq(env, 499)
    assert processed_log(env) == [f"r{i}" for i in range(500)]
    assert w.alive()
    ev = w.events("shard_halted")[0]
    assert "poison record r500" in ev["error"]
    # status shows the shard halted with the error (written with the next renewal)
    st = wait_for(lambda: [r for r in env.status() if r["state"] == "halted"], what="status halted")
    assert "poison record r500" in st[0]["worker"]["error"]
    assert st[0]["worker"]["batchesFailed"] >= 1
    w.stop()


def test_halt_worker_exits_non_zero(env):
    prepare(env, {"final": "halt", "halt_worker": True})
    w = env.worker()
    assert w.wait(30) == 1
    assert w.events("worker_halted")
    cp = checkpoint(env)
    assert cp == "TRIM_HORIZON" or cp <= last_seq(env, 499), "never past the poison record"


def test_retry_runs_the_batch_again_then_goes_to_final(env):
    prepare(env, {"retries": 2, "backoff_ms": 10, "max_backoff_ms": 20, "isolate": "batch", "final": "skip",
                  "breaker": False})
    w = run_drain(env)
    assert calls(env) == [["r0", "r999", "1000"]] * 3
    failures = w.events("batch_failed")
    assert len(failures) == 3
    # each attempt's line names the error and, in a field of its own, the traceback
    assert all("poison record r500" in f["error"] and "stack traceback" not in f["error"] for f in failures)
    assert all("stack traceback" in f["traceback"] and "poison record" not in f["traceback"] for f in failures)
    assert w.events("records_skipped")[0]["count"] == "1000"


def test_default_policy_retries_forever_and_skips_nothing(env):
    prepare(env, None)
    w = env.worker()
    wait_for(lambda: len(calls(env)) >= 2, timeout=20, what="a retry")
    w.stop()
    assert processed_log(env) == []
    assert checkpoint(env) == "TRIM_HORIZON"
    assert not w.events("records_skipped")


def test_failed_decision_checkpoints_the_records_before_it(env):
    prepare(env, "halt", mode="failed")
    w = env.worker()
    wait_for(lambda: w.events("shard_halted"), what="shard_halted")
    w.stop()
    assert processed_log(env) == [f"r{i}" for i in range(500)]
    assert checkpoint(env) == last_seq(env, 499)
    assert "bad record r500" in w.events("shard_halted")[0]["error"]


def test_max_record_age_sends_old_records_to_final_without_retries(env):
    prepare(env, {"retries": -1, "backoff_ms": 10, "max_record_age_s": 1, "isolate": "batch", "final": "skip",
                  "breaker": False})
    time.sleep(1.5)
    w = run_drain(env)
    assert len(calls(env)) == 1
    assert w.events("records_skipped")[0]["count"] == "1000"


def test_timeout_interrupts_an_endless_loop_even_through_pcall(env):
    env.write("p.lua", r'''
local P = {}
function P.processRecords(records)
  if records[1].data == "spin" then while true do pcall(function() local x = 0 for i = 1, 1e5 do x = x + i end end) end end
  local out = assert(io.open("processed.log", "a")) out:write(records[1].data, "\n") out:close()
  return "checkpoint"
end
return P
''')
    env.config([{"name": "s", "processor": "p.lua", "max_records": 1, "process_timeout_ms": 300, "on_error": "skip"}])
    env.create_stream("s", 1)
    env.put("s", ["spin", "after"], partition_key="k")
    w = run_drain(env)
    assert processed_log(env) == ["after"]
    assert w.events("process_timeout")
    assert "timed out" in w.events("records_skipped")[0]["error"]


def test_memory_cap_is_a_failure_and_the_state_is_recreated(env):
    env.write("p.lua", r'''
local P = {}
function P.processRecords(records)
  if records[1].data == "hog" then local t = {} for i = 1, 1e9 do t[i] = ("x"):rep(64) .. i end end
  local out = assert(io.open("processed.log", "a")) out:write(records[1].data, "\n") out:close()
  return "checkpoint"
end
return P
''')
    env.config([{"name": "s", "processor": "p.lua", "max_records": 1, "memory_limit_mb": 32, "on_error": "skip"}])
    env.create_stream("s", 1)
    env.put("s", ["hog", "after"], partition_key="k")
    w = run_drain(env)
    assert processed_log(env) == ["after"]
    assert "memory limit of 32 MB" in w.events("records_skipped")[0]["error"]


def test_dead_letter_to_a_local_stream_then_replayed_nowhere_lost(env):
    from conftest import stream_records
    prepare(env, {"retries": 0, "final": "dead_letter", "dead_letter": {"stream": "errors"}})
    env.run("stream", "create", "errors", "--shards", "1")
    w = run_drain(env)
    assert processed_log(env) == [f"r{i}" for i in range(1000) if i != 500]
    rows = stream_records(env, "errors")
    assert len(rows) == 1
    d = json.loads(rows[0][2])
    assert d["sequenceNumber"] == last_seq(env, 500) and "poison record r500" in d["error"]
    assert w.events("records_dead_lettered")[0]["destination"] == "errors"
    assert checkpoint(env) == last_seq(env, 999)


def test_dead_letter_to_a_missing_stream_halts_the_shard_and_checkpoints_nothing_past_it(env):
    # a destination that cannot take the records is not retried silently:
    # the shard halts, naming the dead-letter stream
    prepare(env, {"retries": 0, "final": "dead_letter", "dead_letter": {"stream": "nowhere"}})
    w = env.worker()
    wait_for(lambda: w.events("shard_halted"), what="the shard to halt")
    failed = w.events("dead_letter_failed")
    assert failed and failed[0]["destination"] == "nowhere" and failed[0]["action"].startswith("halt")
    assert "dead-letter stream nowhere" in w.events("shard_halted")[0]["error"]
    w.stop()
    assert checkpoint(env) == last_seq(env, 499)


def shard_of(key, shards=2):
    """The shard a partition key lands on (MD5 over even hash ranges, as Kinesis)."""
    return int.from_bytes(hashlib.md5(key.encode()).digest(), "big") * shards >> 128


def key_on(shard):
    return next(k for k in (f"key{i}" for i in range(1000)) if shard_of(k) == shard)


def test_a_dead_letter_write_that_blocks_stalls_only_its_shard(env):
    # The dead-letter file is a FIFO nobody reads yet, so the write blocks
    # (in open). The worker must keep renewing leases and processing the other
    # shard meanwhile, and checkpoint nothing past the record until it lands.
    os.mkfifo(env.dir / "dlq.fifo")
    env.write("p.lua", PROCESSOR)
    env.config([{"name": "s", "processor": "p.lua",
                 "on_error": {"final": "dead_letter", "dead_letter": {"file": "dlq.fifo"}}}])
    env.create_stream("s", 2)
    env.extra_env.update({"POISON": "p0", "MODE": "raise"})
    env.put("s", ["p0"], partition_key=key_on(0))
    w = env.worker()
    wait_for(lambda: w.events("batch_failed"), what="the poison batch to fail")
    stuck, other = "shardId-000000000000", "shardId-000000000001"
    counter = env.leases()[stuck]["leaseCounter"]
    env.put("s", [f"g{i}" for i in range(100)], partition_key=key_on(1))
    wait_for(lambda: env.leases()[other]["checkpoint"] != "TRIM_HORIZON", what="the other shard to go on")
    assert processed_log(env) == [f"g{i}" for i in range(100)]
    # lease_duration 2 s: renewals every ~0.7 s go on while the write waits
    wait_for(lambda: env.leases()[stuck]["leaseCounter"] >= counter + 3, what="renewals of the stuck shard")
    assert env.leases()[stuck]["checkpoint"] == "TRIM_HORIZON" and not w.events("records_dead_lettered")
    with open(env.dir / "dlq.fifo", "rb") as f:  # a reader: the write goes through
        line = json.loads(f.readline())
    assert line["data"] == "cDA=" and line["shard"] == stuck  # base64 of p0
    wait_for(lambda: env.leases()[stuck]["checkpoint"] != "TRIM_HORIZON", what="the checkpoint past p0")
    assert w.events("records_dead_lettered")[0]["destination"].endswith("/dlq.fifo")
    assert not w.events("lease_lost") and w.stop() == 0


def test_a_record_too_large_for_a_dead_letter_stream_is_dead_lettered_as_metadata(env):
    # A dead-letter line is the record in base64 plus metadata: a 900 KB
    # record makes a line over the 1 MiB stream record limit. It is sent as
    # metadata only (its size, no data) and counted, never retried forever.
    env.write("p.lua", r'''
local P = {}
function P.processRecords(records)
  local out = assert(io.open("processed.log", "a"))
  for i = 1, #records do
    if #records[i].data > 500000 then out:close() error("poison record of " .. #records[i].data .. " bytes") end
    out:write(records[i].data, "\n")
  end
  out:close()
  return "checkpoint"
end
return P
''')
    env.config([{"name": "s", "processor": "p.lua", "max_records": 1,
                 "on_error": {"final": "dead_letter", "dead_letter": {"stream": "errors"}}}])
    env.create_stream("s", 1)
    env.run("stream", "create", "errors", "--shards", "1")
    big = "B" * (900 * 1024)
    env.put("s", ["r0", big, "r2"], partition_key="k")
    w = run_drain(env)
    assert processed_log(env) == ["r0", "r2"]
    from conftest import stream_records
    (row,) = stream_records(env, "errors")
    d = json.loads(row[2])
    assert d["dataOmitted"] is True and d["size"] == len(big) and "data" not in d
    assert d["sequenceNumber"] == last_seq(env, 1) and "poison record" in d["error"]
    (ev,) = w.events("records_dead_lettered")
    assert ev["data_omitted"] == "1"
    assert checkpoint(env) == last_seq(env, 2)


def test_isolation_does_not_turn_a_transient_outage_into_skips(env):
    # Every call fails while the downstream is "down". Once the batch's
    # retries are spent, isolation narrows it down to single records; a single
    # record gets its own retries, with backoff, before anything is skipped. The
    # test ends the outage when isolation first reaches a single record: nothing
    # may have been skipped by then, and nothing is skipped afterwards.
    env.write("p.lua", processed_log_processor('  local down = io.open("down")\n'
                                               '  if down then down:close() error("downstream unavailable") end\n'))
    env.config([{"name": "s", "processor": "p.lua", "max_records": 64,
                 "on_error": {"retries": 2, "backoff_ms": 1000, "max_backoff_ms": 2000, "final": "skip"}}])
    env.create_stream("s", 1)
    env.put("s", [f"r{i}" for i in range(64)], partition_key="k")
    (env.dir / "down").write_text("")
    w = env.worker()
    wait_for(lambda: [e for e in w.events("batch_failed") if e["count"] == "1"], timeout=60,
             what="isolation to reach a single record")
    assert not w.events("records_skipped"), "a record was skipped during a transient outage"
    (env.dir / "down").unlink()
    wait_for(lambda: len(processed_log(env)) == 64, timeout=60, what="every record processed")
    w.stop()
    assert not w.events("records_skipped")
    assert processed_log(env) == [f"r{i}" for i in range(64)]


def test_a_dead_letter_put_to_a_local_stream_held_up_by_a_writer_stalls_only_its_shard(env):
    # Another process holds the stream file's write lock, so the dead-letter
    # put waits for it (SQLite's busy timeout). The put must wait off the loop
    # thread: leases are renewed meanwhile and nothing is lost.
    import sqlite3
    env.write("p.lua", r'''
local P = {}
function P.processRecords(records)
  for i = 1, #records do
    if records[i].data == "p0" then
      while not io.open("locked") do os.execute("sleep 0.05") end  -- the test holds the lock now
      error("poison record p0")
    end
  end
  return "checkpoint"
end
return P
''')
    env.config([{"name": "s", "processor": "p.lua",
                 "on_error": {"final": "dead_letter", "dead_letter": {"stream": "errors"}}}],
               lease_duration_ms=1500)
    env.create_stream("s", 2)
    env.run("stream", "create", "errors", "--shards", "1")
    env.put("s", ["p0"], partition_key=key_on(0))
    w = env.worker()
    wait_for(lambda: len(w.events("shard_started")) == 2, what="both shards to start")
    holder = sqlite3.connect(env.dir / "streams.db", timeout=10, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # the write lock, held
    stuck = "shardId-000000000000"
    try:
        (env.dir / "locked").write_text("")
        wait_for(lambda: w.events("batch_failed"), what="the poison batch to fail")
        counter = env.leases()[stuck]["leaseCounter"]
        time.sleep(3)  # renewals every 0.5 s go on while the put waits
        assert env.leases()[stuck]["leaseCounter"] >= counter + 3
        assert not w.events("lease_lost") and not w.events("records_dead_lettered")
    finally:
        holder.execute("COMMIT")
        holder.close()
    wait_for(lambda: w.events("records_dead_lettered"), what="the dead-letter put after the lock is gone")
    wait_for(lambda: env.leases()[stuck]["checkpoint"] != "TRIM_HORIZON", what="the checkpoint past p0")
    assert not w.events("lease_lost") and w.stop() == 0
