"""Metrics on vs off (issue 14): the no-op rows again, local and Kinesis, each
drained by a worker without metrics and by one with metrics = { listen = ... }
that a scraper reads every second while it drains, in the same run. The
cost is the worker's CPU per record with metrics over without (the target:
at most 3% more). Each pair runs several times, alternating off and on,
and the medians are compared: one drain is short and the machine is shared,
so a few percent either way is noise. The same drains (local, and a shorter
Kinesis one) are also counted in instructions (valgrind's callgrind, one
drain each way), which do not depend on the load: those rows show what
metrics cost without the noise.

    python3 scripts/bench.py metrics"""
import os
import re
import statistics
import subprocess
import threading
import time
import urllib.request

import emulators
from benchlib import ENV, QUICK, BenchError, Dir, failed, lines_file, row, shardrun, verdict

T_METRICS_COST = 1.03   # CPU/rec with metrics on <= 1.03x off
SCRAPE_EVERY_S = 1.0    # 15x Prometheus's default scrape interval: a worst case
NOOP = 'return { processRecords = function(records) return "checkpoint" end }\n'


def drain_scraped(d, metrics, log_name):
    """Runs `run --drain` in d; with metrics, scrapes /metrics every second
    meanwhile. Returns (records, cpu_s, scrapes)."""
    log_path = d.path / log_name
    scrapes = [0]
    with open(log_path, "wb") as out:
        p = subprocess.Popen([shardrun(), "run", "--drain"], cwd=d.path, stdout=out, stderr=subprocess.STDOUT,
                             env=ENV)
    stop = threading.Event()

    def scrape():
        port = None
        while not stop.is_set() and port is None:
            m = re.search(r"event=metrics_listening .*port=(\d+)", log_path.read_text(errors="replace"))
            port = int(m.group(1)) if m else None
            stop.wait(0.02)
        while port and not stop.is_set():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    r.read()
                scrapes[0] += 1
            except OSError:
                pass  # the worker is exiting
            stop.wait(SCRAPE_EVERY_S)

    t = threading.Thread(target=scrape, daemon=True)
    if metrics:
        t.start()
    timer = threading.Timer(600, lambda: p.poll() is None and os.kill(p.pid, 9))
    timer.start()
    try:
        _, status, ru = os.wait4(p.pid, 0)
    finally:
        timer.cancel()
        stop.set()
    if metrics:
        t.join(10)
    text = log_path.read_text(errors="replace")
    m = re.search(r"event=worker_drained .*records=(\d+)", text)
    if os.waitstatus_to_exitcode(status) != 0 or not m:
        raise BenchError(f"worker failed: {text[-300:]!r}")
    return int(m.group(1)), ru.ru_utime + ru.ru_stime, scrapes[0]


def configure(d, metrics, app):
    """Rewrites d's config with or without metrics (and its own lease table)."""
    text = (d.path / "shardrun.lua").read_text()
    text = re.sub(r"(?m)^(application|metrics) = .*\n", "", text)
    text += f'application = "{app}"\n'
    if metrics:
        text += 'metrics = { listen = "127.0.0.1:0" }\n'
    (d.path / "shardrun.lua").write_text(text)


def pair_row(name, n, cpu, scrapes, note):
    """cpu: {False: [cpu_s of each drain without metrics], True: [... with]}; medians compared."""
    off, on = statistics.median(cpu[False]), statistics.median(cpu[True])
    each = lambda v: "/".join(f"{c * 1e6 / n:.3f}" for c in v)   # noqa: E731
    cost = on / off
    row(f"{name}, metrics off", n, None, off * 1e6 / n, None, f"{note}; each: {each(cpu[False])}")
    row(f"{name}, metrics on", n, None, on * 1e6 / n, None,
        f"{scrapes} scrapes per drain, one every {SCRAPE_EVERY_S:g} s; each: {each(cpu[True])}",
        ratio=f"{cost:.3f}x off", target=verdict(cost <= T_METRICS_COST, f"<= {T_METRICS_COST}x off"))


def fill_noop(d, stream, n, timeout=600):
    """NOOP as d's processor; a new 4-shard stream holding n records of 99 digits."""
    d.write("p.lua", NOOP)
    d.run("stream", "create", stream, "--shards", "4", timeout=timeout)
    data = lines_file(n, lambda i: f"{i:099d}")
    try:
        d.run("put", stream, input_path=data)
    finally:
        os.unlink(data)


def drain_pairs(d, n, pairs, app):
    """`pairs` rounds of one drain without metrics and one with (alternating
    which goes first), each under its own application (app + round + on/off):
    a fresh lease table, so the whole stream again. Returns ({False: [cpu_s of
    each drain without], True: [... with]}, scrapes per drain)."""
    cpu = {False: [], True: []}
    scrapes = 0
    for i in range(pairs):
        for metrics in (False, True) if i % 2 == 0 else (True, False):
            configure(d, metrics, f"{app}{i}{int(metrics)}")
            records, c, s = drain_scraped(d, metrics, f"drain-{i}-{int(metrics)}.log")
            if records != n:
                raise BenchError(f"processed {records} of {n}")
            cpu[metrics].append(c)
            scrapes += s
    return cpu, scrapes // pairs


def pair_bench(name, d, stream, n, pairs, app, note, create_timeout=600):
    """The off/on rows of one project folder (fill_noop, drain_pairs); cleans `d` up."""
    try:
        fill_noop(d, stream, n, create_timeout)
        cpu, scrapes = drain_pairs(d, n, pairs, app)
        pair_row(name, n, cpu, scrapes, note)
    except BenchError as e:
        failed(f"{name}, metrics on vs off", e)
    finally:
        d.cleanup()


def bench_local_pair():
    n = 200_000 if QUICK else 1_000_000
    # a local drain is ~0.2 s of CPU, and varies ~8% from run to run here: 3 runs
    # cannot resolve the 3% bound, 7 can (the Kinesis pair's 10 s drains need fewer)
    pairs = 2 if QUICK else 7
    d = Dir([{"name": "b", "processor": "p.lua", "idle_time_between_reads_ms": 100}])
    pair_bench("local no-op, 4 shards", d, "b", n, pairs, "m", f"median of {pairs} drains each, alternating")


def callgrind_instructions(d, metrics, app):
    """Instructions the worker executes draining the stream under callgrind."""
    configure(d, metrics, app)
    out = d.path / f"callgrind.{app}"
    log = d.path / f"callgrind-{app}.log"
    with open(log, "wb") as f:
        r = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", shardrun(), "run",
                            "--drain"], cwd=d.path, stdout=f, stderr=subprocess.STDOUT, env=ENV, timeout=900)
    text = log.read_text(errors="replace")
    m = re.search(r"Collected : (\d+)", text)
    if r.returncode or not m or "event=worker_drained" not in text:
        raise BenchError(f"callgrind drain failed (exit {r.returncode}): {text[-300:]!r}")
    return int(m.group(1))


def instructions_row(name, d, stream, n, app, create_timeout=600):
    """Instructions per record off and on (callgrind, one drain each, no
    scrape) of a fresh stream in d; cleans `d` up."""
    try:
        fill_noop(d, stream, n, create_timeout)
        off = callgrind_instructions(d, False, f"{app}off")
        on = callgrind_instructions(d, True, f"{app}on")
        cost = on / off
        row(name, n, None, None, None,
            f"callgrind: {off / n:,.0f} instructions/rec off, {on / n:,.0f} on (start-up included, no scrape)",
            ratio=f"{cost:.3f}x off", target=verdict(cost <= T_METRICS_COST, f"<= {T_METRICS_COST}x off"))
    except (BenchError, OSError, subprocess.TimeoutExpired) as e:
        failed(name, e)
    finally:
        d.cleanup()


def bench_local_instructions():
    n = 50_000 if QUICK else 200_000
    d = Dir([{"name": "b", "processor": "p.lua", "idle_time_between_reads_ms": 100}])
    instructions_row("local no-op, 4 shards, instructions", d, "b", n, "i")


def kinesis_dir(stream):
    return Dir([{"name": stream, "processor": "p.lua", "idle_time_between_reads_ms": 200}], application=stream,
               source={"type": "kinesis", "region": "us-east-1", "endpoint": emulators.KINESALITE.url},
               leases={"type": "dynamodb", "region": "us-east-1", "endpoint": emulators.DYNALITE.url})


def bench_kinesis_pair():
    # the Kinesis row's 400k records: a start (~2 ms) and a scrape (~0.5 ms of
    # CPU each, one a second) are fixed costs that a shorter drain would
    # count as per record
    n = 20_000 if QUICK else 400_000
    # 3 pairs read 1.008x, 1.019x, then 1.037x in full runs of the same code:
    # a Kinesis drain's CPU moves ~3% with the machine's load, as much as the
    # bound, so 5 pairs (~100 s)
    pairs = 1 if QUICK else 5
    stream = f"metrics{int(time.time())}{os.getpid()}"
    pair_bench("kinesis no-op, 4 shards", kinesis_dir(stream), stream, n, pairs, f"{stream}-",
               f"kinesalite + dynalite, median of {pairs} drains each, alternating", create_timeout=120)


def bench_kinesis_instructions():
    """The Kinesis pair in instructions: they do not depend on the load or
    on the emulators' share of the 2 cores, as CPU time does."""
    n = 20_000 if QUICK else 50_000
    stream = f"metricsi{int(time.time())}{os.getpid()}"
    instructions_row("kinesis no-op, 4 shards, instructions", kinesis_dir(stream), stream, n, f"{stream}-i",
                     create_timeout=120)


def add_rows():
    bench_local_pair()
    bench_local_instructions()
    try:
        with emulators.Session():
            bench_kinesis_pair()
            bench_kinesis_instructions()
    except emulators.EmulatorError as e:
        failed("kinesis no-op, metrics on vs off", f"emulators: {e}")
