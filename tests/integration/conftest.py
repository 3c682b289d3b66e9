"""Shared fixtures for shardrun's integration tests.

Every test drives the real `shardrun` binary (env SHARDRUN, default ./shardrun
at the repo root) as separate processes, in a fresh temporary folder. Nothing
here is a mock: the local stream and lease files are the real SQLite files,
and the AWS tests talk to kinesalite and dynalite on 127.0.0.1.
"""
import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARDRUN = os.environ.get("SHARDRUN", str(ROOT / "shardrun"))

os.environ["AWS_EC2_METADATA_DISABLED"] = "true"


def lua_value(v):
    """Python value -> Lua source text (for writing configs)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {lua_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, (list, tuple)):
        return "{ " + ", ".join(lua_value(x) for x in v) + " }"
    raise TypeError(type(v))


class Worker:
    """One `shardrun run` process; its log goes to a file."""

    def __init__(self, env, args, name):
        self.env = env
        self.name = name
        self.log_path = env.dir / f"{name}.log"
        self.log = open(self.log_path, "ab")
        penv = env.proc_env()
        penv["SHARDRUN_TEST_NAME"] = name
        self.proc = subprocess.Popen([SHARDRUN, *args], cwd=env.dir, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=penv)

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
        e = dict(os.environ)
        e["AWS_EC2_METADATA_DISABLED"] = "true"
        e.update(self.extra_env)
        return e

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
# writer, so lines of parallel shards never interleave), flushed per batch.
RECORDING_PROCESSOR = r'''
local P = {}
local worker = os.getenv("SHARDRUN_TEST_NAME") or "w"
local dir = os.getenv("SEEN_DIR") or "seen"
function P.initialize(shard)
  os.execute("mkdir -p " .. dir)
  shard.state.out = assert(io.open(string.format("%s/%s-%s-%s.log", dir, worker, tostring(shard.state):sub(8), shard.id), "a"))
end
function P.processRecords(records, shard)
  local out, parts = shard.state.out, {}
  for i = 1, #records do
    local r = records[i]
    parts[#parts + 1] = worker .. " " .. shard.id .. " " .. r.sequenceNumber .. " " .. r.data .. "\n"
  end
  out:write(table.concat(parts))
  out:flush()
  return "checkpoint"
end
function P.shutdownRequested(shard) return "checkpoint" end
function P.shardEnded(shard) return "checkpoint" end
return P
'''


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


# Like RECORDING_PROCESSOR, but data is written hex-encoded (binary-safe) and
# the line is "worker shard seq hexdata". Optional per-batch sleep (ms) from
# the SLOW_MS environment variable. Checkpoints every batch.
HEX_RECORDING_PROCESSOR = r'''
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
    parts[#parts + 1] = worker .. " " .. shard.id .. " " .. r.sequenceNumber .. " " .. hex(r.data) .. "\n"
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
