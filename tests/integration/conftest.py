"""Shared fixtures for shardrun's integration tests.

Every test drives the real `shardrun` binary (env SHARDRUN, default ./shardrun
at the repo root) as separate processes, in a fresh temporary folder. Nothing
here is a mock: the local stream and lease files are the real SQLite files,
and the AWS tests talk to kinesalite, dynalite and kinesis-mock on 127.0.0.1.
"""
import collections
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARDRUN = os.environ.get("SHARDRUN", str(ROOT / "shardrun"))
# `make asan-test` runs the suite with the AddressSanitizer build
ASAN = "build-asan" in SHARDRUN


def rss_kb(pid):
    """The resident set of a process, in KiB (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def peak_rss_kb(worker, seconds=None, interval=0.05):
    """The largest resident set (KiB) of a Worker's process, sampled every
    `interval` s while it runs, for `seconds` at most (None: until it exits)."""
    peak = 0
    deadline = None if seconds is None else time.monotonic() + seconds
    while worker.alive() and (deadline is None or time.monotonic() < deadline):
        peak = max(peak, rss_kb(worker.pid))
        time.sleep(interval)
    return peak

os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

sys.path.insert(0, str(ROOT / "scripts"))
from childenv import child_env  # noqa: E402  (these three are shared with scripts/bench.py)
from emulators import EmulatorError, Session as EmulatorSession  # noqa: E402
from luavalue import lua_value  # noqa: E402


@pytest.fixture(scope="session")
def emulators():
    """kinesalite and dynalite on 127.0.0.1 (scripts/emulators.py): started
    only if they do not answer yet, stopped at the end only if started here."""
    try:
        session = EmulatorSession().__enter__()
    except EmulatorError as e:
        # in CI the emulators are part of the suite: not starting them is a failure, never a skip
        if os.environ.get("CI"):
            pytest.fail(f"emulators did not start: {e}")
        pytest.skip(f"emulators unavailable: {e}")
    yield session
    session.close()


@pytest.fixture(scope="session")
def kinesis_mock():
    """kinesis-mock (Kinesis with enhanced fan-out) and dynalite on 127.0.0.1,
    started and stopped as `emulators` does. A kinesis-mock started here logs
    every request with its action (KINESIS_MOCK_LOG_LEVEL=DEBUG), so a test
    can count the calls it got."""
    from emulators import DYNALITE, KINESIS_MOCK
    level = os.environ.get("KINESIS_MOCK_LOG_LEVEL")
    os.environ["KINESIS_MOCK_LOG_LEVEL"] = "DEBUG"
    try:
        session = EmulatorSession((KINESIS_MOCK, DYNALITE)).__enter__()
    except EmulatorError as e:
        if os.environ.get("CI"):
            pytest.fail(f"kinesis-mock did not start: {e}")
        pytest.skip(f"kinesis-mock unavailable: {e}")
    finally:
        if level is None:
            os.environ.pop("KINESIS_MOCK_LOG_LEVEL")
        else:
            os.environ["KINESIS_MOCK_LOG_LEVEL"] = level
    yield KINESIS_MOCK
    session.close()


class Worker:
    """One `shardrun run` process (of `binary`, default SHARDRUN); its log goes to a file."""

    def __init__(self, env, args, name, binary=None):
        self.env = env
        self.name = name
        self.log_path = env.dir / f"{name}.log"
        self.log = open(self.log_path, "ab")
        penv = env.proc_env()
        penv["SHARDRUN_TEST_NAME"] = name
        self.proc = subprocess.Popen([binary or SHARDRUN, *args], cwd=env.dir, stdout=self.log,
                                     stderr=subprocess.STDOUT, env=penv)

    @property
    def pid(self):
        return self.proc.pid

    def signal(self, sig):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def wait(self, timeout=60):
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.log.flush()

    def stop(self, timeout=30):
        """SIGTERM and wait: the graceful path."""
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self):
        self.signal(signal.SIGKILL)
        return self.wait(10)

    def alive(self):
        return self.proc.poll() is None

    def logs(self):
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def events(self, name=None):
        """Parsed key=value log lines (optionally only one event)."""
        out = []
        for line in self.logs().splitlines():
            ev = parse_log_line(line)
            if ev and (name is None or ev.get("event") == name):
                out.append(ev)
        return out


def parse_log_line(line):
    if not line.startswith("ts="):
        return None
    out, i, n = {}, 0, len(line)
    while i < n:
        while i < n and line[i] == " ":
            i += 1
        eq = line.find("=", i)
        if eq < 0:
            break
        key = line[i:eq]
        i = eq + 1
        if i < n and line[i] == '"':
            i += 1
            val = []
            while i < n and line[i] != '"':
                if line[i] == "\\" and i + 1 < n:
                    i += 1
                    val.append({"n": "\n", "t": "\t"}.get(line[i], line[i]))
                else:
                    val.append(line[i])
                i += 1
            i += 1
            out[key] = "".join(val)
        else:
            sp = line.find(" ", i)
            sp = n if sp < 0 else sp
            out[key] = line[i:sp]
            i = sp
    return out


class Env:
    """A temporary project folder: config, processor scripts, local stream and lease files."""

    def __init__(self, path):
        self.dir = path
        self.workers = []
        self.extra_env = {}

    def proc_env(self):
        """The caller's environment without its AWS settings and proxies, so
        nothing a test starts can reach past 127.0.0.1; then the test's own."""
        return child_env(self.extra_env)

    def write(self, name, text):
        p = self.dir / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        return p

    def config(self, streams, name="shardrun.lua", **top):
        """Writes a config. streams: list of dicts (name, processor, ...). top: extra top-level fields."""
        fields = {
            "application": "test",
            "source": {"type": "local", "path": "streams.db"},
            "leases": {"type": "local", "path": "leases.db"},
            "taker_interval_ms": 200,
            "lease_duration_ms": 2000,
        }
        fields.update(top)
        fields["streams"] = [dict({"idle_time_between_reads_ms": 50}, **s) for s in streams]
        text = "".join(f"{k} = {lua_value(v)}\n" for k, v in fields.items())
        return self.write(name, text)

    def run(self, *args, input=None, check=True, timeout=120):
        r = subprocess.run([SHARDRUN, *args], cwd=self.dir, input=input, capture_output=True, timeout=timeout,
                           env=self.proc_env())
        if check and r.returncode != 0:
            raise AssertionError(f"shardrun {' '.join(args)} exited {r.returncode}:\n{r.stderr.decode(errors='replace')}")
        return r

    def create_stream(self, name, shards, config="shardrun.lua"):
        self.run("stream", "-c", config, "create", name, "--shards", str(shards))

    def put(self, stream, lines, partition_key=None, config="shardrun.lua"):
        args = ["put", "-c", config, stream]
        if partition_key is not None:
            args += ["--partition-key", partition_key]
        data = b"".join((l if isinstance(l, bytes) else l.encode()) + b"\n" for l in lines)
        return self.run(*args, input=data)

    def worker(self, *extra, config="shardrun.lua", name=None):
        w = Worker(self, ["run", "-c", config, *extra], name or f"worker{len(self.workers) + 1}")
        self.workers.append(w)
        return w

    def status(self, config="shardrun.lua"):
        return json.loads(self.run("status", "-c", config, "--json").stdout)

    def leases(self, table="test"):
        con = sqlite3.connect(self.dir / "leases.db")
        try:
            con.row_factory = sqlite3.Row
            return {r["leaseKey"]: dict(r) for r in con.execute(f'SELECT * FROM "{table}"')}
        finally:
            con.close()

    def stop_all(self):
        for w in self.workers:
            if w.alive():
                w.kill()


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    yield e
    e.stop_all()


def wait_for(pred, timeout=30.0, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# A processor that records every record it sees: one line per record,
# "worker shard seq data", in seen/<worker>-<pid>-<shard>.log (one file per
# writer, so lines of parallel shards never interleave), flushed per batch;
# checkpoints every batch. Optional per-batch sleep (ms) from the SLOW_MS
# environment variable. HEX_RECORDING_PROCESSOR writes the data hex-encoded
# (binary-safe): "worker shard seq hexdata".
_RECORDING_TEMPLATE = r'''
local ffi = require "ffi"
pcall(ffi.cdef, "int usleep(unsigned int usec);")
local P = {}
local worker = os.getenv("SHARDRUN_TEST_NAME") or "w"
local dir = os.getenv("SEEN_DIR") or "seen"
local slow = tonumber(os.getenv("SLOW_MS") or "0")
local function hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end
function P.initialize(shard)
  os.execute("mkdir -p " .. dir)
  shard.state.out = assert(io.open(string.format("%s/%s-%s-%s.log", dir, worker, tostring(shard.state):sub(8), shard.id), "a"))
end
function P.processRecords(records, shard)
  local out, parts = shard.state.out, {}
  for i = 1, #records do
    local r = records[i]
    parts[#parts + 1] = worker .. " " .. shard.id .. " " .. r.sequenceNumber .. " " .. @DATA@ .. "\n"
  end
  out:write(table.concat(parts))
  out:flush()
  if slow > 0 then ffi.C.usleep(slow * 1000) end
  return "checkpoint"
end
function P.shutdownRequested(shard) return "checkpoint" end
function P.shardEnded(shard) return "checkpoint" end
return P
'''
RECORDING_PROCESSOR = _RECORDING_TEMPLATE.replace("@DATA@", "r.data")
HEX_RECORDING_PROCESSOR = _RECORDING_TEMPLATE.replace("@DATA@", "hex(r.data)")


# Appends the data of every record of a batch to processed.log, a line each, and
# checkpoints; @FIRST@: Lua that runs first in processRecords (when it raises,
# nothing of the batch is written).
_PROCESSED_LOG_TEMPLATE = r'''
local P = {}
function P.processRecords(records)
@FIRST@  local out = assert(io.open("processed.log", "a"))
  for i = 1, #records do out:write(records[i].data, "\n") end
  out:close()
  return "checkpoint"
end
return P
'''


def processed_log_processor(first=""):
    """The processed.log processor; `first`: Lua lines (each ending in a
    newline) run before the batch is written."""
    return _PROCESSED_LOG_TEMPLATE.replace("@FIRST@", first)


def processed_log(env):
    """The data of every record in processed.log, in the order written ([] before the first)."""
    p = env.dir / "processed.log"
    return p.read_text().split() if p.exists() else []


# Spins the CPU for @SECONDS@ s per batch, then checkpoints: a processor slower than its producer.
_BUSY_TEMPLATE = r'''
local P = {}
function P.processRecords(records)
  local t = os.clock() + @SECONDS@
  while os.clock() < t do end
  return "checkpoint"
end
return P
'''


def busy_processor(seconds):
    return _BUSY_TEMPLATE.replace("@SECONDS@", repr(seconds))


def read_seen(path):
    """[(worker, shard, seq, data)] from a recording processor's folder (or one file)."""
    out = []
    p = Path(path)
    files = sorted(p.glob("*.log")) if p.is_dir() else ([p] if p.exists() else [])
    for f in files:
        for line in f.read_text().splitlines():
            parts = line.split(" ", 3)
            if len(parts) == 4:
                out.append(tuple(parts))
    return out


def assert_exactly_once(seen, expected):
    """Every expected data in `seen` (read_seen's rows) exactly once, and nothing else."""
    counts = collections.Counter(d for _, _, _, d in seen)
    dups = {d: n for d, n in counts.items() if n > 1}
    missing = set(expected) - set(counts)
    assert not missing, f"{len(missing)} records never processed, e.g. {sorted(missing)[:5]}"
    assert not dups, f"{len(dups)} records processed more than once, e.g. {list(dups.items())[:5]}"
    assert set(counts) == set(expected)


# ---- helpers for test_foundation*.py / test_bad_input*.py ----------------------

def stream_records(env, stream, path="streams.db"):
    """[(shard_id, seq, data bytes)] of a local stream, read straight from its
    SQLite file (what `put` stored), in sequence order. seq is formatted as the
    runtime formats it (20 zero-padded digits)."""
    con = sqlite3.connect(env.dir / path)
    try:
        rows = con.execute(
            "SELECT h.shard_id, r.seq, r.data FROM records r JOIN shards h ON r.sid = h.sid"
            " WHERE h.stream = ? ORDER BY r.seq", (stream,)).fetchall()
    finally:
        con.close()
    return [(shard, "%020d" % seq, bytes(data)) for shard, seq, data in rows]


# The opening of a processor that reads CLOCK_MONOTONIC (Python's time.monotonic()):
# now_us() as text in microseconds, now_s() a number in seconds; and ffi.C.usleep.
MONOTONIC_LUA = r'''
local ffi = require "ffi"
pcall(ffi.cdef, [[
typedef struct { long tv_sec; long tv_nsec; } shardrun_test_timespec;
int clock_gettime(int clk, shardrun_test_timespec *tp);
int usleep(unsigned int usec);
]])
local ts = ffi.new("shardrun_test_timespec")
local function now_us()
  ffi.C.clock_gettime(1, ts)
  return string.format("%d", tonumber(ts.tv_sec) * 1000000 + math.floor(tonumber(ts.tv_nsec) / 1000))
end
local function now_s()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) / 1e9
end
'''


# ---- helpers for test_leases*.py / test_reshard*.py / test_chaos*.py -------------
#
# TIMED_PROCESSOR writes, per processor instance (one lease stint of one shard in
# one worker), seen/<name>-<instance>-<shard>.log with lines
#   S <worker_id> <shard> <position> <mono_us>     initialize (position: the checkpoint it resumed from)
#   R <worker_id> <shard> <seq> <mono_us> <data>   one per record, flushed per batch
#   E <worker_id> <shard> <callback> <mono_us>     shardEnded / shutdownRequested / leaseLost
# mono_us is CLOCK_MONOTONIC in microseconds, the clock of Python's time.monotonic().
# worker_id is the runtime's own id for the worker (shard.worker), as in the lease table.
# Environment: SEEN_DIR, SLOW_MS (sleep per batch), END_GATE (a file: shardEnded
# checkpoints only while it exists; without END_GATE it always checkpoints).
TIMED_PROCESSOR = MONOTONIC_LUA + r'''
local P = {}
local name = os.getenv("SHARDRUN_TEST_NAME") or "w"
local dir = os.getenv("SEEN_DIR") or "seen"
local slow = tonumber(os.getenv("SLOW_MS") or "0")
local gate = os.getenv("END_GATE")
local function line(shard, kind, rest)
  local out = shard.state.out
  if out then
    out:write(kind, " ", shard.worker, " ", shard.id, " ", rest, "\n")
    out:flush()
  end
end
function P.initialize(shard)
  os.execute("mkdir -p " .. dir)
  local inst = now_us() .. tostring(shard.state):sub(8)
  shard.state.out = assert(io.open(string.format("%s/%s-%s-%s.log", dir, name, inst, shard.id), "a"))
  line(shard, "S", tostring(shard.position) .. " " .. now_us())
end
function P.processRecords(records, shard)
  local parts, t = {}, now_us()
  for i = 1, #records do
    local r = records[i]
    parts[#parts + 1] = "R " .. shard.worker .. " " .. shard.id .. " " .. r.sequenceNumber .. " " .. t .. " " .. r.data .. "\n"
  end
  shard.state.out:write(table.concat(parts))
  shard.state.out:flush()
  if slow > 0 then ffi.C.usleep(slow * 1000) end
  return "checkpoint"
end
function P.shutdownRequested(shard)
  line(shard, "E", "shutdownRequested " .. now_us())
  return "checkpoint"
end
function P.leaseLost(shard)
  line(shard, "E", "leaseLost " .. now_us())
end
function P.shardEnded(shard)
  line(shard, "E", "shardEnded " .. now_us())
  if gate then
    local f = io.open(gate, "r")
    if not f then return nil end
    f:close()
  end
  return "checkpoint"
end
return P
'''


class Stint:
    """One processor instance: one worker holding one shard's lease once."""

    def __init__(self, name, worker, shard, position, start_us, path):
        self.name, self.worker, self.shard, self.path = name, worker, shard, path
        self.position = position                  # checkpoint it resumed from (string)
        self.start = start_us / 1e6               # time.monotonic() scale
        self.records = []                         # [(seq int, t float, data)]
        self.ends = []                            # [(callback, t float)]

    @property
    def end(self):
        ts = [t for _, t, _ in self.records] + [t for _, t in self.ends]
        return max(ts) if ts else self.start

    def __repr__(self):
        return f"Stint({self.name} {self.worker} {self.shard} from {self.position}, {len(self.records)} records)"


def read_stints(path):
    """Every Stint found in a TIMED_PROCESSOR folder, in start order."""
    out = []
    for f in sorted(Path(path).glob("*.log")):
        name = f.name.split("-", 1)[0]
        cur = None
        for line in f.read_text(errors="replace").splitlines():
            if line.startswith("S "):
                p = line.split(" ")
                if len(p) == 5:
                    cur = Stint(name, p[1], p[2], p[3], int(p[4]), f)
                    out.append(cur)
            elif line.startswith("R ") and cur is not None:
                p = line.split(" ", 5)
                if len(p) == 6:
                    cur.records.append((int(p[3]), int(p[4]) / 1e6, p[5]))
            elif line.startswith("E ") and cur is not None:
                p = line.split(" ")
                if len(p) == 5:
                    cur.ends.append((p[3], int(p[4]) / 1e6))
    out.sort(key=lambda s: s.start)
    return out


def seq_rank(cp):
    """Orders checkpoints: TRIM_HORIZON/LATEST/AT_TIMESTAMP < sequence numbers < SHARD_END."""
    if cp is None:
        return -2
    if cp.isdigit():
        return int(cp)
    if cp == "SHARD_END":
        return 1 << 200
    return -1


def wait_all_processed(env, produced, timeout=40):
    """Waits until every produced record is in some worker's seen/ stints (TIMED_PROCESSOR)."""
    want = set(produced)

    def done():
        got = {d for s in read_stints(env.dir / "seen") for _, _, d in s.records}
        return want <= got
    wait_for(done, timeout=timeout, interval=0.2, what=f"all {len(want)} produced records processed")


class Background:
    """A daemon thread running self._run(), which returns once self._stop is
    set: start() starts it (and returns self), stop() sets _stop and waits up
    to join_s for the thread."""

    join_s = 30

    def __init__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(self.join_s)


class Producer(Background):
    """Puts records continuously with `shardrun put` (the real write path) from a thread.

    keys=None: every line gets its own partition key (the MD5 of the line), so
    records spread over the shards; data "p<n>". keys=[...]: each put call goes
    to one key in turn, data "<key>:<n>" with n counting per key (put order)."""

    def __init__(self, env, stream, keys=None, batch=10, interval=0.05, config="shardrun.lua"):
        super().__init__()
        self.env, self.stream, self.keys, self.batch, self.interval, self.config = env, stream, keys, batch, interval, config
        self.produced = []          # data strings, in put order (per call)
        self.errors = []
        self._n = 0
        self._per_key = {}

    def put_once(self):
        if self.keys:
            key = self.keys[self._n % len(self.keys)]
            self._n += 1
            first = self._per_key.get(key, 0)
            lines = [f"{key}:{first + i}" for i in range(self.batch)]
            r = self.env.run("put", "-c", self.config, self.stream, "--partition-key", key,
                             input="".join(l + "\n" for l in lines).encode(), check=False)
            if r.returncode == 0:
                self._per_key[key] = first + self.batch
        else:
            lines = [f"p{self._n + i}" for i in range(self.batch)]
            r = self.env.run("put", "-c", self.config, self.stream, input="".join(l + "\n" for l in lines).encode(),
                             check=False)
            if r.returncode == 0:
                self._n += self.batch
        if r.returncode == 0:
            self.produced.extend(lines)
        else:
            self.errors.append(r.stderr.decode(errors="replace"))

    def _run(self):
        while not self._stop.is_set():
            self.put_once()
            self._stop.wait(self.interval)

    def stop(self):
        super().stop()
        return self.produced


class LeaseMonitor(Background):
    """Samples the lease table from a thread: [(monotonic, key, owner, counter, checkpoint)]."""

    join_s = 10

    def __init__(self, env, table="test", interval=0.03):
        super().__init__()
        self.env, self.table, self.interval = env, table, interval
        self.samples = []

    def _run(self):
        path = self.env.dir / "leases.db"
        while not self._stop.is_set():
            try:
                con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
                try:
                    rows = con.execute(f'SELECT leaseKey, leaseOwner, leaseCounter, checkpoint FROM "{self.table}"').fetchall()
                finally:
                    con.close()
                t = time.monotonic()
                self.samples.extend((t, *r) for r in rows)
            except sqlite3.Error:
                pass
            self._stop.wait(self.interval)

    def stop(self):
        super().stop()
        return self.samples

    def checkpoint_regressions(self):
        """[(key, before, after)] wherever a lease's checkpoint went backwards between samples."""
        last, out = {}, []
        for t, key, owner, counter, cp in self.samples:
            if not isinstance(cp, str):
                continue
            prev = last.get(key)
            if prev is not None and seq_rank(cp) < seq_rank(prev):
                out.append((key, prev, cp))
            last[key] = cp
        return out


def owners(env, table="test"):
    """{owner: [lease keys]} from the lease table (unowned rows under None)."""
    out = {}
    try:
        rows = env.leases(table)
    except sqlite3.OperationalError:  # no table yet, or busy
        return out
    for k, row in rows.items():
        out.setdefault(row["leaseOwner"], []).append(k)
    return out
