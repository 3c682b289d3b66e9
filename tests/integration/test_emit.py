"""Stream processing: shard.emit into output streams, the checkpoint waiting
for the outputs, failures of outputs going to the policy, onTimer, windows,
and the emit buffer bound.

The processors here emit "T(<data>)|<shard>|<sequence number>" for each
input record, so each output names its input. Outputs are read straight from
the local stream file (or from kinesalite), and checkpoints from the lease
table after each kill -9, so the tests check the promise itself: every input
at or before a checkpoint has its output in the output stream."""
import base64
import collections
import json
import random
import sqlite3
import threading
import time

import pytest

from conftest import ROOT, Background, peak_rss_kb, stream_records, wait_for

ENRICH = r'''
local ffi = require "ffi"
pcall(ffi.cdef, "int usleep(unsigned int usec);")
local slow = tonumber(os.getenv("SLOW_MS") or "0")
local P = {}
function P.processRecords(records, shard)
  if slow > 0 then ffi.C.usleep(slow * 1000) end
  local emit = shard.emit
  for i = 1, #records do
    local r = records[i]
    emit("out", "T(" .. r.data .. ")|" .. shard.id .. "|" .. r.sequenceNumber, r.partitionKey)
  end
  return "checkpoint"
end
function P.shutdownRequested() return "checkpoint" end
function P.shardEnded() return "checkpoint" end
return P
'''


def outputs(env, stream="out", path="streams.db"):
    """[(output shard, output seq, input data, input shard, input seq)] in output order."""
    out = []
    for oshard, oseq, data in stream_records(env, stream, path):
        body, shard, seq = data.decode().rsplit("|", 2)
        assert body.startswith("T(") and body.endswith(")"), body
        out.append((oshard, oseq, body[2:-1], shard, seq))
    return out


def seq_int(cp):
    return int(cp) if cp and cp.isdigit() else -1


def checkpoints(env):
    return {row["leaseKey"]: row["checkpoint"] for row in env.leases().values()}


class WriteLocker(Background):
    """Holds the write lock of a SQLite file on and off from a thread, so a
    writer (the worker's output puts) waits, sometimes past its busy timeout,
    while readers go on."""

    def __init__(self, path, hold_s=0.4, free_s=0.2):
        super().__init__()
        self.path, self.hold_s, self.free_s = path, hold_s, free_s

    def _run(self):
        con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            while not self._stop.is_set():
                con.execute("BEGIN IMMEDIATE")
                self._stop.wait(self.hold_s)
                con.execute("COMMIT")
                self._stop.wait(self.free_s)
        finally:
            con.close()


def check_outputs_cover_checkpoints(inputs, outs, cps):
    """Every input at or before its shard's checkpoint has an output."""
    have = {(shard, seq) for _, _, _, shard, seq in outs}
    for shard, seq, data in inputs:
        if int(seq) <= seq_int(cps.get(shard)):
            assert (shard, seq) in have, f"input {data} ({shard} {seq}) is checkpointed ({cps[shard]}) " \
                                         f"but its output is not in the output stream"


# ---- the checkpoint waits for the outputs, through kill -9 ---------------------------

def test_kill_9_while_enriching_20k_records_loses_no_output_and_duplicates_only_after_checkpoints(env):
    env.write("p.lua", ENRICH)
    env.config([{"name": "in", "processor": "p.lua", "max_records": 100}], outputs={"out": {"stream": "out"}},
               lease_duration_ms=1000)
    env.extra_env["SLOW_MS"] = "30"  # about 3 s for everything: the kills come in the middle
    env.create_stream("in", 4)
    env.create_stream("out", 2)
    n = 20000
    env.put("in", [f"r{i}" for i in range(n)])
    inputs = stream_records(env, "in")
    assert len(inputs) == n
    # output puts wait for this lock (sometimes past their busy timeout, then
    # retried): emitted records stay unacknowledged for a while, again and again
    locker = WriteLocker(env.dir / "streams.db").start()
    kills, rng = [], random.Random(16)
    try:
        for round_ in range(6):
            before = len(outputs(env))
            w = env.worker(name=f"w{round_}")

            def progressed():
                outs = outputs(env)
                # a worker killed on this machine has its leases taken at once (its lock),
                # so the last rounds may find little left: all inputs out is progress too
                return len(outs) >= before + 1500 or len({o[2] for o in outs}) >= n or not w.alive()
            wait_for(progressed, 60, what=f"round {round_} makes progress")
            time.sleep(rng.uniform(0, 0.4))
            assert w.alive(), w.logs()[-3000:]
            w.kill()
            cps = checkpoints(env)
            check_outputs_cover_checkpoints(inputs, outputs(env), cps)
            kills.append(cps)
    finally:
        locker.stop()
    assert any(seq_int(cp) >= 0 for cp in kills[0].values()), "checkpoints moved before the first kill"
    env.extra_env["SLOW_MS"] = "0"
    w = env.worker("--drain", name="last")
    assert w.wait(120) == 0, w.logs()[-3000:]
    outs = outputs(env)
    count = collections.Counter((shard, seq) for _, _, _, shard, seq in outs)
    missing = [(s, q, d) for s, q, d in inputs if (s, q) not in count]
    assert not missing, f"{len(missing)} inputs have no output, e.g. {missing[:3]}"
    for (shard, seq), c in count.items():
        # each kill may re-deliver (and re-emit) only what was after its checkpoint
        allowed = 1 + sum(1 for cps in kills if int(seq) > seq_int(cps.get(shard)))
        assert c <= allowed, f"input {shard} {seq} emitted {c} times, but only {allowed - 1} kills came " \
                             f"before its checkpoint"
    last = {}
    for shard, seq, _ in inputs:
        last[shard] = max(last.get(shard, 0), int(seq))
    mid = sum(1 for cps in kills if any(seq_int(cps.get(s)) < last[s] for s in last))
    assert mid >= 4, f"only {mid} of the kills came before the end"
    assert {d for _, _, d, _, _ in outs} == {d.decode() for _, _, d in inputs}


def test_per_key_order_holds_in_the_output_stream(env):
    env.write("p.lua", ENRICH)
    env.config([{"name": "in", "processor": "p.lua", "max_records": 100}], outputs={"out": {"stream": "out"}})
    env.create_stream("in", 2)
    env.create_stream("out", 3)
    keys = [f"k{i}" for i in range(12)]
    for rnd in range(5):
        for k in keys:
            env.put("in", [f"{k}:{rnd * 50 + i}" for i in range(50)], partition_key=k)
    locker = WriteLocker(env.dir / "streams.db", hold_s=0.2, free_s=0.1).start()
    try:
        w = env.worker("--drain")
        assert w.wait(120) == 0, w.logs()[-3000:]
    finally:
        locker.stop()
    per_key = collections.defaultdict(list)
    shards_of = collections.defaultdict(set)
    for oshard, oseq, data, _, _ in outputs(env):
        k, i = data.split(":")
        per_key[k].append((int(oseq), int(i)))
        shards_of[k].add(oshard)
    assert set(per_key) == set(keys)
    for k, items in per_key.items():
        assert len(shards_of[k]) == 1, "one key, one output shard"
        got = [i for _, i in sorted(items)]
        assert got == list(range(250)), f"{k}: out of order or missing: {got[:20]}..."


# ---- output failures go to the policy -------------------------------------------------

def test_a_missing_output_stream_at_start_exits_2_naming_it(env):
    env.write("p.lua", ENRICH)
    env.config([{"name": "in", "processor": "p.lua"}], outputs={"out": {"stream": "nowhere"}})
    env.create_stream("in", 1)
    w = env.worker()
    assert w.wait(30) == 2, w.logs()
    assert "outputs.out: stream nowhere does not exist" in w.logs()
    assert not env.leases(), "nothing was taken"


def delete_local_stream(env, stream):
    con = sqlite3.connect(env.dir / "streams.db", timeout=30)
    with con:
        con.execute("DELETE FROM records WHERE sid IN (SELECT sid FROM shards WHERE stream = ?)", (stream,))
        con.execute("DELETE FROM shards WHERE stream = ?", (stream,))
        con.execute("DELETE FROM streams WHERE name = ?", (stream,))
    con.close()


def run_until_output_vanishes(env, on_error):
    """Phase 1 goes out; then the output stream is deleted and phase 2 comes."""
    env.write("p.lua", ENRICH)
    env.config([{"name": "in", "processor": "p.lua", "on_error": on_error}], outputs={"out": {"stream": "out"}})
    env.create_stream("in", 1)
    env.create_stream("out", 1)
    env.put("in", [f"a{i}" for i in range(100)], partition_key="k")
    w = env.worker()
    wait_for(lambda: len(outputs(env)) == 100 and checkpoints(env).get("shardId-000000000000") == f"{100:020d}", 30,
             what="phase 1 written and checkpointed")
    delete_local_stream(env, "out")
    env.put("in", [f"b{i}" for i in range(100)], partition_key="k")
    return w, stream_records(env, "in")[-1][1]  # the last input's sequence number


def test_an_output_stream_that_disappears_halts_the_shard_and_no_checkpoint_passes_its_inputs(env):
    w, _ = run_until_output_vanishes(env, {"final": "halt"})
    wait_for(lambda: w.events("shard_halted"), 30, what="the shard halts")
    (ev,) = w.events("output_failed")
    assert ev["output"] == "out" and ev["destination"] == "out"
    assert "no stream named out" in ev["error"]
    time.sleep(1.0)
    assert checkpoints(env)["shardId-000000000000"] == f"{100:020d}", "nothing past the inputs whose outputs failed"
    wait_for(lambda: status_shards(env)[0]["state"] == "halted", 10, what="status shows it halted")
    assert "output out (stream out)" in status_shards(env)[0]["error"]
    assert w.stop(30) == 0, w.logs()[-3000:]
    assert checkpoints(env)["shardId-000000000000"] == f"{100:020d}"


def test_outputs_that_cannot_be_written_are_dead_lettered_then_passed(env):
    w, last = run_until_output_vanishes(env, {"final": "dead_letter", "dead_letter": {"file": "dlq.jsonl"}})
    wait_for(lambda: checkpoints(env)["shardId-000000000000"] == last, 30,
             what="the checkpoint passes the dead-lettered outputs")
    lines = [json.loads(l) for l in (env.dir / "dlq.jsonl").read_text().splitlines()]
    phase2 = [(seq, d.decode()) for _, seq, d in stream_records(env, "in")][100:]
    assert sorted(base64.b64decode(l["data"]).decode() for l in lines) == sorted(
        f"T({d})|shardId-000000000000|{seq}" for seq, d in phase2)
    assert all("output out (stream out)" in l["error"] for l in lines)
    assert w.events("outputs_dead_lettered")
    assert w.stop(30) == 0


def test_outputs_that_cannot_be_written_are_skipped_loudly_with_skip(env):
    w, last = run_until_output_vanishes(env, "skip")
    wait_for(lambda: checkpoints(env)["shardId-000000000000"] == last, 30, what="skipped and passed")
    skipped = w.events("outputs_skipped")
    assert sum(int(e["count"]) for e in skipped) == 100
    assert w.stop(30) == 0


def make_own_output(env, stream="out", path="out.db"):
    """A stream in a local file of its own (an output with its own destination)."""
    env.write("mk.lua", f"application = 'x'\nsource = {{ type = 'local', path = '{path}' }}\n"
                        "leases = { type = 'local', path = 'l2.db' }\nstreams = { { name = 'x', processor = 'p.lua' } }\n")
    env.run("stream", "-c", "mk.lua", "create", stream, "--shards", "1")


def test_an_output_put_that_fails_for_now_holds_the_checkpoint_until_it_succeeds(env):
    env.write("p.lua", ENRICH)
    env.config([{"name": "in", "processor": "p.lua"}], outputs={"out": {"stream": "out", "path": "out.db"}})
    env.create_stream("in", 1)
    make_own_output(env)
    w = env.worker()
    wait_for(lambda: w.events("shard_started"), 30, what="the shard starts")
    lock = sqlite3.connect(env.dir / "out.db", timeout=30, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")  # the output's file is busy: a put waits 5 s, then fails for now
    try:
        env.put("in", [f"r{i}" for i in range(50)], partition_key="k")
        wait_for(lambda: w.events("output_put_failed"), 30, what="the put fails (busy past its timeout)")
        assert "output out (stream out)" in w.events("output_put_failed")[0]["error"]
        assert checkpoints(env)["shardId-000000000000"] == "TRIM_HORIZON", "no checkpoint before the outputs"
        wait_for(lambda: "outputError" in status_shards(env)[0], 10, what="status says why")
        s = status_shards(env)[0]
        assert s["checkpointWaitsForOutputs"], s
        assert s["emitsUnacknowledged"] == 50 and "locked" in s["outputError"], s
    finally:
        lock.execute("COMMIT")
        lock.close()
    wait_for(lambda: checkpoints(env)["shardId-000000000000"] == f"{50:020d}", 30, what="written, then checkpointed")
    assert sorted(d for _, _, d, _, _ in outputs(env, path="out.db")) == sorted(f"r{i}" for i in range(50))
    assert w.stop(30) == 0


# ---- onTimer ---------------------------------------------------------------------------

TIMER = r'''
local P = {}
function P.processRecords(records, shard)
  shard.state.n = (shard.state.n or 0) + #records
  return nil -- never a checkpoint from here: the timer's are the only ones
end
function P.onTimer(shard, now)
  local f = assert(io.open("ticks-" .. shard.id, "a"))
  f:write(now, " ", shard.state.n or 0, "\n")
  f:close()
  if (shard.state.n or 0) > 0 then shard.emit("out", "n=" .. shard.state.n, "k") end
  return "checkpoint"
end
return P
'''


def test_timers_fire_on_idle_shards_and_their_checkpoint_is_honoured(env):
    env.write("p.lua", TIMER)
    env.config([{"name": "in", "processor": "p.lua", "timer_interval_ms": 200}], outputs={"out": {"stream": "out"}})
    env.create_stream("in", 2)
    env.create_stream("out", 1)
    env.put("in", [f"r{i}" for i in range(30)], partition_key="k")  # one shard gets them all
    busy = {r[0] for r in stream_records(env, "in")}
    assert len(busy) == 1
    (busy,) = busy
    idle = ({"shardId-000000000000", "shardId-000000000001"} - {busy}).pop()
    w = env.worker()

    def ticks(shard):
        p = env.dir / f"ticks-{shard}"
        return p.read_text().split("\n")[:-1] if p.exists() else []
    wait_for(lambda: len(ticks(idle)) >= 5 and len(ticks(busy)) >= 5, 30, what="both shards tick")
    wait_for(lambda: checkpoints(env).get(busy) == f"{30:020d}", 30, what="the timer's checkpoint is written")
    assert checkpoints(env).get(idle) == "TRIM_HORIZON", "nothing processed on the idle shard: nothing to checkpoint"
    stamps = [int(l.split()[0]) for l in ticks(idle)]
    assert all(b > a for a, b in zip(stamps, stamps[1:])), "now_ms moves forward"
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    assert min(gaps) >= 150, f"about timer_interval_ms apart: {gaps}"
    assert any(d == b"n=30" for _, _, d in stream_records(env, "out")), "onTimer may emit"
    assert w.stop(30) == 0


# ---- windows: exact per-minute totals ----------------------------------------------------

def test_the_rollup_example_flushes_exact_per_minute_totals(env):
    # the example as shipped, its settings made quicker for a test
    env.write("p.lua", f'local P = dofile("{ROOT}/examples/rollup/rollup.lua")\n'
                       'P.settings.idle_ms = 1500\nP.settings.lateness_ms = 2000\nreturn P\n')
    env.config([{"name": "clicks", "processor": "p.lua", "timer_interval_ms": 200, "max_records": 97}],
               outputs={"counts": {"stream": "counts"}})
    env.create_stream("clicks", 2)
    env.create_stream("counts", 1)
    t0 = 1700000040000  # a minute boundary
    want = collections.Counter()
    rng = random.Random(7)
    lines, t = [], t0
    for i in range(2000):
        # event time in put order (so in order in each shard), seven keys, gaps of up to a minute and a half
        t += rng.randint(0, 1000) if rng.random() > 0.01 else rng.randint(60000, 90000)
        k = f"user{rng.randint(0, 6)}"
        lines.append(json.dumps({"key": k, "ts": t, "n": i}))  # each line its own partition key: both shards
        want[(k, (t - t0) // 60000 * 60000 + t0)] += 1
    env.put("clicks", lines)
    w = env.worker()

    def got():
        c = collections.Counter()
        for _, _, d in stream_records(env, "counts"):
            o = json.loads(d)
            c[(o["key"], o["minute"])] += o["count"]
        return c
    wait_for(lambda: sum(got().values()) >= sum(want.values()), 60, interval=0.3, what="every minute flushed")
    assert w.stop(30) == 0, w.logs()[-3000:]
    assert got() == want
    rows = collections.Counter((o["key"], o["minute"], o["shard"])
                               for o in (json.loads(d) for _, _, d in stream_records(env, "counts")))
    assert max(rows.values()) == 1, "one record per key, minute and shard"
    cps = checkpoints(env)
    assert all(cp.isdigit() for cp in cps.values()), "the timer checkpointed every shard"


# ---- the emit buffer bound ----------------------------------------------------------------

BIG = r'''
local P = {}
local pad = string.rep("x", 20000)
function P.processRecords(records, shard)
  for i = 1, #records do shard.emit("out", records[i].data .. pad, "k" .. i) end
  return "checkpoint"
end
return P
'''


def test_the_emit_buffer_bound_holds_memory_with_a_slow_output(env):
    env.write("p.lua", BIG)
    make_own_output(env)
    env.config([{"name": "in", "processor": "p.lua", "max_records": 50, "max_emit_buffer_mb": 4}],
               outputs={"out": {"stream": "out", "path": "out.db"}})
    env.create_stream("in", 1)
    w = env.worker()
    wait_for(lambda: w.events("shard_started"), 30, what="the shard starts")
    lock = sqlite3.connect(env.dir / "out.db", timeout=30, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")  # the output takes nothing for now
    try:
        env.put("in", [f"r{i}" for i in range(5000)], partition_key="k")  # 100 MB emitted in all
        peak = peak_rss_kb(w, seconds=4)
        # generous: the bound is 4 MB (+ one batch of 1 MB); unbounded, 100 MB would be held
        assert peak < 60 * 1024, f"RSS {peak} KiB"
        wait_for(lambda: any(l.get("state") == "waiting_for_outputs" for l in status_shards(env)), 30,
                 what="the shard waits for its outputs")
        (s,) = status_shards(env)
        assert s["emitBytes"] <= (4 + 1.1) * 1024 * 1024, s  # the bound, plus one call's emits
        assert s["records"] <= 400, "no new batch while the buffer is full"
    finally:
        lock.execute("COMMIT")
        lock.close()
    wait_for(lambda: checkpoints(env)["shardId-000000000000"] == f"{5000:020d}", 120, interval=0.3,
             what="everything written once the output takes records again")
    assert w.stop(30) == 0


def status_shards(env):
    """Per lease: what its owner last wrote of its shard (counters, emitBytes), with the state status shows."""
    return [dict(r.get("worker", {}), state=r["state"]) for r in env.status()]


# ---- the same on kinesalite + dynalite ---------------------------------------------------

def kinesis_outputs(stream):
    """[(output shard, output seq, input data, input shard, input seq)] of a Kinesis stream."""
    from aws_helpers import kinesis, read_shard
    out = []
    for sh in kinesis("ListShards", {"StreamName": stream})["Shards"]:
        for oseq, data, _ in read_shard(stream, sh["ShardId"]):
            body, shard, seq = data.decode().rsplit("|", 2)
            out.append((sh["ShardId"], oseq, body[2:-1], shard, seq))
    return out


def kinesis_inputs(stream):
    from aws_helpers import kinesis, read_shard
    return [(sh["ShardId"], seq, data) for sh in kinesis("ListShards", {"StreamName": stream})["Shards"]
            for seq, data, _ in read_shard(stream, sh["ShardId"])]


class PartialPuts:
    """answer() for a FaultProxy in front of the output: every third PutRecords
    writes only its even entries and refuses the odd ones as throttled (as
    Kinesis does when a shard is over its limit)."""

    def __init__(self):
        self.n = 0
        self.refused = 0
        self.lock = threading.Lock()

    def __call__(self, headers, body):
        from aws_helpers import kinesis
        if not headers.get("x-amz-target", "").endswith(".PutRecords"):
            return None
        with self.lock:
            self.n += 1
            if self.n % 3 != 1:
                return None
        req = json.loads(body)
        recs = req["Records"]
        keep = [i for i in range(len(recs)) if i % 2 == 0]
        out = kinesis("PutRecords", {"StreamName": req["StreamName"], "Records": [recs[i] for i in keep]})["Records"]
        results, it = [], iter(out)
        for i in range(len(recs)):
            results.append(next(it) if i % 2 == 0 else
                           {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "injected"})
        with self.lock:
            self.refused += len(recs) - len(keep)
        return 200, json.dumps({"FailedRecordCount": len(recs) - len(keep), "Records": results}).encode()


def test_kinesis_kill_9_while_enriching_20k_records_loses_no_output(env, emulators):
    from aws_helpers import AWS_ENV, DYNALITE_PORT, KINESALITE_PORT, FaultProxy, scan_leases, unique
    partial = PartialPuts()
    # in front of the output only: refused entries, 500s and resets (none of which reached the stream)
    proxy = FaultProxy(KINESALITE_PORT, "ProvisionedThroughputExceededException", answer=partial,
                       plan=lambda n: "500" if n % 13 == 5 else "reset" if n % 17 == 9 else "ok")
    try:
        env.extra_env.update(AWS_ENV)
        app, src, out = unique("app"), unique("in"), unique("out")
        kurl = f"http://127.0.0.1:{KINESALITE_PORT}"
        env.write("p.lua", ENRICH)
        env.config([{"name": src, "processor": "p.lua", "max_records": 200, "idle_time_between_reads_ms": 200}],
                   application=app,
                   source={"type": "kinesis", "region": "us-east-1", "endpoint": kurl},
                   leases={"type": "dynamodb", "region": "us-east-1", "endpoint": f"http://127.0.0.1:{DYNALITE_PORT}"},
                   outputs={"out": {"stream": out, "type": "kinesis", "region": "us-east-1", "endpoint": proxy.url}},
                   lease_duration_ms=3000, shard_sync_interval_ms=1000)
        env.create_stream(src, 4)
        env.create_stream(out, 2)
        n = 20000
        env.put(src, [f"r{i}" for i in range(n)])
        inputs = kinesis_inputs(src)
        assert len(inputs) == n
        env.extra_env["SLOW_MS"] = "20"

        def cps():
            return {row["leaseKey"]: row.get("checkpoint") for row in scan_leases(app).values()}
        kills = []
        for round_ in range(4):
            before = len(kinesis_outputs(out))
            w = env.worker(name=f"w{round_}")
            wait_for(lambda: len(kinesis_outputs(out)) >= before + 1500 or not w.alive(), 120, interval=0.5,
                     what=f"round {round_} makes progress")
            assert w.alive(), w.logs()[-3000:]
            w.kill()
            at_kill = cps()
            check_outputs_cover_checkpoints(inputs, kinesis_outputs(out), at_kill)
            kills.append(at_kill)
        env.extra_env["SLOW_MS"] = "0"
        # not --drain: the dead worker's leases count as expired only after lease_duration
        w = env.worker(name="last")
        want = {(s, q) for s, q, _ in inputs}
        wait_for(lambda: want <= {(s, q) for _, _, _, s, q in kinesis_outputs(out)}, 180, interval=1,
                 what="every input's output")
        assert w.stop(60) == 0, w.logs()[-3000:]
        outs = kinesis_outputs(out)
        count = collections.Counter((shard, seq) for _, _, _, shard, seq in outs)
        for (shard, seq), c in count.items():
            allowed = 1 + sum(1 for k in kills if int(seq) > seq_int(k.get(shard)))
            assert c <= allowed, f"input {shard} {seq} emitted {c} times, only {allowed - 1} kills before its checkpoint"
        assert partial.refused > 0 and proxy.faults["500"] and proxy.faults["reset"], (partial.refused, proxy.faults)
        logs = "".join(x.logs() for x in env.workers)
        assert "output_throttled" in logs and "AddressSanitizer" not in logs
    finally:
        proxy.close()


# ---- the batching window ------------------------------------------------------------------

SIZES = r'''
local P = {}
function P.processRecords(records, shard)
  local f = assert(io.open("sizes", "a"))
  f:write(#records, " ", records[1].data, " ", records[#records].data, "\n")
  f:close()
  return "checkpoint"
end
return P
'''


def test_a_batching_window_gathers_trickling_records_into_larger_batches(env):
    env.write("p.lua", SIZES)
    env.config([{"name": "in", "processor": "p.lua", "idle_time_between_reads_ms": 20,
                 "max_batching_window_ms": 1500, "min_batch_records": 60}])
    env.create_stream("in", 1)
    w = env.worker()
    wait_for(lambda: w.events("shard_started"), 30, what="the shard starts")
    n = 0
    for _ in range(12):  # 10 records every 100 ms: reads of about 10
        env.put("in", [f"r{n + i}" for i in range(10)], partition_key="k")
        n += 10
        time.sleep(0.1)

    def sizes():
        p = env.dir / "sizes"
        return [l.split() for l in p.read_text().splitlines()] if p.exists() else []
    wait_for(lambda: sum(int(s[0]) for s in sizes()) == n, 30, what="every record processed")
    got = sizes()
    assert int(got[0][0]) >= 60, f"the first batch waited for min_batch_records: {got}"
    assert len(got) <= 3, f"120 records in a few batches, not a dozen: {got}"
    # in order, nothing twice: each batch starts where the last ended
    order = []
    for _, first, last in got:
        order += [int(first[1:]), int(last[1:])]
    assert order == sorted(order) and order[0] == 0 and order[-1] == n - 1
    assert w.stop(30) == 0
