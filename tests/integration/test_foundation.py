"""Foundation (issue 2): delivery guarantees of one worker over the local stream.

Every test drives the real binary; what a processor saw is written by the
processor itself (seen/*.log) and compared with what `put` stored in the
stream file (read straight from SQLite) and with the lease table.
"""
import time
from collections import defaultdict
from pathlib import Path

import pytest

from conftest import (HEX_RECORDING_PROCESSOR, RECORDING_PROCESSOR, read_seen, stream_records, wait_for)


def seen_files(path):
    """{file name: [(worker, shard, seq, data)]} in the order each file was written."""
    out = {}
    for f in sorted(Path(path).glob("*.log")):
        out[f.name] = read_seen(f)
    return out


def by_shard(rows):
    """[(shard, seq, data)] -> {shard: [(seq, data)]} preserving order."""
    out = defaultdict(list)
    for shard, seq, data in rows:
        out[shard].append((seq, data))
    return out


def hexed(records):
    """stream_records() rows with data as hex text (what HEX_RECORDING_PROCESSOR writes)."""
    return [(shard, seq, data.hex()) for shard, seq, data in records]


def assert_increasing_per_file(path):
    for name, rows in seen_files(path).items():
        shards = {s for _, s, _, _ in rows}
        assert len(shards) <= 1, f"{name}: one file per shard expected, got {shards}"
        seqs = [int(q) for _, _, q, _ in rows]
        assert all(a < b for a, b in zip(seqs, seqs[1:])), f"{name}: sequence numbers not strictly increasing"


def checkpoints(env, table="test"):
    return {k: row["checkpoint"] for k, row in env.leases(table).items()}


# ---- 1. clean run -----------------------------------------------------------

def test_clean_drain_delivers_200k_records_exactly_once_in_shard_order(env):
    env.write("p.lua", RECORDING_PROCESSOR)
    env.config([{"name": "s", "processor": "p.lua", "max_records": 5000}])
    env.create_stream("s", 4)
    env.put("s", [f"line {i}" for i in range(200_000)])
    put = stream_records(env, "s")
    assert len(put) == 200_000
    assert len({shard for shard, _, _ in put}) == 4, "records should spread over the 4 shards"

    w = env.worker("--drain")
    assert w.wait(120) == 0, w.logs()[-3000:]

    seen = read_seen(env.dir / "seen")
    got = [(shard, seq, data) for _, shard, seq, data in seen]
    want = [(shard, seq, data.decode()) for shard, seq, data in put]
    assert len(got) == len(set(got)), "a record was delivered more than once"
    assert set(got) == set(want)
    # per-shard order: each shard's records arrive in increasing sequence order,
    # and in exactly the order the stream holds them
    got_by_shard = by_shard(got)
    for shard, rows in by_shard(want).items():
        assert got_by_shard[shard] == rows, f"{shard}: order differs from the stream"
    assert_increasing_per_file(env.dir / "seen")
    # the drain checkpointed every shard at its last record and released it
    leases = env.leases()
    last = {shard: rows[-1][0] for shard, rows in by_shard(want).items()}
    assert {k: r["checkpoint"] for k, r in leases.items()} == last
    assert all(r["leaseOwner"] is None for r in leases.values()), leases


# ---- 2. kill -9 then restart --------------------------------------------------

def test_kill9_then_restart_loses_nothing_and_redelivers_only_after_last_checkpoint(env):
    n = 20_000
    env.extra_env["SLOW_MS"] = "10"
    env.write("p.lua", HEX_RECORDING_PROCESSOR)
    env.config([{"name": "s", "processor": "p.lua", "max_records": 50}])
    env.create_stream("s", 4)
    env.put("s", [f"r{i}" for i in range(n)])
    put = hexed(stream_records(env, "s"))

    w1 = env.worker(name="w1")
    wait_for(lambda: len(read_seen(env.dir / "seen")) >= n // 4, timeout=60, what="w1 to process a quarter")
    w1.kill()
    cps = checkpoints(env)  # right after the kill: what a restart resumes from
    seen1 = [(s, q, d) for w, s, q, d in read_seen(env.dir / "seen") if w == "w1"]
    assert len(seen1) < n, "the kill should land mid-run (slow the processor down?)"

    # Checkpoints are never ahead of processing: every record at or before a
    # shard's checkpoint was seen by w1.
    seen1_set = set(seen1)
    for shard, seq, data in put:
        cp = cps[shard]
        if cp.isdigit() and int(seq) <= int(cp):
            assert (shard, seq, data) in seen1_set, f"checkpoint {cp} of {shard} is past unprocessed record {seq}"

    w2 = env.worker(name="w2")  # the dead worker's leases expire (lease_duration_ms = 2 s), then w2 takes them
    all_put = set(put)

    def done():
        got = {(s, q, d) for _, s, q, d in read_seen(env.dir / "seen")}
        return all_put <= got

    wait_for(done, timeout=90, interval=0.2, what="every record to be processed after the restart")
    assert w2.stop() == 0, w2.logs()[-3000:]

    seen2 = [(s, q, d) for w, s, q, d in read_seen(env.dir / "seen") if w == "w2"]
    # no record missing
    assert all_put <= set(seen1) | set(seen2)
    # the restarted worker delivered each record once, in order
    assert len(seen2) == len(set(seen2))
    assert_increasing_per_file(env.dir / "seen")
    # every (re-)delivery is after the last checkpoint of the killed run
    for shard, seq, _ in seen2:
        cp = cps[shard]
        if cp.isdigit():
            assert int(seq) > int(cp), f"{shard}: record {seq} re-delivered although checkpoint was {cp}"
    # and the restart resumed exactly after it: the first record w2 saw per
    # shard is the first one after the checkpoint
    first2 = {}
    for shard, seq, _ in seen2:
        first2.setdefault(shard, seq)
    for shard, rows in by_shard(put).items():
        cp = cps[shard]
        after = [q for q, _ in rows if not cp.isdigit() or int(q) > int(cp)]
        if after:
            assert first2.get(shard) == after[0], f"{shard}: resumed at {first2.get(shard)}, expected {after[0]}"


def test_drain_restart_after_kill9_processes_the_dead_workers_shards(env):
    """A scheduled `run --drain` after a crash must not report 'drained' while
    shards held by the dead worker still have records behind: it waits for
    those leases to expire and processes them."""
    n = 8_000
    env.extra_env["SLOW_MS"] = "10"
    env.write("p.lua", HEX_RECORDING_PROCESSOR)
    env.config([{"name": "s", "processor": "p.lua", "max_records": 50}])
    env.create_stream("s", 4)
    env.put("s", [f"r{i}" for i in range(n)])
    put = set(hexed(stream_records(env, "s")))

    w1 = env.worker(name="w1")
    wait_for(lambda: len(read_seen(env.dir / "seen")) >= n // 8, timeout=60, what="w1 to start processing")
    w1.kill()
    assert len(read_seen(env.dir / "seen")) < n

    w2 = env.worker("--drain", name="w2")
    assert w2.wait(90) == 0, w2.logs()[-3000:]
    got = {(s, q, d) for _, s, q, d in read_seen(env.dir / "seen")}
    missing = put - got
    assert not missing, (f"--drain exited 0 with {len(missing)} records never processed; "
                         f"leases: {checkpoints(env)}; owners: "
                         f"{ {k: r['leaseOwner'] for k, r in env.leases().items()} }")


# ---- 3. SIGTERM then restart ----------------------------------------------------

# Checkpoints only in shutdownRequested: zero re-delivery after SIGTERM then
# proves shutdownRequested's "checkpoint" lands on the last processed record.
SHUTDOWN_ONLY_PROCESSOR = HEX_RECORDING_PROCESSOR.replace(
    '  if slow > 0 then ffi.C.usleep(slow * 1000) end\n  return "checkpoint"',
    '  if slow > 0 then ffi.C.usleep(slow * 1000) end\n  return nil')


def test_sigterm_then_restart_redelivers_nothing(env):
    assert SHUTDOWN_ONLY_PROCESSOR != HEX_RECORDING_PROCESSOR
    n = 20_000
    env.extra_env["SLOW_MS"] = "10"
    env.write("p.lua", SHUTDOWN_ONLY_PROCESSOR)
    env.config([{"name": "s", "processor": "p.lua", "max_records": 50}])
    env.create_stream("s", 4)
    env.put("s", [f"r{i}" for i in range(n)])
    put = hexed(stream_records(env, "s"))

    w1 = env.worker(name="w1")
    wait_for(lambda: len(read_seen(env.dir / "seen")) >= n // 4, timeout=60, what="w1 to process a quarter")
    assert w1.stop() == 0, w1.logs()[-3000:]
    seen1 = [(s, q, d) for w, s, q, d in read_seen(env.dir / "seen") if w == "w1"]
    assert len(seen1) < n, "SIGTERM should land mid-run"

    # shutdownRequested's checkpoint = the last record each shard processed; leases released
    leases = env.leases()
    last1 = {}
    for shard, seq, _ in seen1:
        last1[shard] = seq
    for key, row in leases.items():
        assert row["leaseOwner"] is None, f"{key} not released: {row}"
        assert row["checkpoint"] == last1.get(key, "TRIM_HORIZON"), (key, row["checkpoint"], last1.get(key))

    w2 = env.worker("--drain", name="w2")
    assert w2.wait(90) == 0, w2.logs()[-3000:]
    seen2 = [(s, q, d) for w, s, q, d in read_seen(env.dir / "seen") if w == "w2"]
    redelivered = set(seen1) & set(seen2)
    assert not redelivered, f"{len(redelivered)} records re-delivered after a graceful stop"
    assert sorted(seen1 + seen2) == sorted(put)


# ---- 4. iterator positions ------------------------------------------------------

def test_trim_horizon_reads_records_put_before_start(env):
    env.write("p.lua", RECORDING_PROCESSOR)
    env.config([{"name": "s", "processor": "p.lua", "initial_position": "TRIM_HORIZON"}])
    env.create_stream("s", 2)
    env.put("s", [f"old {i}" for i in range(300)])
    w = env.worker("--drain")
    assert w.wait(60) == 0, w.logs()
    assert sorted(d for _, _, _, d in read_seen(env.dir / "seen")) == sorted(f"old {i}" for i in range(300))


def test_latest_skips_records_put_before_start_and_reads_those_after(env):
    env.write("p.lua", RECORDING_PROCESSOR)
    env.config([{"name": "s", "processor": "p.lua", "initial_position": "LATEST"}])
    env.create_stream("s", 2)
    env.put("s", [f"before {i}" for i in range(200)])
    w = env.worker()
    wait_for(lambda: len(w.events("shard_started")) == 2, timeout=30, what="both shards to start")

    # Probe until each shard has read something: then its LATEST iterator is
    # in place and everything put from now on must be seen.
    probe = [0]

    def both_shards_reading():
        probe[0] += 1
        env.put("s", [f"probe {probe[0]} {j}" for j in range(8)])
        time.sleep(0.3)
        return len({s for _, s, _, d in read_seen(env.dir / "seen") if d.startswith("probe")}) == 2

    wait_for(both_shards_reading, timeout=60, interval=0, what="both shards to read probes")
    env.put("s", [f"after {i}" for i in range(200)])
    wait_for(lambda: sum(d.startswith("after") for _, _, _, d in read_seen(env.dir / "seen")) >= 200,
             timeout=30, what="the records put after start")
    assert w.stop() == 0, w.logs()
    data = [d for _, _, _, d in read_seen(env.dir / "seen")]
    assert not [d for d in data if d.startswith("before")], "LATEST delivered records put before the start"
    assert sorted(d for d in data if d.startswith("after")) == sorted(f"after {i}" for i in range(200))


def test_at_timestamp_starts_at_the_first_record_at_or_after_the_timestamp(env):
    env.write("p.lua", RECORDING_PROCESSOR)
    env.config([{"name": "s", "processor": "p.lua"}])
    env.create_stream("s", 2)
    env.put("s", [f"early {i}" for i in range(200)])
    time.sleep(0.3)
    ts = int(time.time() * 1000)
    time.sleep(0.3)
    env.put("s", [f"late {i}" for i in range(200)])
    env.config([{"name": "s", "processor": "p.lua", "initial_position": "AT_TIMESTAMP", "initial_timestamp_ms": ts}])
    w = env.worker("--drain")
    assert w.wait(60) == 0, w.logs()
    data = sorted(d for _, _, _, d in read_seen(env.dir / "seen"))
    assert data == sorted(f"late {i}" for i in range(200))


CHECKPOINT_AT_R41 = r'''
local P = {}
function P.processRecords(records, shard)
  for i = 1, #records do
    if records[i].data == "r41" then return { checkpoint = records[i] } end
  end
  return nil
end
return P
'''


def test_restart_resumes_right_after_the_checkpointed_record(env):
    env.write("cp.lua", CHECKPOINT_AT_R41)
    env.write("p.lua", RECORDING_PROCESSOR)
    env.config([{"name": "s", "processor": "cp.lua", "max_records": 10}])
    env.create_stream("s", 1)
    env.put("s", [f"r{i}" for i in range(100)])
    put = stream_records(env, "s")
    seq41 = next(q for _, q, d in put if d == b"r41")
    w1 = env.worker("--drain", name="w1")
    assert w1.wait(60) == 0, w1.logs()
    assert checkpoints(env) == {"shardId-000000000000": seq41}

    # initial_position LATEST must not matter: the lease has a checkpoint
    env.config([{"name": "s", "processor": "p.lua", "max_records": 10, "initial_position": "LATEST"}])
    w2 = env.worker("--drain", name="w2")
    assert w2.wait(60) == 0, w2.logs()
    seen = read_seen(env.dir / "seen")
    assert [d for _, _, _, d in seen] == [f"r{i}" for i in range(42, 100)]


# ---- 5. two streams, one worker -------------------------------------------------

def test_two_streams_in_one_worker_each_with_its_own_processor(env):
    env.write("pa.lua", RECORDING_PROCESSOR.replace('os.getenv("SEEN_DIR") or "seen"', '"seen_a"'))
    env.write("pb.lua", RECORDING_PROCESSOR.replace('os.getenv("SEEN_DIR") or "seen"', '"seen_b"'))
    env.config([{"name": "alpha", "processor": "pa.lua"}, {"name": "beta", "processor": "pb.lua"}])
    env.create_stream("alpha", 2)
    env.create_stream("beta", 3)
    env.put("alpha", [f"a{i}" for i in range(500)])
    env.put("beta", [f"b{i}" for i in range(700)])
    w = env.worker("--drain")
    assert w.wait(60) == 0, w.logs()

    for stream, folder in (("alpha", "seen_a"), ("beta", "seen_b")):
        want = [(s, q, d.decode()) for s, q, d in stream_records(env, stream)]
        got = [(s, q, d) for _, s, q, d in read_seen(env.dir / folder)]
        assert sorted(got) == sorted(want), f"{stream}: wrong records reached its processor"
    leases = env.leases()
    assert set(leases) == {f"alpha:shardId-00000000000{i}" for i in range(2)} | \
        {f"beta:shardId-00000000000{i}" for i in range(3)}
    for stream in ("alpha", "beta"):
        for shard, rows in by_shard(stream_records(env, stream)).items():
            assert leases[f"{stream}:{shard}"]["checkpoint"] == rows[-1][0]


# ---- 6. decisions --------------------------------------------------------------

DECISION_PROCESSOR = r'''
local P = {}
local function find(records, d)
  for i = 1, #records do if records[i].data == d then return records[i] end end
end
function P.processRecords(records, shard)
  local f = assert(io.open("seen.txt", "a"))
  for i = 1, #records do f:write(records[i].data, "\n") end
  f:close()
  %s
end
return P
'''

DECISIONS = {
    # name: (Lua body, expected checkpoint: None = no checkpoint, else the data of the record)
    "nil": ("return nil", None),
    "checkpoint": ('return "checkpoint"', "r9"),
    "checkpoint_record": ('local r = find(records, "r3"); if r then return { checkpoint = r } end', "r3"),
    "sequence_number": ('local r = find(records, "r6"); if r then return r.sequenceNumber end', "r6"),
}


def decision_env(env, body, max_records=100):
    # halt at the first failure, whole batch: the foundation's behaviour for
    # errors (the error policy has its own tests); the default policy retries.
    env.write("d.lua", DECISION_PROCESSOR % body)
    env.config([{"name": "s", "processor": "d.lua", "max_records": max_records,
                 "on_error": {"retries": 0, "isolate": "batch", "final": "halt"}}])
    env.create_stream("s", 1)
    env.put("s", [f"r{i}" for i in range(10)])
    return {d.decode(): q for _, q, d in stream_records(env, "s")}


@pytest.mark.parametrize("name", list(DECISIONS))
def test_decision_sets_the_checkpoint(env, name):
    body, cp_record = DECISIONS[name]
    seq_of = decision_env(env, body)
    w = env.worker("--drain")
    assert w.wait(60) == 0, w.logs()
    assert (env.dir / "seen.txt").read_text().split() == [f"r{i}" for i in range(10)]
    assert not w.events("shard_halted"), w.logs()
    want = "TRIM_HORIZON" if cp_record is None else seq_of[cp_record]
    assert checkpoints(env) == {"shardId-000000000000": want}


def test_decision_failed_checkpoints_before_the_record_halts_and_loses_nothing(env):
    seq_of = decision_env(env, 'local r = find(records, "r5"); if r then return { failed = r, error = "bad r5" } end'
                               ' return "checkpoint"')
    w = env.worker("--drain", name="w1")
    w.wait(60)
    assert checkpoints(env) == {"shardId-000000000000": seq_of["r4"]}
    halted = w.events("shard_halted")
    assert len(halted) == 1, w.logs()
    assert halted[0]["shard"] == "shardId-000000000000" and halted[0]["stream"] == "s"
    assert "bad r5" in halted[0]["error"] and seq_of["r5"] in halted[0]["error"], halted[0]
    # nothing lost: a restart with a good processor gets r5 onwards again
    env.write("d.lua", DECISION_PROCESSOR % 'return "checkpoint"')
    (env.dir / "seen.txt").unlink()
    w2 = env.worker("--drain", name="w2")
    assert w2.wait(60) == 0, w2.logs()
    assert (env.dir / "seen.txt").read_text().split() == [f"r{i}" for i in range(5, 10)]


INVALID_DECISIONS = {
    # name: (Lua body, text the error must contain)
    "number": ("return 42", "42"),
    "sequence_not_in_batch": ('return "99999999999999999999"', "99999999999999999999"),
    "unknown_string": ('return "checkpoint-please"', "checkpoint-please"),
    "table_without_checkpoint_or_failed": ("return { foo = 1 }", "invalid decision"),
    "boolean": ("return true", "boolean"),
    "raised_error": ('error("kaboom in processRecords")', "kaboom in processRecords"),
}


@pytest.mark.parametrize("name", list(INVALID_DECISIONS))
def test_invalid_decision_halts_the_shard_with_an_error_naming_shard_and_value(env, name):
    body, text = INVALID_DECISIONS[name]
    decision_env(env, body)
    w = env.worker("--drain", name="w1")
    w.wait(60)
    halted = w.events("shard_halted")
    assert len(halted) == 1, w.logs()
    assert halted[0]["shard"] == "shardId-000000000000", halted[0]
    assert text in halted[0]["error"], halted[0]
    # no checkpoint past it, lease kept while halted (released only at exit)
    assert checkpoints(env) == {"shardId-000000000000": "TRIM_HORIZON"}
    assert (env.dir / "seen.txt").read_text().split() == [f"r{i}" for i in range(10)]
    # nothing lost: a fixed processor processes the same records again
    env.write("d.lua", DECISION_PROCESSOR % 'return "checkpoint"')
    (env.dir / "seen.txt").unlink()
    w2 = env.worker("--drain", name="w2")
    assert w2.wait(60) == 0, w2.logs()
    assert (env.dir / "seen.txt").read_text().split() == [f"r{i}" for i in range(10)]


def test_raised_error_is_logged_with_a_traceback(env):
    decision_env(env, 'local function deep() error("kaboom") end deep()')
    w = env.worker("--drain")
    w.wait(60)
    halted = w.events("shard_halted")
    assert len(halted) == 1, w.logs()
    assert "d.lua:" in halted[0]["error"] and "traceback" in halted[0]["error"], halted[0]


FAIL_ONCE_PROCESSOR = r'''
local P = {}
function P.processRecords(records, shard)
  local flag = io.open("failed-once", "r")
  if not flag then
    assert(io.open("failed-once", "w")):close()
    error("transient failure")
  end
  flag:close()
  local f = assert(io.open("seen.txt", "a"))
  for i = 1, #records do f:write(records[i].data, "\n") end
  f:close()
  return "checkpoint"
end
return P
'''


def test_drain_does_not_finish_while_a_failed_batch_awaits_its_retry(env):
    """--drain means nothing is left behind the checkpoint: a batch that
    failed once and is waiting for its retry (the default policy) is not
    'caught up'."""
    env.write("p.lua", FAIL_ONCE_PROCESSOR)
    env.config([{"name": "s", "processor": "p.lua"}])
    env.create_stream("s", 1)
    env.put("s", [f"r{i}" for i in range(10)])
    w = env.worker("--drain")
    code = w.wait(60)
    seen = (env.dir / "seen.txt").read_text().split() if (env.dir / "seen.txt").exists() else []
    assert seen == [f"r{i}" for i in range(10)], f"drain exited {code} before the retry:\n{w.logs()}"
    assert code == 0
    assert checkpoints(env) == {"shardId-000000000000": stream_records(env, "s")[-1][1]}
