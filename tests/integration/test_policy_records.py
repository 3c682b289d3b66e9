"""The error policy at the grain of records (issue 12): one bad record costs
one record; halted shards resume; counters outlive their owner; the
shorthands are the defaults table."""
import json
import time

from conftest import wait_for

# Writes every record it processed (one file per shard: appends from several
# processor threads into one file could interleave); raises on a record whose
# data starts with "bad" (or reports it with {failed = r} when MODE=failed);
# counts its calls.
PROCESSOR = r'''
local P = {}
function P.processRecords(records, shard)
  local calls = assert(io.open("calls-" .. shard.id .. ".log", "a")) calls:write(#records, "\n") calls:close()
  local done = {}
  for i = 1, #records do
    local d = records[i].data
    if d:sub(1, 3) == "bad" then
      if os.getenv("MODE") == "failed" then
        local out = assert(io.open("processed-" .. shard.id .. ".log", "a")) out:write(table.concat(done)) out:close()
        return { failed = records[i], error = "malformed " .. d }
      end
      error("malformed " .. d)
    end
    done[#done + 1] = d .. "\n"
  end
  local out = assert(io.open("processed-" .. shard.id .. ".log", "a")) out:write(table.concat(done)) out:close()
  return "checkpoint"
end
return P
'''

N, SHARDS = 5000, 4
BAD = {i * 250 + 17 for i in range(20)}   # 20 poison records spread over the stream


def lines():
    return [f"bad{i}" if i in BAD else f"good{i}" for i in range(N)]


def prepare(env, on_error, mode="raise", extra=None):
    env.write("p.lua", PROCESSOR)
    stream = {"name": "s", "processor": "p.lua", "max_records": 500, "on_error": on_error}
    stream.update(extra or {})
    env.config([stream])
    env.create_stream("s", SHARDS)
    env.put("s", lines())
    env.extra_env["MODE"] = mode


def processed(env):
    """Every record processed, shard after shard (in order within each)."""
    return [d for p in sorted(env.dir.glob("processed-*.log")) for d in p.read_text().split()]


def calls(env):
    return sum(len(p.read_text().split()) for p in env.dir.glob("calls-*.log"))


def drain(env, ok=True):
    w = env.worker("--drain")
    rc = w.wait(180)
    if ok:
        assert rc == 0, w.logs()[-3000:]
    return w


def counters(env):
    """Sum of every lease's counters, as `status --json` shows them."""
    total = {}
    for row in env.status():
        for k, v in (row.get("worker") or {}).items():
            if isinstance(v, (int, float)):
                total[k] = total.get(k, 0) + v
    return total


def test_skip_costs_exactly_the_poison_records(env):
    prepare(env, "skip")
    w = drain(env)
    got = processed(env)
    assert sorted(got) == sorted(f"good{i}" for i in range(N) if i not in BAD)
    skipped = [e for e in w.events("records_skipped")]
    assert sum(int(e["count"]) for e in skipped) == 20
    assert all("malformed bad" in e["error"] for e in skipped)
    # counters read after the worker exited match what happened
    c = counters(env)
    assert c["skipped"] == 20 and c["records"] == N - 20, c


def test_dead_letter_holds_exactly_the_poison_records_each_with_its_own_error(env):
    prepare(env, {"final": "dead_letter", "dead_letter": {"file": "dlq.jsonl"}})
    drain(env)
    dlq = [json.loads(l) for l in (env.dir / "dlq.jsonl").read_text().splitlines()]
    import base64
    assert sorted(base64.b64decode(d["data"]).decode() for d in dlq) == sorted(f"bad{i}" for i in BAD)
    assert all(f"malformed {base64.b64decode(d['data']).decode()}" in d["error"] for d in dlq)
    assert len(processed(env)) == N - 20
    c = counters(env)
    assert c["deadLettered"] == 20 and c["records"] == N - 20, c


def test_failed_decisions_isolate_without_halving(env):
    # {failed = r} names the failing record: no halving calls, only its own
    # retries (none here), the records after it as the next call
    prepare(env, {"final": "skip", "retries": 0}, mode="failed")
    w = drain(env)
    assert sorted(processed(env)) == sorted(f"good{i}" for i in range(N) if i not in BAD)
    assert not [e for e in w.events("batch_failed") if e.get("next") == "bisect"], "no halving"
    batches = len(w.events("batch_failed"))
    assert batches == 20
    # every record is seen by exactly one successful call, plus one call per poison record
    assert calls(env) <= N // 500 + SHARDS * 2 + 2 * 20


def test_isolation_cost_for_raised_errors_is_bounded(env):
    # k poison records in a batch of n: retries + 1 calls of the batch, at
    # most 2k*ceil(log2 n) halves, `retries` calls per poison record
    prepare(env, {"final": "skip", "retries": 1, "backoff_ms": 10})
    drain(env)
    assert len(processed(env)) == N - 20
    n, k_max_per_batch = 500, 20
    import math
    bound = (N // n + 2 * SHARDS) * (1 + 1) + 2 * 20 * math.ceil(math.log2(n)) + 20 * 1 + N // n + 2 * SHARDS
    assert calls(env) <= bound, (calls(env), bound)


def test_a_halted_shard_resumes_when_a_fixed_script_is_saved(env):
    prepare(env, {"final": "halt", "retries": 0})
    w = env.worker()
    wait_for(lambda: w.events("shard_halted"), timeout=60, what="a shard to halt")
    env.write("p.lua", PROCESSOR.replace('d:sub(1, 3) == "bad"', 'false'))
    wait_for(lambda: w.events("shard_resumed"), timeout=30, what="the halted shard to resume")
    wait_for(lambda: len(processed(env)) >= N - 20 and not any(r["state"] == "halted" for r in env.status()),
             timeout=120, what="every record processed by the fixed script")
    w.stop()
    got = processed(env)
    assert set(got) >= {f"good{i}" for i in range(N) if i not in BAD}
    assert {f"bad{i}" for i in BAD} <= set(got), "the fixed script processed the records the old one failed on"


def test_shardrun_resume_retries_or_skips_a_halted_shard_through_the_lease_table(env):
    env.write("p.lua", PROCESSOR)
    env.config([{"name": "s", "processor": "p.lua", "on_error": {"final": "halt", "retries": 0}}])
    env.create_stream("s", 1)
    env.put("s", ["a", "bad1", "b"], partition_key="k")
    w = env.worker()
    wait_for(lambda: w.events("shard_halted"), what="the shard to halt")
    wait_for(lambda: [r for r in env.status() if r["state"] == "halted"], what="status to say halted")
    # a plain resume retries: the same record fails again and the shard halts again
    r = env.run("resume", "s")
    assert "resume s/shardId-000000000000" in r.stdout.decode()
    wait_for(lambda: len(w.events("shard_halted")) == 2, what="the retry to halt again")
    assert processed(env) == ["a"]
    # --skip skips the record it halted at (counted), and goes on
    wait_for(lambda: [r for r in env.status() if r["state"] == "halted"], what="status to say halted again")
    env.run("resume", "s", "--skip")
    wait_for(lambda: processed(env) == ["a", "b"], what="the record after the skipped one")
    (sk,) = w.events("records_skipped")
    assert sk["count"] == "1" and "resume --skip" in sk["reason"]
    # nothing halted any more: a resume asks nobody and says so
    wait_for(lambda: not [r for r in env.status() if r["state"] == "halted"], what="status to say not halted")
    r = env.run("resume", "s", check=False)
    assert r.returncode == 1 and b"no halted shard" in r.stderr
    # a stream the config does not name is a usage error, not "nothing halted"
    r = env.run("resume", "t", check=False)
    assert r.returncode == 2 and b"stream t is not in the config" in r.stderr, r.stderr
    w.stop()
    c = counters(env)
    assert c["skipped"] == 1 and c["records"] == 2, c


def test_status_shows_a_retrying_shard_as_retrying_with_its_attempt_and_error(env):
    env.write("p.lua", PROCESSOR)
    env.config([{"name": "s", "processor": "p.lua", "on_error": {"retries": -1, "backoff_ms": 2000,
                                                                   "max_backoff_ms": 2000}}], renew_interval_ms=200)
    env.create_stream("s", 1)
    env.put("s", ["bad1", "x"], partition_key="k")
    w = env.worker()
    rows = wait_for(lambda: [r for r in env.status() if r["state"] == "retrying"], what="status retrying")
    info = rows[0]["worker"]
    assert info["attempt"] >= 2 and "malformed bad1" in info["lastError"] and info["nextTryAtMs"] > 0
    # the lag agrees with the records waiting: they are behind
    time.sleep(0.5)
    row = [r for r in env.status() if r["state"] == "retrying"][0]
    assert row["worker"]["millisBehind"] > 0 and row["recordsBehind"] == 2
    w.stop()


def test_counters_add_up_across_owners_and_restarts(env):
    prepare(env, "skip")
    # the first worker does part of the work, then stops (graceful: releases)
    w1 = env.worker()
    wait_for(lambda: len(processed(env)) > 1000, timeout=60, what="some records")
    w1.stop()
    w2 = drain(env)
    c = counters(env)
    assert c["skipped"] == 20 and c["records"] == N - 20, c
    assert w2.events("worker_drained")


def test_the_skip_shorthand_tries_a_poison_record_alone_four_times_with_backoff(env):
    # "skip" is { final = "skip" } with the defaults: retries = 3, backoff 100 ms doubling
    env.write("p.lua", PROCESSOR)
    env.config([{"name": "s", "processor": "p.lua", "max_records": 10, "on_error": "skip"}])
    env.create_stream("s", 1)
    env.put("s", ["a", "bad1", "b"], partition_key="k")
    w = drain(env)
    single = [e for e in w.events("batch_failed") if e["count"] == "1"]
    assert [e["attempt"] for e in single] == ["1", "2", "3", "4"], single
    assert [e["next"] for e in single] == ["retry", "retry", "retry", "final"]
    assert processed(env) == ["a", "b"]


def test_the_dead_letter_shorthand_writes_the_default_file_next_to_the_config(env):
    env.write("p.lua", PROCESSOR)
    env.config([{"name": "s", "processor": "p.lua", "on_error": "dead_letter"}])
    env.create_stream("s", 1)
    env.put("s", ["a", "bad1", "b"], partition_key="k")
    drain(env)
    (line,) = (env.dir / "s.deadletter.jsonl").read_text().splitlines()
    assert json.loads(line)["error"].endswith("malformed bad1")
    assert processed(env) == ["a", "b"]
