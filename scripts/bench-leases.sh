#!/usr/bin/env bash
# bench-leases.sh: lease takeover times and lease-store write rates on the
# local (SQLite) lease store, with the production lease settings
# (lease_duration_ms = 10000, taker_interval_ms = 2000).
#
#   takeover after kill -9 / after SIGTERM: 2 workers on a 4-shard stream with a
#     producer putting records continuously; one worker is signalled; the time is
#     from the signal to the first record the surviving worker processes on one
#     of the signalled worker's shards (first shard / all shards). Median of 5
#     runs each (BENCH_QUICK=1: 2), each run in a fresh folder.
#   lease-store writes per shard-minute: 1 worker on 4 shards at steady state
#     (after a warm-up), producer running; every conditional lease write (renew,
#     checkpoint, take, release) bumps leaseCounter by one, so the writes are the
#     rise of the counters' sum over a 60 s window (BENCH_QUICK=1: 15 s, scaled).
#     Rows: checkpoint_interval_ms = 0 (a checkpoint per batch, the default),
#     = 1000, and an idle stream (renewals only).
#
# usage: scripts/bench-leases.sh        (SHARDRUN=path/to/shardrun to pick a binary)
#        BENCH_LEASE_RUNS=N, BENCH_LEASE_WINDOW_S=S override the runs / write window
#        (scripts/bench.py uses 3 runs and 30 s so that `make bench` stays under 10 minutes)
# Everything runs in a temporary folder; every process it starts is stopped by PID.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export AWS_EC2_METADATA_DISABLED=true
export SHARDRUN="${SHARDRUN:-$ROOT/shardrun}"
export BENCH_QUICK="${BENCH_QUICK:-0}"
[[ -x "$SHARDRUN" ]] || { echo "bench-leases: $SHARDRUN not built (run make)" >&2; exit 1; }

BENCH_TMP="$(mktemp -d "${TMPDIR:-/tmp}/bench-leases.XXXXXX")"
export BENCH_TMP
PY_PID=""
cleanup() {
    if [[ -n "$PY_PID" ]] && kill -0 "$PY_PID" 2>/dev/null; then
        kill -TERM "$PY_PID" 2>/dev/null || true   # its own finally stops the workers it started
        wait "$PY_PID" 2>/dev/null || true
    fi
    rm -rf "$BENCH_TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

/usr/bin/env python3 - <<'PYEOF' &
import json, os, signal, sqlite3, statistics, subprocess, sys, threading, time

SHARDRUN = os.environ["SHARDRUN"]
TMP = os.environ["BENCH_TMP"]
QUICK = os.environ.get("BENCH_QUICK", "0") not in ("", "0")
RUNS = int(os.environ.get("BENCH_LEASE_RUNS") or (2 if QUICK else 5))
WINDOW = float(os.environ.get("BENCH_LEASE_WINDOW_S") or (15.0 if QUICK else 60.0))
LEASE_MS, TAKER_MS, IDLE_MS = 10000, 2000, 100
procs = []          # every process started here, stopped by PID at the end


def stop_all():
    for p in procs:
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()


def on_term(signum, frame):
    stop_all()
    sys.exit(130)


signal.signal(signal.SIGTERM, on_term)

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
    def __init__(self, name, checkpoint_interval_ms=0):
        self.dir = os.path.join(TMP, name)
        os.makedirs(os.path.join(self.dir, "seen"))
        with open(os.path.join(self.dir, "p.lua"), "w") as f:
            f.write(PROCESSOR)
        with open(os.path.join(self.dir, "shardrun.lua"), "w") as f:
            f.write(f'''application = "bench"
source = {{ type = "local", path = "streams.db" }}
leases = {{ type = "local", path = "leases.db" }}
lease_duration_ms = {LEASE_MS}
taker_interval_ms = {TAKER_MS}
streams = {{ {{ name = "s", processor = "p.lua", idle_time_between_reads_ms = {IDLE_MS},
               checkpoint_interval_ms = {checkpoint_interval_ms} }} }}
''')
        self.cmd("stream", "create", "s", "--shards", "4")
        self.workers = {}
        self._stop = threading.Event()
        self._prod = None
        self.produced = 0

    def cmd(self, *args, input=None):
        r = subprocess.run([SHARDRUN, *args], cwd=self.dir, input=input, capture_output=True, timeout=60)
        if r.returncode:
            raise RuntimeError(f"shardrun {' '.join(args)}: {r.stderr.decode(errors='replace')}")
        return r

    def worker(self, name):
        env = dict(os.environ, BENCH_NAME=name)
        log = open(os.path.join(self.dir, name + ".log"), "ab")
        p = subprocess.Popen([SHARDRUN, "run"], cwd=self.dir, stdout=log, stderr=subprocess.STDOUT, env=env)
        procs.append(p)
        self.workers[name] = p
        return p

    def worker_id(self, name):
        path = os.path.join(self.dir, name + ".log")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with open(path, errors="replace") as f:
                for line in f:
                    if "event=worker_started" in line:
                        return line.split("worker=", 1)[1].split()[0]
            time.sleep(0.05)
        raise RuntimeError(f"{name} did not start")

    def producer(self):
        def run():
            n = 0
            while not self._stop.is_set():
                data = "".join(f"r{n + i}\n" for i in range(20)).encode()
                r = subprocess.run([SHARDRUN, "put", "s"], cwd=self.dir, input=data, capture_output=True)
                if r.returncode == 0:
                    n += 20
                    self.produced = n
                self._stop.wait(0.05)
        self._prod = threading.Thread(target=run, daemon=True)
        self._prod.start()

    def leases(self):
        try:
            con = sqlite3.connect(os.path.join(self.dir, "leases.db"), timeout=10)
            try:
                return {k: (o, c) for k, o, c in con.execute('SELECT leaseKey, leaseOwner, leaseCounter FROM "bench"')}
            finally:
                con.close()
        except sqlite3.Error:
            return {}

    def wait(self, pred, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            v = pred()
            if v:
                return v
            time.sleep(0.02)
        raise RuntimeError(f"timed out waiting for {what}")

    def batches(self, name):
        """[(shard, realtime)] of every batch the named worker processed."""
        out = []
        for f in os.listdir(os.path.join(self.dir, "seen")):
            if f.startswith(name + "-"):
                with open(os.path.join(self.dir, "seen", f)) as fh:
                    for line in fh:
                        p = line.split()
                        if len(p) == 3:
                            out.append((p[0], float(p[1])))
        return out

    def close(self):
        self._stop.set()
        if self._prod:
            self._prod.join(30)
        for p in self.workers.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.workers.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def takeover(i, how):
    run = Run(f"takeover-{how}-{i}")
    try:
        run.producer()
        run.worker("a"), run.worker("b")
        ida, idb = run.worker_id("a"), run.worker_id("b")
        run.wait(lambda: sorted(o for o, _ in run.leases().values()).count(ida) == 2 and
                 sorted(o for o, _ in run.leases().values()).count(idb) == 2, 60, "a 2/2 balance")
        time.sleep(1.0)
        victim = [k for k, (o, _) in run.leases().items() if o == ida]
        t0 = time.time()
        os.kill(run.workers["a"].pid, signal.SIGKILL if how == "kill" else signal.SIGTERM)

        def firsts():
            got = {}
            for shard, t in run.batches("b"):
                if shard in victim and t > t0:
                    got[shard] = min(t, got.get(shard, t))
            return got if len(got) == len(victim) else None
        got = run.wait(firsts, LEASE_MS / 1000 * 3 + 20, "the takeover")
        run.workers["a"].wait(30)
        return min(got.values()) - t0, max(got.values()) - t0
    finally:
        run.close()


def writes(label, checkpoint_interval_ms, produce):
    run = Run(f"writes-{label}", checkpoint_interval_ms)
    try:
        if produce:
            run.producer()
        run.worker("a")
        run.wait(lambda: len(run.leases()) == 4 and all(o for o, _ in run.leases().values()), 30, "4 leases owned")
        time.sleep(5.0)  # warm-up: first scans, initial backlog
        c0, p0, t0 = sum(c for _, c in run.leases().values()), run.produced, time.monotonic()
        time.sleep(WINDOW)
        c1, p1, t1 = sum(c for _, c in run.leases().values()), run.produced, time.monotonic()
        minutes = (t1 - t0) / 60.0
        return (c1 - c0) / 4 / minutes, (p1 - p0) / (t1 - t0)
    finally:
        run.close()


try:
    print(f"bench-leases: lease_duration_ms={LEASE_MS} taker_interval_ms={TAKER_MS} (renew every "
          f"{LEASE_MS // 3} ms) idle_time_between_reads_ms={IDLE_MS}, 2 workers x 4 shards, runs={RUNS}"
          f"{' (BENCH_QUICK)' if QUICK else ''}", flush=True)
    rows = []
    for how in ("kill", "term"):
        firsts, alls = [], []
        for i in range(RUNS):
            f, a = takeover(i, how)
            firsts.append(f)
            alls.append(a)
            print(f"  {'kill -9' if how == 'kill' else 'SIGTERM'} run {i + 1}: first shard {f:.2f} s, "
                  f"all shards {a:.2f} s", flush=True)
        rows.append((how, statistics.median(firsts), statistics.median(alls), min(firsts), max(alls)))
    wrows = []
    for label, cpi, produce in (("checkpoint_interval_ms=0", 0, True), ("checkpoint_interval_ms=1000", 1000, True),
                                ("idle stream", 0, False)):
        w, rate = writes(label.replace("=", "-").replace(" ", "-"), cpi, produce)
        wrows.append((label, w, rate))
        print(f"  writes {label}: {w:.0f} per shard-minute at {rate:.0f} records/s", flush=True)
    print()
    print(f"{'takeover':<22} {'median first':>13} {'median all':>11} {'min':>7} {'max':>7}")
    for how, mf, ma, mn, mx in rows:
        print(f"{'after kill -9' if how == 'kill' else 'after SIGTERM':<22} {mf:>12.2f}s {ma:>10.2f}s "
              f"{mn:>6.2f}s {mx:>6.2f}s")
    print()
    print(f"{'lease-store writes':<30} {'per shard-minute':>17} {'records/s put':>14}")
    for label, w, rate in wrows:
        print(f"{label:<30} {w:>17.0f} {rate:>14.0f}")
finally:
    stop_all()
PYEOF
PY_PID=$!
wait "$PY_PID"
