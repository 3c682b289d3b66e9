#!/usr/bin/env python3
"""shardrun benchmarks: prints one table; every row is measured in this run.

usage: scripts/bench.py [local|reload|all]   (BENCH_QUICK=1: smaller runs)

Rows measured here (local source, no network):
  local no-op         1 M x 100 B records through `return "checkpoint"`
  local cjson         the same, cjson.decode of every record
  local 1000 shards   RSS and throughput of one worker owning 1000 shards
  reload              time from a script change to the first batch on the new version (median)
CPU is the worker's user+sys time (wait4 rusage); records/s is records over
the worker's processing time (first batch to drained, from its own log line).
"""
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARDRUN = os.environ.get("SHARDRUN", str(ROOT / "shardrun"))
QUICK = os.environ.get("BENCH_QUICK") == "1"
ENV = dict(os.environ, AWS_EC2_METADATA_DISABLED="true")

ROWS = []


def row(name, records, rate, cpu_us, rss_mb, note=""):
    ROWS.append((name, records, rate, cpu_us, rss_mb, note))
    print(f"  {name:<34} {records:>10} {rate:>12} {cpu_us:>10} {rss_mb:>9}  {note}", flush=True)


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


class Dir:
    def __init__(self, streams, **top):
        self.path = Path(tempfile.mkdtemp(prefix="shardrun-bench-"))
        fields = {"application": "bench", "source": {"type": "local", "path": "streams.db"},
                  "leases": {"type": "local", "path": "leases.db"}, "taker_interval_ms": 200}
        fields.update(top)
        text = "".join(f"{k} = {lua(v)}\n" for k, v in fields.items())
        text += "streams = { " + ", ".join(lua(s) for s in streams) + " }\n"
        (self.path / "shardrun.lua").write_text(text)

    def write(self, name, text):
        (self.path / name).write_text(text)

    def run(self, *args, input_path=None):
        with open(input_path, "rb") if input_path else open(os.devnull, "rb") as f:
            r = subprocess.run([SHARDRUN, *args], cwd=self.path, stdin=f, capture_output=True, env=ENV)
        if r.returncode:
            raise SystemExit(f"shardrun {' '.join(args)}: {r.stderr.decode()}")

    def drain(self):
        """Runs a draining worker; returns (records, processing_s, cpu_s, maxrss_kb)."""
        log = self.path / "worker.log"
        with open(log, "wb") as out:
            p = subprocess.Popen([SHARDRUN, "run", "--drain"], cwd=self.path, stdout=out, stderr=subprocess.STDOUT,
                                 env=ENV)
            _, status, ru = os.wait4(p.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"worker failed:\n{log.read_text()[-3000:]}")
        m = re.search(r"event=worker_drained .*records=(\d+) processing_ms=(\d+)", log.read_text())
        return int(m.group(1)), int(m.group(2)) / 1000.0, ru.ru_utime + ru.ru_stime, ru.ru_maxrss

    def cleanup(self):
        shutil.rmtree(self.path, ignore_errors=True)


def lua(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {lua(x)}" for k, x in v.items()) + " }"
    return "{ " + ", ".join(lua(x) for x in v) + " }"


def lines_file(n, make):
    f = tempfile.NamedTemporaryFile("w", delete=False, suffix=".txt")
    for i in range(n):
        f.write(make(i) + "\n")
    f.close()
    return f.name


def bench_drain(name, processor, n, shards, make, threads=None, note=""):
    top = {"processor_threads": threads} if threads else {}
    d = Dir([{"name": "b", "processor": "p.lua", "idle_time_between_reads_ms": 100}], **top)
    try:
        d.write("p.lua", processor)
        d.run("stream", "create", "b", "--shards", str(shards))
        data = lines_file(n, make)
        d.run("put", "b", data)
        os.unlink(data)
        records, secs, cpu, rss = d.drain()
        if records != n:
            raise SystemExit(f"{name}: processed {records}, expected {n}")
        row(name, n, f"{records / secs:,.0f}", fmt(cpu * 1e6 / n, ".2f"), fmt(rss / 1024, ".0f"), note)
        return d
    except BaseException:
        d.cleanup()
        raise


NOOP = 'return { processRecords = function(records) return "checkpoint" end }\n'
CJSON = '''local cjson = require "cjson"
local decode = cjson.decode
return { processRecords = function(records)
  local n = 0
  for i = 1, #records do n = n + decode(records[i].data).i end
  return "checkpoint"
end }
'''


def bench_local():
    n = 200_000 if QUICK else 1_000_000
    bench_drain("local no-op, 100 B", NOOP, n, 4, lambda i: f"{i:099d}", note="4 shards").cleanup()
    bench_drain("local cjson.decode, 100 B", CJSON, n, 4,
                lambda i: json.dumps({"i": i, "s": "x" * 80})[:99].ljust(99) if False else
                json.dumps({"i": i, "pad": "x" * (86 - len(str(i)))}), note="4 shards").cleanup()
    shards = 100 if QUICK else 1000
    per = 100 if QUICK else 200
    d = bench_drain(f"local {shards} shards", NOOP, shards * per, shards, lambda i: f"{i:099d}",
                    note="one worker")
    try:
        import sqlite3
        con = sqlite3.connect(d.path / "leases.db")
        starved = con.execute("SELECT count(*) FROM bench WHERE checkpoint = 'TRIM_HORIZON'").fetchone()[0]
        total = con.execute("SELECT count(*) FROM bench").fetchone()[0]
        con.close()
        ROWS[-1] = ROWS[-1][:5] + (f"one worker; shards without progress: {starved}/{total}",)
        print(f"    shards without progress: {starved} of {total}")
    finally:
        d.cleanup()


RELOAD_SCRIPT = '''local VERSION = "@V@"
return { processRecords = function(records)
  local f = io.open("versions.log", "a")
  f:write(VERSION, "\\n")
  f:close()
  return "checkpoint"
end }
'''


def bench_reload():
    reps = 5 if QUICK else 10
    d = Dir([{"name": "b", "processor": "p.lua", "idle_time_between_reads_ms": 5, "max_records": 10}])
    d.write("p.lua", RELOAD_SCRIPT.replace("@V@", "v0"))
    d.run("stream", "create", "b", "--shards", "1")
    worker = subprocess.Popen([SHARDRUN, "run"], cwd=d.path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=ENV)
    # one `put` per record: each commits at once, so records keep arriving
    producer = subprocess.Popen(["bash", "-c", f"while true; do echo x | {SHARDRUN} put b; sleep 0.005; done"],
                                cwd=d.path, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    samples = []
    try:
        time.sleep(1.5)
        for v in range(1, reps + 1):
            text = RELOAD_SCRIPT.replace("@V@", f"v{v}")
            t0 = time.time()
            tmp = d.path / "p.lua.tmp"
            tmp.write_text(text)
            os.replace(tmp, d.path / "p.lua")
            deadline = t0 + 10
            while time.time() < deadline:
                log = (d.path / "versions.log").read_text() if (d.path / "versions.log").exists() else ""
                if f"v{v} " in log:
                    samples.append(time.time() - t0)
                    break
                time.sleep(0.002)
            time.sleep(0.3)
    finally:
        producer.kill()
        worker.terminate()
        worker.wait(30)
        producer.wait()
        d.cleanup()
    if samples:
        med = statistics.median(samples) * 1000
        row("reload: change -> first new batch", len(samples), "-", "-", "-",
            f"median {med:.0f} ms (min {min(samples) * 1000:.0f}, max {max(samples) * 1000:.0f}); "
            "includes the 100 ms debounce")


def main():
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    print(f"shardrun bench ({'quick' if QUICK else 'full'}) on {os.cpu_count()} cores")
    print(f"  {'benchmark':<34} {'records':>10} {'records/s':>12} {'CPU us/rec':>10} {'peak RSS':>9}  notes")
    if what in ("local", "all"):
        bench_local()
    if what in ("reload", "all"):
        bench_reload()


if __name__ == "__main__":
    main()
