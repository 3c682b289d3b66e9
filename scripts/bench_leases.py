"""Lease benchmarks, with the production lease settings (lease_duration_ms =
10000, taker_interval_ms = 2000), called by scripts/bench.py
(`make bench-leases` = `scripts/bench.py leases`):

  takeover after kill -9: 3 workers on an 8-shard local stream, a producer
    putting records continuously; one worker is killed; the time is from the
    signal to the first record a surviving worker processes on each of the
    killed worker's shards (first shard / all shards). Once with the local
    (SQLite) lease store, once with DynamoDB (dynalite) leases; the stream
    is local in both, so only the lease store differs.
  handoff after SIGTERM: the same with 2 workers on 4 shards, local leases.
  lease-store writes per shard-minute: 1 worker on 4 shards at steady state
    (after a warm-up), producer running; every conditional lease write
    (renew, checkpoint, take, release) bumps leaseCounter by one, so the
    writes are the rise of the counters' sum over a window. Rows:
    checkpoint_interval_ms = 0 (a checkpoint per batch, the default), = 1000,
    and an idle stream (renewals only).

Each run is in a fresh folder; the medians are over BENCH_LEASE_RUNS runs
(default 3, BENCH_QUICK=1: 2); the write window is BENCH_LEASE_WINDOW_S
(default 30 s, quick 15 s). Every process started here is stopped by PID.
The functions return figures; the rows are made by add_rows()."""
import collections
import os
import signal
import sqlite3
import statistics
import subprocess
import threading
import time
import uuid

import emulators
from benchlib import ENV, QUICK, BenchError, Dir, failed, shardrun, timing, verdict

LEASE_MS, TAKER_MS, IDLE_MS = 10000, 2000, 100
RUNS = int(os.environ.get("BENCH_LEASE_RUNS") or (2 if QUICK else 3))
WINDOW_S = float(os.environ.get("BENCH_LEASE_WINDOW_S") or (15.0 if QUICK else 30.0))
LOCAL_TAKEOVER_GOAL_S = 1.0                             # issue 18: a kernel-released lock per worker
SPREAD_TAKEOVER_GOAL_S = (LEASE_MS + TAKER_MS) / 1000   # issue 18: takers that do not collide

# One line per batch, "shard realtime count", in seen/<worker name>-<shard>.log.
PROCESSOR = r'''
local ffi = require "ffi"
pcall(ffi.cdef, "typedef struct { long tv_sec; long tv_nsec; } bench_ts; int clock_gettime(int, bench_ts *);")
local ts = ffi.new("bench_ts")
local P = {}
function P.initialize(shard)
  shard.state.out = assert(io.open("seen/" .. os.getenv("BENCH_NAME") .. "-" .. shard.id .. ".log", "a"))
end
function P.processRecords(records, shard)
  ffi.C.clock_gettime(0, ts)   -- CLOCK_REALTIME: compared with the bench's signal time
  shard.state.out:write(shard.id, " ", string.format("%.6f", tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) / 1e9),
                        " ", #records, "\n")
  shard.state.out:flush()
  return "checkpoint"
end
function P.shutdownRequested() return "checkpoint" end
function P.shardEnded() return "checkpoint" end
return P
'''


class Run:
    """One project folder: a local stream `s`, the lease store asked for, workers and a producer."""

    def __init__(self, shards=4, checkpoint_interval_ms=0, leases="local"):
        self.app = f"bench{uuid.uuid4().hex[:10]}"     # the DynamoDB table name: unique per run
        store = ({"type": "local", "path": "leases.db"} if leases == "local" else
                 {"type": "dynamodb", "region": "us-east-1", "endpoint": emulators.DYNALITE.url})
        self.d = Dir([{"name": "s", "processor": "p.lua", "idle_time_between_reads_ms": IDLE_MS,
                       "checkpoint_interval_ms": checkpoint_interval_ms}],
                     application=self.app, leases=store, lease_duration_ms=LEASE_MS, taker_interval_ms=TAKER_MS)
        self.store = leases
        (self.d.path / "seen").mkdir()
        self.d.write("p.lua", PROCESSOR)
        self.d.run("stream", "create", "s", "--shards", str(shards))
        self.workers = {}
        self._stop = threading.Event()
        self._prod = None
        self.produced = 0

    def worker(self, name):
        self.workers[name] = self.d.worker(name, env={"BENCH_NAME": name})
        return self.workers[name]

    def worker_id(self, name):
        """The runtime's id of a worker (as in the lease table), from its worker_started line."""
        path = self.d.path / f"{name}.log"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            for line in path.read_text(errors="replace").splitlines():
                if "event=worker_started" in line:
                    return line.split("worker=", 1)[1].split()[0]
            time.sleep(0.05)
        raise BenchError(f"{name} did not start: {path.read_text(errors='replace')[-300:]}")

    def producer(self):
        """Puts 20 records (spread over the shards) every 50 ms from a thread."""
        def run():
            n = 0
            while not self._stop.is_set():
                data = "".join(f"r{n + i}\n" for i in range(20)).encode()
                r = subprocess.run([shardrun(), "put", "s"], cwd=self.d.path, input=data, capture_output=True,
                                   env=ENV)
                if r.returncode == 0:
                    n += 20
                    self.produced = n
                self._stop.wait(0.05)
        self._prod = threading.Thread(target=run, daemon=True)
        self._prod.start()

    def leases(self):
        """{leaseKey: (owner, counter)}; {} while the table is not there (yet)."""
        if self.store == "local":
            try:
                con = sqlite3.connect(self.d.path / "leases.db", timeout=10)
                try:
                    return {k: (o, c) for k, o, c in
                            con.execute(f'SELECT leaseKey, leaseOwner, leaseCounter FROM "{self.app}"')}
                finally:
                    con.close()
            except sqlite3.Error:
                return {}
        out, start = {}, None
        while True:
            q = {"TableName": self.app, "ConsistentRead": True}
            if start:
                q["ExclusiveStartKey"] = start
            status, r = emulators.call(emulators.DYNALITE, "Scan", q)
            if status != 200:
                return {}
            for it in r.get("Items", []):
                out[it["leaseKey"]["S"]] = (it.get("leaseOwner", {}).get("S"), int(it["leaseCounter"]["N"]))
            start = r.get("LastEvaluatedKey")
            if not start:
                return out

    def batches(self, name):
        """[(shard, realtime)] of every batch the named worker processed."""
        out = []
        for f in (self.d.path / "seen").glob(f"{name}-*.log"):
            for line in f.read_text().splitlines():
                p = line.split()
                if len(p) == 3:
                    out.append((p[0], float(p[1])))
        return out

    def close(self):
        self._stop.set()
        if self._prod:
            self._prod.join(30)
        self.d.cleanup()   # SIGTERM to every worker still running, by PID


def wait(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")


def takeover(how, leases="local", workers=3, shards=8):
    """One run: (seconds to the first, to the last of the signalled worker's shards
    processed again by a survivor). how: "kill" (SIGKILL) or "term" (SIGTERM)."""
    run = Run(shards=shards, leases=leases)
    try:
        run.producer()
        names = [chr(ord("a") + i) for i in range(workers)]
        for n in names:
            run.worker(n)
        ids = {n: run.worker_id(n) for n in names}
        lo, hi = shards // workers, -(-shards // workers)

        def balanced():
            counts = collections.Counter(o for o, _ in run.leases().values())
            return (sum(counts[i] for i in ids.values()) == shards and
                    all(lo <= counts[i] <= hi for i in ids.values()))
        wait(balanced, 90, f"{workers} workers to balance {shards} leases")
        time.sleep(1.0)
        victim = [k for k, (o, _) in run.leases().items() if o == ids["a"]]
        t0 = time.time()
        os.kill(run.workers["a"].pid, signal.SIGKILL if how == "kill" else signal.SIGTERM)

        def firsts():
            got = {}
            for n in names[1:]:
                for shard, t in run.batches(n):
                    if shard in victim and t > t0:
                        got[shard] = min(t, got.get(shard, t))
            return got if len(got) == len(victim) else None
        got = wait(firsts, LEASE_MS / 1000 * 3 + 20, "the takeover")
        run.workers["a"].wait(30)
        return min(got.values()) - t0, max(got.values()) - t0
    finally:
        run.close()


def takeovers(how, runs=RUNS, **kw):
    """`runs` runs of takeover(): ([first shard s], [all shards s])."""
    firsts, alls = [], []
    for i in range(runs):
        f, a = takeover(how, **kw)
        firsts.append(f)
        alls.append(a)
        print(f"    {how} run {i + 1} ({kw.get('leases', 'local')} leases): first shard {f:.2f} s, "
              f"all shards {a:.2f} s", flush=True)
    return firsts, alls


def lease_writes(checkpoint_interval_ms, produce, window_s=WINDOW_S):
    """(lease writes per shard-minute, records/s put) of one worker on 4 shards."""
    run = Run(checkpoint_interval_ms=checkpoint_interval_ms)
    try:
        if produce:
            run.producer()
        run.worker("a")
        wait(lambda: len(run.leases()) == 4 and all(o for o, _ in run.leases().values()), 30, "4 leases owned")
        time.sleep(5.0)  # warm-up: first scans, initial backlog
        c0, p0, t0 = sum(c for _, c in run.leases().values()), run.produced, time.monotonic()
        time.sleep(window_s)
        c1, p1, t1 = sum(c for _, c in run.leases().values()), run.produced, time.monotonic()
        return (c1 - c0) / 4 / ((t1 - t0) / 60.0), (p1 - p0) / (t1 - t0)
    finally:
        run.close()


def _takeover_row(name, how, goal_s, goal_what, **kw):
    try:
        firsts, alls = takeovers(how, **kw)
    except BenchError as e:
        failed(name, e)
        return
    mf, ma = statistics.median(firsts), statistics.median(alls)
    target = verdict(ma <= goal_s, f"all shards <= {goal_s:g} s, {goal_what}") if goal_s else ""
    timing(name, f"all shards {ma:.2f} s, first {mf:.2f} s (median of {len(alls)}; max {max(alls):.2f})", target,
           f"{kw.get('workers', 3)} workers x {kw.get('shards', 8)} shards")


def add_rows():
    """Measures every lease row and adds it to the timing table."""
    print(f"    leases: lease_duration_ms={LEASE_MS} taker_interval_ms={TAKER_MS} idle_time_between_reads_ms="
          f"{IDLE_MS}, {RUNS} runs each, write window {WINDOW_S:g} s", flush=True)
    _takeover_row("takeover after kill -9, local", "kill", LOCAL_TAKEOVER_GOAL_S, "issue 18's lock-based goal")
    try:
        with emulators.Session((emulators.DYNALITE,)):
            _takeover_row("takeover after kill -9, DynamoDB", "kill", SPREAD_TAKEOVER_GOAL_S,
                          "lease + taker interval", leases="dynamodb")
    except emulators.EmulatorError as e:
        failed("takeover after kill -9, DynamoDB", f"dynalite: {e}")
    _takeover_row("handoff after SIGTERM, local", "term", None, "", workers=2, shards=4)
    for label, cpi, produce in (("checkpoint per batch", 0, True), ("checkpoint_interval 1 s", 1000, True),
                                ("idle stream", 0, False)):
        name = f"lease writes: {label}"
        try:
            w, rate = lease_writes(cpi, produce)
        except BenchError as e:
            failed(name, e)
            continue
        timing(name, f"{w:.0f} per shard-minute at {rate:.0f} records/s put", "",
               f"checkpoint_interval_ms={cpi}")
