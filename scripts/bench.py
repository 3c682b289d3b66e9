#!/usr/bin/env python3
"""shardrun benchmarks: prints one table; every row is measured in this run.

usage: scripts/bench.py [local|kinesis|leases|reload|all]   (BENCH_QUICK=1: smaller runs)

Rows measured here (local source, no network):
  local no-op         1 M x 100 B records through `return "checkpoint"`
  local cjson         the same, cjson.decode of every record
  local 1000 shards   RSS and throughput of one worker owning 1000 shards
  reload              time from a script change to the first batch on the new version (median)
Rows measured against the emulators (scripts/emulators.sh; kinesalite + dynalite on 127.0.0.1):
  kinesis shardrun    drain of a pre-filled 4-shard stream (400k x 100 B), no-op processor,
                      `shardrun run --drain`, DynamoDB (dynalite) leases, checkpoint per batch
  kinesis lifion      lifion-kinesis 1.3.3 (npm, scripts/bench-lifion.js) draining the SAME
                      stream (TRIM_HORIZON, its own state table in dynalite), no-op handler;
                      the process exits once it has counted all N records
  leases              takeover after kill -9 / handoff after SIGTERM / lease-store writes per
                      shard-minute, from scripts/bench-leases.sh (local lease store)
CPU is the measured process's user+sys time (wait4 rusage: shardrun worker / node process, start
to exit); peak RSS is its ru_maxrss. Local records/s is records over the worker's processing time
(first batch to drained, from its own log line); Kinesis records/s is records over the time from
worker start (shardrun) / startConsumer (lifion) to the last record.
Every process gets AWS_EC2_METADATA_DISABLED=true and dummy credentials and only talks to 127.0.0.1.
The binary is copied to a temporary file first, so a concurrent rebuild cannot disturb the run.
"""
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import emulators  # scripts/ is on sys.path: this file lives there
from childenv import child_env
from luavalue import lua_value

ROOT = Path(__file__).resolve().parents[1]
SHARDRUN = os.environ.get("SHARDRUN", str(ROOT / "shardrun"))
QUICK = os.environ.get("BENCH_QUICK") == "1"
DRAIN_TIMEOUT_S = 600  # a drain that hangs is killed (by PID), not waited on forever
ENV = child_env(emulators.AWS_ENV, {"AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                                     "AWS_SDK_JS_SUPPRESS_MAINTENANCE_MODE_MESSAGE": "1"})
NODE_PREFIX = ROOT / ".deps" / "node"
LIFION_VERSION = "1.3.3"
KPORT = emulators.KINESALITE.port
DPORT = emulators.DYNALITE.port

# Targets from issue 7
T_KINESIS_CPU_US, T_KINESIS_RSS_MB = 1.0, 30.0
T_LOCAL_NOOP_CPU_US = 0.5      # >= 2 M records/s on one core
T_LOCAL_CJSON_CPU_US = 2.0     # >= 500 k records/s on one core
T_1000_RSS_MB = 1024.0

ROWS = []


def row(name, records, rate, cpu_us, rss_mb, note=""):
    ROWS.append((name, records, rate, cpu_us, rss_mb, note))
    print(f"  {name:<34} {records:>10} {rate:>12} {cpu_us:>10} {rss_mb:>9}  {note}", flush=True)


def verdict(ok, what):
    return f"{'met' if ok else 'MISSED'} ({what})"


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


class Dir:
    def __init__(self, streams, **top):
        self.path = Path(tempfile.mkdtemp(prefix="shardrun-bench-"))
        fields = {"application": "bench", "source": {"type": "local", "path": "streams.db"},
                  "leases": {"type": "local", "path": "leases.db"}, "taker_interval_ms": 200}
        fields.update(top)
        text = "".join(f"{k} = {lua_value(v)}\n" for k, v in fields.items())
        text += "streams = { " + ", ".join(lua_value(s) for s in streams) + " }\n"
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
        code, cpu_s, maxrss, _ = wait4_run([SHARDRUN, "run", "--drain"], self.path, log, ENV, DRAIN_TIMEOUT_S)
        if code != 0:
            raise SystemExit(f"worker failed (exit {code}):\n{log.read_text()[-3000:]}")
        m = re.search(r"event=worker_drained .*records=(\d+) processing_ms=(\d+)", log.read_text())
        return int(m.group(1)), int(m.group(2)) / 1000.0, cpu_s, maxrss

    def cleanup(self):
        shutil.rmtree(self.path, ignore_errors=True)


def lines_file(n, make):
    f = tempfile.NamedTemporaryFile("w", delete=False, suffix=".txt")
    for i in range(n):
        f.write(make(i) + "\n")
    f.close()
    return f.name


def bench_drain(name, processor, n, shards, make, threads=None, note="", target=None):
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
        if target:
            note = f"{note}; {target(records / secs, cpu * 1e6 / n, rss / 1024)}"
        row(name, n, f"{records / secs:,.0f}", fmt(cpu * 1e6 / n, ".2f"), fmt(rss / 1024, ".0f"), note)
        d.rss_mb = rss / 1024
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
    bench_drain("local no-op, 100 B", NOOP, n, 4, lambda i: f"{i:099d}", note="4 shards",
                target=lambda r, c, m: verdict(c <= T_LOCAL_NOOP_CPU_US,
                                               f"<= {T_LOCAL_NOOP_CPU_US} us CPU/rec = 2 M/s on one core")).cleanup()
    bench_drain("local cjson.decode, 100 B", CJSON, n, 4,
                lambda i: json.dumps({"i": i, "pad": "x" * (86 - len(str(i)))}), note="4 shards",
                target=lambda r, c, m: verdict(c <= T_LOCAL_CJSON_CPU_US,
                                               f"<= {T_LOCAL_CJSON_CPU_US} us CPU/rec = 500 k/s on one core")).cleanup()
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
        ok = starved == 0 and d.rss_mb <= T_1000_RSS_MB and total == shards
        ROWS[-1] = ROWS[-1][:5] + (f"one worker; shards without progress: {starved}/{total}; "
                                   + verdict(ok, "RSS <= 1 GB, every shard progressed"),)
        print(f"    {ROWS[-1][5]}")
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
    stop = threading.Event()

    def produce():
        while not stop.wait(0.005):
            subprocess.run([SHARDRUN, "put", "b"], cwd=d.path, env=ENV, input=b"x\n", capture_output=True)
    producer = threading.Thread(target=produce)
    producer.start()
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
                if f"v{v}\n" in log:
                    samples.append(time.time() - t0)
                    break
                time.sleep(0.002)
            time.sleep(0.3)
    finally:
        stop.set()
        producer.join()  # its last `put` has finished: nothing of it is left running
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        d.cleanup()
    if samples:
        med = statistics.median(samples) * 1000
        row("reload: change -> first new batch", len(samples), "-", "-", "-",
            f"median {med:.0f} ms (min {min(samples) * 1000:.0f}, max {max(samples) * 1000:.0f}); "
            "includes the 100 ms debounce")
    else:
        row("reload: change -> first new batch", 0, "-", "-", "-", f"failed: no new version seen within 10 s ({reps} tries)")


def lifion_installed():
    pj = NODE_PREFIX / "node_modules" / "lifion-kinesis" / "package.json"
    try:
        return json.loads(pj.read_text()).get("version") == LIFION_VERSION
    except (OSError, ValueError):
        return False


def install_lifion():
    """npm install lifion-kinesis@1.3.3 into .deps/node (a no-op when it is there). Returns an error or None."""
    if lifion_installed():
        return None
    r = subprocess.run(["npm", "install", "--prefix", str(NODE_PREFIX), "--no-audit", "--no-fund", "--omit=optional",
                        f"lifion-kinesis@{LIFION_VERSION}"], env=ENV, capture_output=True, text=True)
    if r.returncode or not lifion_installed():
        return f"npm install lifion-kinesis@{LIFION_VERSION} failed: {(r.stderr or r.stdout).strip()[-300:]}"
    return None


def wait4_run(cmd, cwd, log_path, env, timeout):
    """Runs cmd; returns (exit code, cpu_s, maxrss_kb, wall_s). Kills it (by PID) after timeout seconds."""
    t0 = time.monotonic()
    with open(log_path, "wb") as out:
        p = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env)
        timer = threading.Timer(timeout, lambda: p.poll() is None and os.kill(p.pid, 9))
        timer.start()
        try:
            _, status, ru = os.wait4(p.pid, 0)
            p.returncode = os.waitstatus_to_exitcode(status)
        finally:
            timer.cancel()
    return p.returncode, ru.ru_utime + ru.ru_stime, ru.ru_maxrss, time.monotonic() - t0


def bench_kinesis():
    n = int(os.environ.get("BENCH_RECORDS", 40_000 if QUICK else 400_000))
    shards = 4
    fail = None
    emus = emulators.Session()
    try:
        emus.__enter__()   # starts (and installs) only what does not answer yet
    except emulators.EmulatorError as e:
        fail = f"emulators: {str(e)[-200:]}"
    lifion_err = install_lifion()
    work = Path(tempfile.mkdtemp(prefix="shardrun-bench-kinesis-"))
    stream = f"bench{int(time.time())}{os.getpid()}"
    try:
        if fail:
            raise RuntimeError(fail)
        (work / "shardrun.lua").write_text(f'''application = "{stream}"
source = {{ type = "kinesis", region = "us-east-1", endpoint = "http://127.0.0.1:{KPORT}" }}
leases = {{ type = "dynamodb", region = "us-east-1", endpoint = "http://127.0.0.1:{DPORT}" }}
streams = {{ {{ name = "{stream}", processor = "noop.lua", idle_time_between_reads_ms = 200 }} }}
''')
        (work / "noop.lua").write_text('''local P = {}
function P.processRecords(records, shard) return "checkpoint" end
function P.shardEnded(shard) return "checkpoint" end
function P.shutdownRequested(shard) return "checkpoint" end
return P
''')
        for args in (["stream", "create", stream, "--shards", str(shards)],):
            r = subprocess.run([SHARDRUN, *args], cwd=work, env=ENV, capture_output=True, timeout=120)
            if r.returncode:
                raise RuntimeError(f"shardrun {' '.join(args)}: {r.stderr.decode()[-300:]}")
        pad = "0" * 90
        with open(work / "records.txt", "w") as f:
            for i in range(n):
                f.write(f"{i:09d} {pad}\n")     # 100 bytes with the newline
        t0 = time.monotonic()
        r = subprocess.run([SHARDRUN, "put", stream, "records.txt"], cwd=work, env=ENV, capture_output=True, timeout=600)
        if r.returncode:
            raise RuntimeError(f"shardrun put: {r.stderr.decode()[-300:]}")
        prefill = time.monotonic() - t0
        print(f"    kinesalite stream {stream}: {n} x 100 B over {shards} shards, prefilled in {prefill:.1f} s "
              f"(shardrun put)", flush=True)

        # shardrun: `run --drain` exits by itself once every shard is caught up
        code, cpu, rss, wall = wait4_run([SHARDRUN, "run", "--drain"], work, work / "run.log", ENV, 600)
        log = (work / "run.log").read_text(errors="replace")
        m = re.search(r"event=worker_drained .*elapsed_ms=(\d+) records=(\d+)", log)
        if code != 0 or not m:
            row("kinesis 4 shards: shardrun", n, "-", "-", "-", f"failed: exit {code}: {log[-300:]!r}")
            sr = None
        elif int(m.group(2)) != n:
            row("kinesis 4 shards: shardrun", n, "-", "-", "-", f"failed: processed {m.group(2)} of {n}")
            sr = None
        else:
            secs = int(m.group(1)) / 1000.0
            sr = (cpu * 1e6 / n, rss / 1024)
            row("kinesis 4 shards: shardrun", n, f"{n / secs:,.0f}", fmt(sr[0], ".2f"), fmt(sr[1], ".1f"),
                "run --drain, exits when drained; "
                + verdict(sr[0] <= T_KINESIS_CPU_US, f"<= {T_KINESIS_CPU_US:g} us CPU/rec") + ", "
                + verdict(sr[1] <= T_KINESIS_RSS_MB, f"<= {T_KINESIS_RSS_MB:g} MB"))
            row_cpu_split = f"    shardrun: wall {wall:.1f} s, CPU {cpu:.2f} s"
            print(row_cpu_split, flush=True)

        # lifion-kinesis: same stream, from TRIM_HORIZON, its own consumer group / state table
        if lifion_err:
            row(f"kinesis 4 shards: lifion {LIFION_VERSION}", n, "-", "-", "-", f"failed: {lifion_err}")
            return
        env = dict(ENV, NODE_PATH=str(NODE_PREFIX / "node_modules"), KINESIS_ENDPOINT=f"http://127.0.0.1:{KPORT}",
                   DYNAMODB_ENDPOINT=f"http://127.0.0.1:{DPORT}", LIFION_GROUP=f"{stream}-lifion",
                   BENCH_TIMEOUT_S="300")
        code, cpu, rss, wall = wait4_run(["node", str(ROOT / "scripts" / "bench-lifion.js"), stream, str(n)], work,
                                         work / "lifion.log", env, 330)
        out = (work / "lifion.log").read_text(errors="replace")
        res = None
        for line in out.splitlines():
            if line.startswith("{"):
                try:
                    res = json.loads(line)
                except ValueError:
                    pass
        name = f"kinesis 4 shards: lifion {LIFION_VERSION}"
        if not res or not res.get("ok") or res.get("records") != n or code != 0:
            why = (res or {}).get("why") or f"exit {code}: {out[-300:]!r}"
            row(name, n, "-", "-", "-", f"failed: {why}")
            return
        lc, lr = cpu * 1e6 / n, rss / 1024
        consume_cpu = res["consume_cpu_us"] / n
        note = (f"node, exits at record N; CPU excl. module load/table setup {consume_cpu:.2f} us/rec")
        if sr:
            note += f"; lifion/shardrun: CPU x{lc / sr[0]:.1f}, RSS x{lr / sr[1]:.1f}"
        row(name, n, f"{n / (res['consume_ms'] / 1000):,.0f}", fmt(lc, ".2f"), fmt(lr, ".1f"), note)
        print(f"    lifion: wall {wall:.1f} s, CPU {cpu:.2f} s, {res['batches']} batches, per shard {res['shards']}",
              flush=True)
    except Exception as e:  # a row saying why, never a fake number
        row("kinesis 4 shards", n, "-", "-", "-", f"failed: {e}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        emus.close()   # stops only what it started, by PID


def bench_leases():
    env = dict(ENV, SHARDRUN=SHARDRUN, BENCH_QUICK="1" if QUICK else "0")
    if not QUICK:   # keep `make bench` under 10 minutes on 2 cores
        env.setdefault("BENCH_LEASE_RUNS", "3")
        env.setdefault("BENCH_LEASE_WINDOW_S", "30")
    r = subprocess.run([str(ROOT / "scripts" / "bench-leases.sh")], env=env, capture_output=True, text=True,
                       timeout=540)
    out = r.stdout
    runs = re.search(r"runs=(\d+)", out)
    runs = runs.group(1) if runs else "?"
    found = False
    for label, key in (("takeover after kill -9", "after kill -9"), ("handoff after SIGTERM", "after SIGTERM")):
        m = re.search(re.escape(key) + r"\s+([\d.]+)s\s+([\d.]+)s\s+([\d.]+)s\s+([\d.]+)s", out)
        if m:
            found = True
            row(label, f"{runs} runs", "-", "-", "-",
                f"median {m.group(1)} s to first shard, {m.group(2)} s to all (min {m.group(3)}, max {m.group(4)});"
                " lease 10 s, taker 2 s")
    for key in ("checkpoint_interval_ms=0", "checkpoint_interval_ms=1000", "idle stream"):
        m = re.search(r"^" + re.escape(key) + r"\s+(\d+)\s+(\d+)\s*$", out, re.M)
        if m:
            found = True
            label = {"checkpoint_interval_ms=0": "lease writes: checkpoint per batch",
                     "checkpoint_interval_ms=1000": "lease writes: checkpoint_interval 1s",
                     "idle stream": "lease writes: idle stream"}[key]
            row(label, "-", "-", "-", "-",
                f"{m.group(1)} writes per shard-minute at {m.group(2)} records/s put ({key})")
    if r.returncode or not found:
        err = (r.stderr.strip().splitlines() or ["?"])[-1]
        row("leases", "-", "-", "-", "-", f"failed: bench-leases.sh exit {r.returncode}: {err[-200:]}")


def print_table():
    print()
    print(f"shardrun bench ({'quick' if QUICK else 'full'}) on {os.cpu_count()} cores, "
          f"load average at end {os.getloadavg()[0]:.2f}")
    print(f"  {'benchmark':<34} {'records':>10} {'records/s':>12} {'CPU us/rec':>10} {'peak RSS':>9}  notes")
    for name, records, rate, cpu_us, rss_mb, note in ROWS:
        print(f"  {name:<34} {records:>10} {rate:>12} {cpu_us:>10} {rss_mb:>9}  {note}")


def main():
    global SHARDRUN
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    # a private copy of the binary and its Lua library (found next to the executable): others may
    # rebuild ./shardrun or edit lua/ while this runs
    snap = tempfile.mkdtemp(prefix="shardrun-bench-bin-")
    shutil.copy2(SHARDRUN, os.path.join(snap, "shardrun"))
    lua_dir = Path(SHARDRUN).resolve().parent / "lua"
    if lua_dir.is_dir() and "SHARDRUN_LUA_DIR" not in os.environ:
        shutil.copytree(lua_dir, os.path.join(snap, "lua"))
    SHARDRUN = os.path.join(snap, "shardrun")
    try:
        run_all(what)
    finally:
        shutil.rmtree(snap, ignore_errors=True)


def run_all(what):
    print(f"shardrun bench ({'quick' if QUICK else 'full'}) on {os.cpu_count()} cores")
    print(f"  {'benchmark':<34} {'records':>10} {'records/s':>12} {'CPU us/rec':>10} {'peak RSS':>9}  notes")
    t0 = time.monotonic()
    if what in ("local", "all"):
        bench_local()
    if what in ("kinesis", "all"):
        bench_kinesis()
    if what in ("leases", "all"):
        bench_leases()
    if what in ("reload", "all"):
        bench_reload()
    print_table()
    print(f"  (RSS in MB; measured in {time.monotonic() - t0:.0f} s)")


if __name__ == "__main__":
    main()
