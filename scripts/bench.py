#!/usr/bin/env python3
"""shardrun benchmarks: prints one table; every row is measured in this run,
with its floor measured in the same run on the same data.

usage: scripts/bench.py [local|kinesis|leases|reload|all]   (BENCH_QUICK=1: smaller runs)

Rows measured here (local source, no network):
  local no-op         1 M x 100 B records through `return "checkpoint"`, 4 shards
  local cjson         the same, cjson.decode of every record
  local 1000 shards   one worker owning 1000 shards, the same 1 M records in total; then
                      3 M records (not judged): a shard's fixed cost apart from its cost per record
  local enrich        1 M x 100 B JSON records decoded, a field added, each emitted to a local
                      output stream (shard.emit), checkpoints waiting for the puts; against no-op
  2 threads vs 1      a CPU-heavy script, processor_threads = 2 against 1
  latency             put -> processRecords on a caught-up 2-shard stream
  reload              time from a script change to the first batch on the new version (median)
Elsewhere: scripts/bench_kinesis.py (kinesalite + dynalite: shardrun, its floor,
lifion-kinesis, latency; kinesis-mock: enhanced fan-out against polling),
scripts/bench_leases.py (takeover, handoff, lease writes), scripts/bench_metrics.py
(the no-op rows with metrics on vs off).
The floors and ratios are explained under the table (benchlib.FOOTNOTES).
Every process gets AWS_EC2_METADATA_DISABLED=true and dummy credentials and only talks to 127.0.0.1.
The binaries are copied to a temporary folder first, so a concurrent rebuild cannot disturb the run.
"""
import json
import os
import re
import shutil
import statistics
import sqlite3
import subprocess
import sys
import threading
import time

import bench_kinesis
import bench_leases
import bench_metrics
import benchlib
from benchlib import (ENV, QUICK, BenchError, Dir, failed, floor_scan, latency_row, lines_file, print_table, row,
                      shardrun, snapshot, timing, verdict)

# Targets, as ratios to a floor measured in the same run (issue 18), and the
# memory bounds (issue 7)
T_LOCAL_NOOP_RATIO = 1.3      # shardrun CPU/rec <= 1.3x the bare scan's
T_1000_SHARDS_RATIO = 2.0     # 1000 shards' CPU/rec <= 2x 4 shards', same records
T_THREADS_RATIO = 1.7         # 2 processor threads >= 1.7x the records/s of 1, on 2 cores
T_1000_RSS_MB = 1024.0
# The judged local rows take the median of this many drains, each after a run
# of its floor: one drain of 1 M records moved by up to 15% between runs here
REPEATS = 3 if QUICK else 5

NOOP = 'return { processRecords = function(records) return "checkpoint" end }\n'
CJSON = '''local cjson = require "cjson"
local decode = cjson.decode
return { processRecords = function(records)
  local n = 0
  for i = 1, #records do n = n + decode(records[i].data).i end
  return "checkpoint"
end }
'''
# ~30 us of pure Lua per record on this machine: the processor threads are the bottleneck
CPU_HEAVY = '''local function work(s)
  local h = #s
  for j = 1, 5000 do h = (h * 31 + j) % 1000003 end
  return h
end
return { processRecords = function(records)
  local x = 0
  for i = 1, #records do x = x + work(records[i].data) end
  return "checkpoint"
end }
'''


def drain(processor, n, shards, make, threads=None, max_records=None, floor_json=None, repeats=1):
    """Creates a stream, puts n records, then `repeats` times runs the floor on
    the stream file (unless floor_json is False) and a draining worker from
    fresh leases, alternately. Returns a dict of figures: the median drain (by
    CPU) and the median floor, with every drain's CPU/rec in "each"."""
    top = {"processor_threads": threads} if threads else {}
    stream = {"name": "b", "processor": "p.lua"}   # idle_time_between_reads_ms: the default (1 s)
    if max_records:
        stream["max_records"] = max_records
    d = Dir([stream], **top)
    try:
        d.write("p.lua", processor)
        d.run("stream", "create", "b", "--shards", str(shards))
        data = lines_file(n, make)
        try:
            d.run("put", "b", input_path=data)
        finally:
            os.unlink(data)
        floors, runs = [], []
        for k in range(repeats):
            if floor_json is not False:
                fr, fcpu = floor_scan(d.path / "streams.db", "b", floor_json)
                if fr != n:
                    raise BenchError(f"the floor read {fr} records, expected {n}")
                floors.append(fcpu * 1e6 / n)
            if k:
                forget_leases(d.path)
            records, secs, cpu, rss = d.drain()
            if records != n:
                raise BenchError(f"processed {records}, expected {n}")
            runs.append(dict(rate=records / secs, cpu=cpu * 1e6 / n, rss=rss / 1024))
        out = sorted(runs, key=lambda r: r["cpu"])[len(runs) // 2]
        out.update(floor=statistics.median(floors) if floors else None, starved=None,
                   each=[r["cpu"] for r in runs])
        con = sqlite3.connect(d.path / "leases.db")
        try:
            out["starved"] = con.execute("SELECT count(*) FROM bench WHERE checkpoint = 'TRIM_HORIZON'").fetchone()[0]
            out["leases"] = con.execute("SELECT count(*) FROM bench").fetchone()[0]
        finally:
            con.close()
        return out
    finally:
        d.cleanup()


def forget_leases(path):
    """The next drain starts from the start of the stream, as the first did."""
    for f in path.glob("leases.db*"):
        if f.is_dir():
            shutil.rmtree(f)
        else:
            f.unlink()


def medians_note(r):
    if len(r["each"]) < 2:
        return ""
    return (f"median of {len(r['each'])} drains, each after a floor run; drains: "
            + "/".join(f"{c:.3f}" for c in r["each"]))


def ratio_row(name, n, r, note="", target=""):
    return row(name, n, r["rate"], r["cpu"], r["rss"], note, floor_us=r["floor"],
               ratio=f"{r['cpu'] / r['floor']:.2f}x floor" if r["floor"] else None, target=target)


def hundred(i):
    return f"{i:099d}"   # 100 B with the newline


def bench_local():
    n = 200_000 if QUICK else 1_000_000
    noop = None
    try:
        noop = drain(NOOP, n, 4, hundred, repeats=REPEATS)
        ratio_row("local no-op, 100 B, 4 shards", n, noop, medians_note(noop),
                  target=verdict(noop["cpu"] / noop["floor"] <= T_LOCAL_NOOP_RATIO, f"<= {T_LOCAL_NOOP_RATIO}x floor"))
    except BenchError as e:
        failed("local no-op, 100 B, 4 shards", e)
    try:
        r = drain(CJSON, n, 4, lambda i: json.dumps({"i": i, "pad": "x" * (86 - len(str(i)))}), floor_json="i")
        ratio_row("local cjson.decode, 100 B, 4 shards", n, r, "floor: C cJSON parse of each record")
    except BenchError as e:
        failed("local cjson.decode, 100 B, 4 shards", e)

    # the same records in total as the no-op row, spread over many shards
    shards = 100 if QUICK else 1000
    name = f"local {shards} shards, one worker"
    try:
        r = drain(NOOP, n, shards, hundred, repeats=REPEATS)
        ok_rss = r["rss"] <= T_1000_RSS_MB and r["starved"] == 0 and r["leases"] == shards
        ratio_row(name, n, r, f"{n // shards} records/shard; shards without progress: {r['starved']}/{r['leases']}; "
                  "records/s counts from the first batch, after the shards' start (leases, Lua states), "
                  "CPU/rec counts all; " + medians_note(r),
                  target=verdict(ok_rss, f"RSS <= {T_1000_RSS_MB:g} MB, every shard progressed"))
        if noop:
            k = r["cpu"] / noop["cpu"]
            row(f"  {shards} shards / 4 shards, CPU/rec", n, None, r["cpu"], None, "same records, same run",
                ratio=f"{k:.2f}x 4 shards",
                target=verdict(k <= T_1000_SHARDS_RATIO, f"<= {T_1000_SHARDS_RATIO:g}x the 4-shard row"))
    except BenchError as e:
        failed(name, e)
        r = None
    if r and noop:
        per_shard_costs(shards, n, r, noop)


def per_shard_costs(shards, n, one, noop):
    """Not judged: the same shards with three times the records tell a shard's
    fixed cost (its Lua state, leases, first reads) from the cost per record."""
    name = f"  {shards} shards, {3 * n / 1e6:g} M records"
    try:
        r = drain(NOOP, 3 * n, shards, hundred, floor_json=False)
    except BenchError as e:
        failed(name, e)
        return
    marginal = (r["cpu"] * 3 * n - one["cpu"] * n) / (2 * n)        # us per record past the first n
    fixed_ms = (one["cpu"] - marginal) * n / shards / 1000           # per shard
    row(name, 3 * n, r["rate"], r["cpu"], r["rss"],
        f"each shard: {fixed_ms:.2f} ms fixed, then {marginal:.3f} us/rec (4 shards: {noop['cpu']:.3f} us/rec)",
        ratio=f"{r['cpu'] / noop['cpu']:.2f}x 4 shards")


ENRICH = '''local cjson = require "cjson"
local decode, encode = cjson.decode, cjson.encode
return { processRecords = function(records, shard)
  local emit = shard.emit
  for i = 1, #records do
    local r = records[i]
    local ev = decode(r.data)
    ev.seq = r.sequenceNumber
    emit("out", encode(ev), r.partitionKey)
  end
  return "checkpoint"
end }
'''
T_ENRICH_RATIO = 3.0          # enriched local->local within 3x the no-op row (issue 16)
NOOP_ROW = "local no-op, 100 B, 4 shards"


def bench_enrich():
    """Issue 16: decode + emit one record each, local -> local, against the no-op row of this run
    (measured here too when the local section did not run)."""
    n = 200_000 if QUICK else 1_000_000
    name = f"local enrich -> local output, {'200 k' if QUICK else '1 M'}"
    noop = next((r for r in benchlib.ROWS if r["name"] == NOOP_ROW), None)
    try:
        if noop is None:
            noop = ratio_row(NOOP_ROW, n, drain(NOOP, n, 4, hundred))
        d = Dir([{"name": "b", "processor": "p.lua"}],
                outputs={"out": {"stream": "out"}})
        try:
            d.write("p.lua", ENRICH)
            d.run("stream", "create", "b", "--shards", "4")
            d.run("stream", "create", "out", "--shards", "4")
            data = lines_file(n, lambda i: json.dumps({"i": i, "pad": "x" * (86 - len(str(i)))}))
            try:
                d.run("put", "b", input_path=data)
            finally:
                os.unlink(data)
            records, secs, cpu, rss = d.drain()
            con = sqlite3.connect(d.path / "streams.db")
            try:
                out = con.execute("SELECT count(*) FROM records r JOIN shards s ON r.sid = s.sid "
                                  "WHERE s.stream = 'out'").fetchone()[0]
            finally:
                con.close()
        finally:
            d.cleanup()
        if records != n or out != n:
            raise BenchError(f"processed {records} and emitted {out}, expected {n} of each")
    except BenchError as e:
        failed(name, e)
        return
    rate, cpu_us = records / secs, cpu * 1e6 / n
    k_rate, k_cpu = noop["rate"] / rate, cpu_us / noop["cpu"]
    row(name, n, rate, cpu_us, rss / 1024,
        f"4 shards -> 4; cjson decode + encode, one emit each; CPU/rec {k_cpu:.1f}x no-op (the puts' SQLite inserts)",
        ratio=f"{k_rate:.2f}x no-op time",
        target=verdict(k_rate <= T_ENRICH_RATIO, f"records/s within {T_ENRICH_RATIO:g}x the no-op row"))


def bench_threads():
    n = 20_000 if QUICK else 60_000
    name = "2 processor threads vs 1"
    try:
        one = drain(CPU_HEAVY, n, 4, hundred, threads=1, max_records=1000, floor_json=False)
        two = drain(CPU_HEAVY, n, 4, hundred, threads=2, max_records=1000, floor_json=False)
    except BenchError as e:
        failed(name, e)
        return
    k = two["rate"] / one["rate"]
    row("CPU-heavy script, 1 thread", n, one["rate"], one["cpu"], one["rss"], "4 shards, ~30 us of Lua per record")
    row("CPU-heavy script, 2 threads", n, two["rate"], two["cpu"], two["rss"], f"on {os.cpu_count()} cores",
        ratio=f"{k:.2f}x 1 thread", target=verdict(k >= T_THREADS_RATIO, f">= {T_THREADS_RATIO}x the records/s of 1"))


def bench_latency():
    latency_row("put -> process, local", Dir([{"name": "b", "processor": "lat.lua"}]), "b")


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
    stop = threading.Event()
    producer = None
    samples = []
    try:
        d.run("stream", "create", "b", "--shards", "1")
        d.worker()

        def produce():   # one `put` per record: each commits at once, so records keep arriving
            while not stop.wait(0.005):
                subprocess.run([shardrun(), "put", "b"], cwd=d.path, env=ENV, input=b"x\n", capture_output=True)
        producer = threading.Thread(target=produce)
        producer.start()
        time.sleep(1.5)
        for v in range(1, reps + 1):
            t0 = time.time()
            tmp = d.path / "p.lua.tmp"
            tmp.write_text(RELOAD_SCRIPT.replace("@V@", f"v{v}"))
            os.replace(tmp, d.path / "p.lua")
            deadline = t0 + 10
            while time.time() < deadline:
                log = (d.path / "versions.log").read_text() if (d.path / "versions.log").exists() else ""
                if f"v{v}\n" in log:
                    samples.append(time.time() - t0)
                    break
                time.sleep(0.002)
            time.sleep(0.3)
    except BenchError as e:
        failed("reload: change -> first new batch", e)
        return
    finally:
        stop.set()
        if producer:
            producer.join()  # its last `put` has finished: nothing of it is left running
        d.cleanup()
    if not samples:
        failed("reload: change -> first new batch", f"no new version seen within 10 s ({reps} tries)")
        return
    med = statistics.median(samples) * 1000
    timing("reload: change -> first new batch",
           f"median {med:.0f} ms (min {min(samples) * 1000:.0f}, max {max(samples) * 1000:.0f}; {len(samples)} runs)",
           "", "includes the 100 ms debounce")


def bench_lease_plan():
    """Issue 11 #15: one taker run with 10,000 leases in one table, against the taker interval."""
    exe = os.path.join(os.environ.get("BENCH_FLOOR_DIR", "build/bench"), "bench_lease_plan")  # built by `make bench`
    r = subprocess.run([exe, "10000", "10"], capture_output=True, text=True, timeout=300)
    plan = re.search(r"planner_ms=([\d.]+)", r.stdout)
    coord = re.search(r"taker_run_ms=([\d.]+) taken=(\d+)", r.stdout)
    if r.returncode or not plan or not coord:
        failed("lease planner, 10k leases", f"exit {r.returncode}: {r.stderr.strip()[-200:]}")
        return
    timing("lease planner, 10k leases",
           f"{plan.group(1)} ms per scan; a whole taker run taking {coord.group(2)}: {coord.group(1)} ms",
           verdict(float(coord.group(1)) < 2000, "<= taker_interval 2 s"),
           "sort + observe + plan, 10 workers; in-memory store")


SECTIONS = {
    "local": (bench_local, bench_enrich, bench_threads, bench_latency),
    "kinesis": (bench_kinesis.add_rows,),
    "leases": (bench_leases.add_rows, bench_lease_plan),
    "reload": (bench_reload,),
    "metrics": (bench_metrics.add_rows,),
}


def main():
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    if what not in SECTIONS and what != "all":
        print(f"usage: {sys.argv[0]} [{'|'.join(SECTIONS)}|all]", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    print(f"shardrun bench ({'quick' if QUICK else 'full'}) on {os.cpu_count()} cores: rows as they are measured")
    try:
        with snapshot():
            for name, fns in SECTIONS.items():
                if what in (name, "all"):
                    for fn in fns:
                        fn()
    except BenchError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 1
    print_table(f"shardrun bench ({'quick' if QUICK else 'full'}) on {os.cpu_count()} cores, load average at end "
                f"{os.getloadavg()[0]:.2f}, measured in {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
