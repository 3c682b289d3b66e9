"""Observability (issue 14): /metrics read by a real Prometheus, checked by
promtool; /healthz when the loop stops turning; /readyz through starting,
owning, a halted shard and draining; 1,000 shards; JSON logs."""
import json
import os
import re
import select
import signal
import subprocess
import threading
import time

from aws_helpers import AWS_ENV, DYNALITE_PORT, FaultProxy, proxied_kinesis_project, unique
from conftest import RECORDING_PROCESSOR, ROOT, read_seen, wait_for
from metrics_helpers import PROMTOOL, FaultsWorker, Prometheus, get, metrics_port, samples, total

METRICS = {"listen": "127.0.0.1:0"}

# Fails (as {failed = r}) every record whose data starts with "poison";
# records every record it finished in seen/, one file per shard.
POISON_PROCESSOR = r'''
local P = {}
function P.initialize(shard)
  os.execute("mkdir -p seen")
  shard.state.out = assert(io.open("seen/" .. shard.stream .. "-" .. shard.id .. ".log", "a"))
end
function P.processRecords(records, shard)
  for i = 1, #records do
    local r = records[i]
    if r.data:sub(1, 6) == "poison" then
      shard.state.out:flush()
      return { failed = r, error = "poison record" }
    end
    shard.state.out:write(shard.id, " ", r.sequenceNumber, " ", r.data, "\n")
  end
  shard.state.out:flush()
  return "checkpoint"
end
return P
'''


def test_prometheus_sums_exactly_the_records_the_processor_saw(env, tmp_path):
    env.write("p.lua", RECORDING_PROCESSOR)
    env.config([{"name": "words", "processor": "p.lua"}], metrics=METRICS)
    env.create_stream("words", 4)
    n = 5000
    env.put("words", [f"w{i}" for i in range(n)])
    w = env.worker()
    port = metrics_port(w)
    prom = Prometheus(tmp_path / "prom", [f"127.0.0.1:{port}"])
    try:
        wait_for(lambda: len(read_seen(env.dir / "seen")) == n, timeout=60, what="every record processed")
        seen = len(read_seen(env.dir / "seen"))
        got = prom.wait_value("sum(shardrun_records_processed_total)", seen)
        assert got == seen == n, f"Prometheus has {got}, the processor saw {seen}"
        assert prom.query('count(shardrun_records_processed_total{stream="words"})') == 4  # one series per shard
        assert prom.query("sum(shardrun_bytes_processed_total)") == sum(len(f"w{i}") for i in range(n))
        assert prom.query("shardrun_shards") == 4
        assert prom.query("up") == 1
        assert prom.query("process_resident_memory_bytes") > 1e6
        # the Grafana dashboard asks only for what the worker exports, in queries Prometheus accepts
        text = get(port, "/metrics")[1]
        dash = json.loads((ROOT / "examples" / "grafana" / "shardrun.json").read_text())
        exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
        assert len(exprs) > 20
        for e in exprs:
            for name in re.findall(r"\b((?:shardrun|process)_[a-z_]+)", e):
                family = re.sub(r"_bucket$", "", name)
                assert f"# TYPE {family} " in text, f"{name} in the dashboard is not exported"
            q = e.replace("$stream", ".*").replace("$job", ".*").replace("$__rate_interval", "1m")
            prom.query(q)  # a syntax or type error fails here (HTTP 400)
    finally:
        prom.stop()


def test_prometheus_counts_skipped_and_dead_lettered_poison_records(env, tmp_path):
    env.write("p.lua", POISON_PROCESSOR)
    env.config([{"name": "sk", "processor": "p.lua", "on_error": {"final": "skip", "retries": 0}},
                {"name": "dl", "processor": "p.lua",
                 "on_error": {"final": "dead_letter", "retries": 0, "dead_letter": {"file": "dl.jsonl"}}}],
               metrics=METRICS)
    env.create_stream("sk", 2)
    env.create_stream("dl", 2)
    # one poison record in 40: far below the breaker's threshold
    lines = [f"poison {i}" if i % 40 == 7 else f"good {i}" for i in range(2000)]
    poison = sum(1 for l in lines if l.startswith("poison"))
    env.put("sk", lines)
    env.put("dl", lines)
    w = env.worker()
    port = metrics_port(w)
    prom = Prometheus(tmp_path / "prom", [f"127.0.0.1:{port}"])
    try:
        good = len(lines) - poison
        wait_for(lambda: len(read_seen(env.dir / "seen")) == 2 * good, timeout=60, what="the good records")
        wait_for(lambda: (env.dir / "dl.jsonl").exists() and
                 len((env.dir / "dl.jsonl").read_text().splitlines()) == poison, what="the dead letters")
        assert prom.wait_value('sum(shardrun_records_skipped_total{stream="sk"})', poison) == poison
        assert prom.wait_value('sum(shardrun_records_dead_lettered_total{stream="dl"})', poison) == poison
        assert prom.wait_value("sum(shardrun_records_processed_total)", 2 * good) == 2 * good
        assert prom.query('sum(shardrun_records_skipped_total{stream="dl"})') == 0
        # each poison record failed one call, as {failed = r}: kind "error"
        assert prom.wait_value('sum(shardrun_batch_failures_total{kind="error"})', 2 * poison) == 2 * poison
        assert prom.query('sum(shardrun_batch_failures_total{kind="timeout"})') == 0
        assert prom.query("sum(shardrun_breaker_trips_total)") == 0
    finally:
        prom.stop()


def test_promtool_accepts_the_exposition(env):
    env.write("p.lua", POISON_PROCESSOR)
    env.config([{"name": "sk", "processor": "p.lua", "on_error": {"final": "skip", "retries": 0}}],
               metrics=METRICS)
    env.create_stream("sk", 3)
    env.put("sk", [f"poison {i}" if i % 50 == 3 else f"good {i}" for i in range(600)])
    w = env.worker()
    port = metrics_port(w)
    wait_for(lambda: total(get(port, "/metrics")[1], "shardrun_records_skipped_total") == 12, what="skips counted")
    status, text = get(port, "/metrics")
    assert status == 200
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(), capture_output=True, timeout=60)
    out = (r.stdout + r.stderr).decode()
    assert r.returncode == 0 and out.strip() == "", f"promtool check metrics:\n{out}"
    # every family the issue asks for is there, with HELP and TYPE
    for name in ["shardrun_records_processed_total", "shardrun_bytes_processed_total", "shardrun_batches_total",
                 "shardrun_batch_failures_total", "shardrun_retries_total", "shardrun_records_skipped_total",
                 "shardrun_records_dead_lettered_total", "shardrun_breaker_trips_total",
                 "shardrun_batch_duration_seconds", "shardrun_record_age_seconds", "shardrun_millis_behind_latest",
                 "shardrun_get_records_total", "shardrun_get_records_errors_total", "shardrun_iterator_expired_total",
                 "shardrun_checkpoints_total", "shardrun_prefetched_bytes", "shardrun_prefetch_limit_bytes",
                 "shardrun_script_info", "shardrun_reloads_total", "shardrun_lua_memory_bytes",
                 "process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds",
                 "process_start_time_seconds", "shardrun_records_behind", "shardrun_leases_owned",
                 "shardrun_lease_store_duration_seconds", "shardrun_leases_lost_total", "shardrun_aws_requests_total",
                 "shardrun_aws_request_duration_seconds", "shardrun_aws_throttled_total"]:
        assert f"# TYPE {name} " in text, name
    assert total(text, "shardrun_record_age_seconds_count") == 600 - 12
    assert not w.events("metrics_http_error"), w.events("metrics_http_error")


def test_healthz_is_503_while_the_loop_does_not_turn_and_200_after(env):
    """The test build's fault hook blocks the loop thread itself (SIGUSR2,
    while a file exists): no mock, the loop really stops."""
    env.write("p.lua", RECORDING_PROCESSOR)
    env.config([{"name": "s", "processor": "p.lua"}], metrics={"listen": "127.0.0.1:0", "loop_stall_ms": 400})
    env.create_stream("s", 1)
    stall = env.dir / "stall"
    env.extra_env["SHARDRUN_FAULT_STALL_FILE"] = str(stall)
    w = FaultsWorker(env, ["run"], "faulty")
    port = metrics_port(w)
    wait_for(lambda: get(port, "/healthz")[0] == 200, what="healthy")
    stall.write_text("")
    w.signal(signal.SIGUSR2)
    wait_for(lambda: w.events("fault_loop_stalled"), what="the loop stalled")
    t0 = time.monotonic()
    status, body = wait_for(lambda: (lambda r: r if r[0] == 503 else None)(get(port, "/healthz")), timeout=10,
                            what="/healthz 503")
    assert "the loop has not turned" in body
    assert time.monotonic() - t0 < 5
    # /metrics still answers, with the last rendering and its age
    status, text = get(port, "/metrics", timeout=10)
    assert status == 200
    assert samples(text)["shardrun_metrics_snapshot_age_seconds"] >= 0.4 or \
        samples(text)["shardrun_metrics_snapshot_age_seconds"] == -1
    assert get(port, "/healthz")[0] == 503  # still stalled
    stall.unlink()
    wait_for(lambda: get(port, "/healthz")[0] == 200, timeout=10, what="/healthz 200 again")
    assert w.events("fault_loop_resumed")
    status, text = get(port, "/metrics")
    assert samples(text)["shardrun_metrics_snapshot_age_seconds"] < 0.4  # fresh again
    assert w.stop() == 0


def test_production_binary_has_no_fault_hook(env):
    env.write("p.lua", RECORDING_PROCESSOR)
    env.config([{"name": "s", "processor": "p.lua"}], metrics=METRICS)
    env.create_stream("s", 1)
    w = env.worker()
    metrics_port(w)
    assert not w.events("faults_compiled_in")
    assert w.stop() == 0


HALT_PROCESSOR = r'''
local ffi = require "ffi"
pcall(ffi.cdef, "int usleep(unsigned int usec);")
local P = {}
function P.processRecords(records)
  for i = 1, #records do
    if records[i].data == "halt me" then error("cannot process this one") end
  end
  return "checkpoint"
end
function P.shutdownRequested(shard)
  ffi.C.usleep(1500 * 1000) -- a slow shutdown: the worker is draining meanwhile
  return "checkpoint"
end
return P
'''


def test_readyz_is_503_until_the_first_lease_scan_completes(env, emulators, tmp_path):
    """The lease store (dynalite) answers everything but Scan, which a proxy
    holds back: the worker is up (healthz 200) but not ready; once Scan goes
    through, it is."""
    release = threading.Event()

    def hold_scans(headers, body):
        if headers.get("x-amz-target", "").endswith(".Scan"):
            release.wait(60)
        return None  # then forwarded

    proxy = FaultProxy(DYNALITE_PORT, "ThrottlingException", plan=lambda n: "ok", answer=hold_scans)
    try:
        env.extra_env.update(AWS_ENV)
        env.write("p.lua", RECORDING_PROCESSOR)
        env.config([{"name": "s", "processor": "p.lua"}], metrics=METRICS, application=unique("app"),
                   leases={"type": "dynamodb", "region": "us-east-1", "endpoint": proxy.url})
        env.create_stream("s", 2)
        w = env.worker()
        port = metrics_port(w)
        wait_for(lambda: w.events("shard_sync_done") or w.events("worker_started"), what="worker started")
        time.sleep(1.0)
        status, body = get(port, "/readyz")
        assert status == 503 and body.startswith("not ready: starting"), body
        assert get(port, "/healthz")[0] == 200  # alive, only not ready
        release.set()
        wait_for(lambda: get(port, "/readyz")[0] == 200, timeout=30, what="ready once a lease scan completed")
        assert w.stop() == 0
    finally:
        release.set()
        proxy.close()


def test_readyz_follows_owning_halted_and_draining(env):
    env.write("p.lua", HALT_PROCESSOR)
    env.config([{"name": "s", "processor": "p.lua", "on_error": "halt"}], metrics=METRICS)
    env.create_stream("s", 2)
    env.put("s", ["a", "b"])
    w = env.worker()
    port = metrics_port(w)
    # owning
    wait_for(lambda: get(port, "/readyz")[0] == 200, timeout=30, what="ready once the leases are scanned")
    assert get(port, "/readyz")[1] == "ready\n"
    # a halted shard
    env.put("s", ["halt me"], partition_key="k")
    status, body = wait_for(lambda: (lambda r: r if r[0] == 503 else None)(get(port, "/readyz")), timeout=30,
                            what="/readyz 503 with a halted shard")
    assert "is halted" in body, body
    text = get(port, "/metrics")[1]
    assert total(text, "shardrun_shard_halted") == 1
    # a new script version resumes the halted shard: ready again
    env.write("p.lua", HALT_PROCESSOR.replace('error("cannot process this one")', 'local _ = 1'))
    wait_for(lambda: get(port, "/readyz")[0] == 200, timeout=30, what="ready after the resume")
    assert total(get(port, "/metrics")[1], "shardrun_reloads_total", result="ok") == 1
    # draining: SIGTERM, while shutdownRequested takes 1.5 s
    w.signal(signal.SIGTERM)
    status, body = wait_for(lambda: (lambda r: r if r[0] == 503 else None)(get(port, "/readyz", timeout=2)),
                            timeout=10, what="/readyz 503 while draining")
    assert body.startswith("not ready: draining"), body
    assert w.wait(30) == 0


def test_a_thousand_shards_keep_a_bounded_series_count_and_a_quick_scrape(env):
    shards = 1000
    env.write("p.lua", 'return { processRecords = function() return "checkpoint" end }\n')
    env.config([{"name": "big", "processor": "p.lua"}], metrics=METRICS)
    env.create_stream("big", shards)
    env.put("big", [f"r{i}" for i in range(shards * 5)])
    w = env.worker()
    port = metrics_port(w)
    wait_for(lambda: total(get(port, "/metrics")[1], "shardrun_records_processed_total") == shards * 5,
             timeout=180, interval=0.5, what="every record processed")
    # records_behind appears with the first count after the shard was taken
    # (every 5 s, less often while a count is slow): shards taken after the
    # last count have none yet, so the test waits for the next one
    wait_for(lambda: sum(s.startswith("shardrun_records_behind{") for s in samples(get(port, "/metrics")[1])) == shards,
             timeout=60, interval=0.5, what="records_behind for every shard")
    times = []
    for _ in range(5):
        t0 = time.monotonic()
        status, text = get(port, "/metrics")
        times.append(time.monotonic() - t0)
        assert status == 200
    series = samples(text)
    per_shard = [s for s in series if 'shard="' in s]
    bytes_ = len(text.encode())
    print(f"\n1000 shards: {len(series)} series ({len(per_shard)} per-shard, {len(per_shard) / shards:.0f} per shard),"
          f" {bytes_ / 1024:.0f} KiB; scrape: median {sorted(times)[2] * 1000:.1f} ms,"
          f" min {min(times) * 1000:.1f} ms, max {max(times) * 1000:.1f} ms; of which the loop's rendering"
          f" {series['shardrun_metrics_render_seconds'] * 1000:.1f} ms")
    # 18 series per shard (4 of them failure kinds; records_behind on the local source), whatever happens to it;
    # the rest does not grow with shards
    assert len(per_shard) == 18 * shards
    assert len(series) - len(per_shard) < 200
    assert sorted(times)[2] < 2.0  # generous: the machine is shared
    assert w.stop(60) == 0


def test_json_logs_carry_the_same_fields_as_key_value(env):
    env.write("p.lua", RECORDING_PROCESSOR)
    env.config([{"name": "s", "processor": "p.lua"}], log_format="json")
    env.create_stream("s", 1)
    env.put("s", ["a", "b"])
    w = env.worker()
    wait_for(lambda: len(read_seen(env.dir / "seen")) == 2, what="records")
    assert w.stop() == 0
    lines = [l for l in w.logs().splitlines() if l.strip()]
    objs = [json.loads(l) for l in lines]  # every line is one JSON object
    started = [o for o in objs if o["event"] == "shard_started"]
    assert started and started[0]["stream"] == "s" and started[0]["shard"] == "shardId-000000000000"
    assert started[0]["checkpoint"] == "TRIM_HORIZON" and started[0]["level"] == "info"
    assert all(isinstance(v, str) for o in objs for v in o.values())
    assert any(o["event"] == "worker_stopped" and o["status"] == "0" for o in objs)


def test_lease_metrics_count_takes_handoffs_steals_losses_and_store_calls(env):
    env.write("p.lua", RECORDING_PROCESSOR)
    env.config([{"name": "s", "processor": "p.lua"}], metrics=METRICS)
    env.create_stream("s", 4)
    a = env.worker(name="a")
    pa = metrics_port(a)
    wait_for(lambda: total(get(pa, "/metrics")[1], "shardrun_leases_owned") == 4, what="a owns all 4")
    b = env.worker(name="b")
    pb = metrics_port(b)
    # b asks for its share; a hands two over
    wait_for(lambda: total(get(pb, "/metrics")[1], "shardrun_leases_owned") == 2, timeout=30, what="b owns 2")
    ta, tb = get(pa, "/metrics")[1], get(pb, "/metrics")[1]
    assert total(ta, "shardrun_leases_taken_total") == 4
    assert total(ta, "shardrun_leases_handed_off_total") == 2
    assert total(tb, "shardrun_leases_stolen_total") == 2  # taken from a live owner, gracefully
    assert total(tb, "shardrun_leases_taken_total") == 0
    wait_for(lambda: total(get(pa, "/metrics")[1], "shardrun_lease_store_duration_seconds_count", op="renew") > 0,
             what="renewals timed")
    assert total(ta, "shardrun_lease_store_duration_seconds_count", op="scan") > 0
    assert total(ta, "shardrun_lease_store_errors_total") == 0
    # a pauses past lease_duration: b takes the expired leases, a loses them when it wakes
    a.signal(signal.SIGSTOP)
    try:
        wait_for(lambda: total(get(pb, "/metrics")[1], "shardrun_leases_owned") == 4, timeout=30,
                 what="b takes a's expired leases")
    finally:
        a.signal(signal.SIGCONT)
    assert total(get(pb, "/metrics")[1], "shardrun_leases_taken_total") == 2
    wait_for(lambda: total(get(pa, "/metrics")[1], "shardrun_leases_lost_total") == 2, timeout=30,
             what="a counts its 2 leases lost")
    assert total(get(pa, "/metrics")[1], "shardrun_leases_owned") == 0


class Watch:
    """`shardrun status --watch` under a pseudo-terminal (200 x 40)."""

    def __init__(self, env, config="shardrun.lua"):
        import fcntl
        import pty
        import struct
        import termios
        from conftest import SHARDRUN
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: the real binary on the pty
            os.chdir(env.dir)
            os.execve(SHARDRUN, [SHARDRUN, "status", "-c", config, "--watch"], env.proc_env())
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 200, 0, 0))
        self.out = b""

    def read(self, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            r, _, _ = select.select([self.fd], [], [], 0.1)
            if r:
                try:
                    data = os.read(self.fd, 65536)
                except OSError:
                    return
                if not data:
                    return
                self.out += data

    def frame(self):
        """The last whole frame drawn (from cursor-home to clear-below), as text lines."""
        text = self.out.decode(errors="replace")
        frames = [f.split("\x1b[J")[0] for f in text.split("\x1b[H")[1:] if "\x1b[J" in f]
        return [l.replace("\x1b[K", "").rstrip() for l in (frames[-1] if frames else "").split("\n")]

    def wait_frame(self, pred, timeout=30, what="frame"):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.read(0.3)
            f = self.frame()
            if pred(f):
                return f
        raise AssertionError(f"timed out waiting for {what}; last frame:\n" + "\n".join(self.frame()))

    def quit(self):
        os.write(self.fd, b"q")
        end = time.monotonic() + 10
        while time.monotonic() < end:
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                self.pid = 0  # reaped: kill() must not signal a PID the system may give again
                self.read(0.2)
                return os.waitstatus_to_exitcode(status)
            self.read(0.1)
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        raise AssertionError("status --watch did not quit on q")

    def kill(self):
        """Stops the view if it still runs (after a failed test)."""
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass


def rows(frame, state=None):
    return [l for l in frame if l.startswith("s ") and (state is None or f" {state} " in l)]


def watch_scenario(env, w):
    """A worker runs 3 shards; the view shows each and follows the worker's stop."""
    watch = Watch(env)
    try:
        f = watch.wait_frame(lambda f: len(rows(f, "idle")) + len(rows(f, "processing")) == 3, what="3 owned shards")
        assert f[0].startswith("shardrun status --watch") and "STREAM" in f[1]
        for i in range(3):
            assert any(f"shardId-00000000000{i}" in l for l in rows(f)), f
        assert any(l.startswith("TOTAL 3 shards") for l in f), f
        assert w.stop() == 0  # released: the view updates on its own
        f = watch.wait_frame(lambda f: len(rows(f, "unowned")) == 3, what="3 unowned shards after the stop")
        assert watch.quit() == 0
        assert watch.out.endswith(b"\x1b[?25h\x1b[?1049l")  # the terminal as it was
    finally:
        watch.kill()


def test_status_watch_shows_every_shard_and_updates_over_the_local_store(env):
    env.write("p.lua", RECORDING_PROCESSOR)
    env.config([{"name": "s", "processor": "p.lua"}])
    env.create_stream("s", 3)
    env.put("s", [f"r{i}" for i in range(300)])
    w = env.worker()
    wait_for(lambda: len(read_seen(env.dir / "seen")) == 300, what="records")
    watch_scenario(env, w)


def watch_as_status(env, watch, want):
    """The view's frame once every row shows the state `status --json` gives
    its shard, if status gives the states `want` (in any order); else None."""
    states = {r["shard"]: r["state"] for r in env.status()}
    if sorted(states.values()) != sorted(want):
        return None
    return watch.wait_frame(lambda f: all(any(shard in l and f" {state} " in l for l in rows(f))
                                          for shard, state in states.items()), what=f"the states {states}")


def test_status_watch_names_each_state_as_status_does(env):
    # a parent that halts, its children waiting on it; then the parent
    # finished (resumed with --skip) and its children processing
    env.write("p.lua", HALT_PROCESSOR.replace("ffi.C.usleep(1500 * 1000)", "local _ = 1").replace(
        "return P", 'function P.shardEnded() return "checkpoint" end\nreturn P'))
    env.config([{"name": "s", "processor": "p.lua", "on_error": "halt"}], shard_sync_interval_ms=500)
    env.create_stream("s", 1)
    env.put("s", ["a", "halt me"])
    w = env.worker()
    wait_for(lambda: [r for r in env.status() if r["state"] == "halted"], what="the shard to halt")
    env.run("stream", "split", "s", "shardId-000000000000")
    watch = Watch(env)
    try:
        f = wait_for(lambda: watch_as_status(env, watch, ["halted", "waiting on parent", "waiting on parent"]), 30,
                     what="status: the parent halted, its children waiting on it")
        assert any(l.startswith("TOTAL 3 shards: 0 processing, 0 retrying, 1 halted, 0 idle, 0 finished, 2 other")
                   for l in f), f
        env.run("resume", "s", "--skip")
        f = wait_for(lambda: watch_as_status(env, watch, ["finished", "idle", "idle"]), 30,
                     what="status: the parent finished, its children idle")
        assert any(l.startswith("TOTAL 3 shards: 0 processing, 0 retrying, 0 halted, 2 idle, 1 finished, 0 other")
                   for l in f), f
        assert watch.quit() == 0
    finally:
        watch.kill()
    assert w.stop() == 0


def test_status_watch_counts_a_dead_lettering_shard_with_retrying(env):
    # The dead-letter file is a FIFO nobody reads yet: the write blocks, and
    # the shard stays dead-lettering until the test reads it.
    os.mkfifo(env.dir / "dlq.fifo")
    env.write("p.lua", HALT_PROCESSOR.replace("ffi.C.usleep(1500 * 1000)", "local _ = 1"))
    env.config([{"name": "s", "processor": "p.lua",
                 "on_error": {"retries": 0, "final": "dead_letter", "dead_letter": {"file": "dlq.fifo"}}}])
    env.create_stream("s", 2)
    env.put("s", ["halt me"])
    w = env.worker()
    watch = Watch(env)
    try:
        f = wait_for(lambda: watch_as_status(env, watch, ["dead_lettering", "idle"]), 30,
                     what="status: one shard dead-lettering, the other idle")
        assert any(l.startswith("TOTAL 2 shards: 0 processing, 1 retrying, 0 halted, 1 idle, 0 finished, 0 other")
                   for l in f), f
        with open(env.dir / "dlq.fifo", "rb") as fifo:  # a reader: the write goes through
            assert json.loads(fifo.readline())["data"] == "aGFsdCBtZQ=="  # base64 of "halt me"
        f = wait_for(lambda: watch_as_status(env, watch, ["idle", "idle"]), 30, what="status: both shards idle")
        assert any(l.startswith("TOTAL 2 shards: 0 processing, 0 retrying, 0 halted, 2 idle, 0 finished, 0 other")
                   for l in f), f
        assert watch.quit() == 0
    finally:
        watch.kill()
    assert w.stop() == 0


def test_status_watch_works_over_dynamodb_leases(env, emulators):
    env.extra_env.update(AWS_ENV)
    env.write("p.lua", RECORDING_PROCESSOR)
    env.config([{"name": "s", "processor": "p.lua"}], application=unique("app"),
               leases={"type": "dynamodb", "region": "us-east-1", "endpoint": f"http://127.0.0.1:{DYNALITE_PORT}"})
    env.create_stream("s", 3)
    env.put("s", [f"r{i}" for i in range(30)])
    w = env.worker()
    wait_for(lambda: len(read_seen(env.dir / "seen")) == 30, what="records")
    watch_scenario(env, w)


def test_records_behind_counts_the_local_backlog_down_to_zero(env):
    from conftest import HEX_RECORDING_PROCESSOR
    env.write("p.lua", HEX_RECORDING_PROCESSOR)
    env.extra_env["SLOW_MS"] = "200"  # 75 batches of 20 a shard: about 15 s behind at first (counted from 5 s)
    env.config([{"name": "s", "processor": "p.lua", "max_records": 20}], metrics=METRICS)
    env.create_stream("s", 2)
    env.put("s", [f"r{i}" for i in range(3000)])
    w = env.worker()
    port = metrics_port(w)
    series = lambda: {k: v for k, v in samples(get(port, "/metrics")[1]).items()  # noqa: E731
                      if k.startswith("shardrun_records_behind{")}
    first = wait_for(lambda: (lambda s: s if len(s) == 2 and sum(s.values()) > 0 else None)(series()), timeout=30,
                     what="a backlog counted on both shards")
    assert 0 < sum(first.values()) <= 3000
    wait_for(lambda: len(read_seen(env.dir / "seen")) == 3000, timeout=120, what="every record")
    wait_for(lambda: (lambda s: len(s) == 2 and sum(s.values()) == 0)(series()), timeout=30,
             what="nothing behind once caught up")
    assert w.stop() == 0


def test_aws_http_metrics_count_every_attempt_by_api_class_and_throttle(env, emulators):
    """Kinesis through a proxy that answers some requests 500 and some with a
    throttling error: the worker's counters match what the proxy sent."""
    from aws_helpers import KINESALITE_PORT
    plan = lambda n: "500" if n % 7 == 3 else "throttle" if n % 7 == 5 else "ok"  # noqa: E731
    kp = FaultProxy(KINESALITE_PORT, "ProvisionedThroughputExceededException", plan=plan)
    try:
        proxied_kinesis_project(env, kp, 200, metrics=METRICS)
        w = env.worker()
        port = metrics_port(w)
        wait_for(lambda: len(read_seen(env.dir / "seen")) == 200, timeout=60, what="every record")
        wait_for(lambda: kp.faults["throttle"] >= 3 and kp.faults["500"] >= 3, timeout=30, what="faults injected")
        before = dict(kp.faults)
        text = get(port, "/metrics")[1]
        after = dict(kp.faults)
        # every faulted answer the proxy sent is one attempt counted (each reaches the worker before the scrape,
        # or is still on its way)
        got_throttled = total(text, "shardrun_aws_throttled_total")
        got_500 = total(text, "shardrun_aws_requests_total", code_class="5xx")
        assert before["throttle"] - 4 <= got_throttled <= after["throttle"], (got_throttled, before, after)
        assert before["500"] - 4 <= got_500 <= after["500"], (got_500, before, after)
        assert total(text, "shardrun_aws_requests_total", api="GetRecords", code_class="2xx") > 0
        assert total(text, "shardrun_aws_requests_total", api="Scan", code_class="2xx") > 0  # the lease table
        assert total(text, "shardrun_aws_request_duration_seconds_count", api="GetRecords") == \
            total(text, "shardrun_aws_requests_total", api="GetRecords")
        r = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(), capture_output=True, timeout=60)
        assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), (r.stdout + r.stderr).decode()
        assert w.stop() == 0
    finally:
        kp.close()



def test_sighup_applies_log_format_and_refuses_a_metrics_change(env):
    env.write("p.lua", RECORDING_PROCESSOR)
    env.config([{"name": "s", "processor": "p.lua"}], metrics=METRICS)
    env.create_stream("s", 1)
    w = env.worker()
    port = metrics_port(w)
    env.config([{"name": "s", "processor": "p.lua"}], metrics={"listen": "127.0.0.1:1"}, log_format="json")
    w.signal(signal.SIGHUP)

    def json_lines():
        return [json.loads(l) for l in w.logs().splitlines() if l.startswith("{")]
    refused = wait_for(lambda: [o for o in json_lines() if o["event"] == "config_reload_refused"], what="refusal")
    assert "metrics" in refused[0]["fields"]
    assert any(o["event"] == "config_reloaded" for o in json_lines())  # the log is JSON from then on
    assert get(port, "/healthz")[0] == 200  # still serving where it was
    assert w.stop() == 0


def test_status_watch_started_before_any_worker_waits_for_the_leases(env):
    env.write("p.lua", RECORDING_PROCESSOR)
    env.config([{"name": "s", "processor": "p.lua"}])
    env.create_stream("s", 3)
    watch = Watch(env)
    try:
        watch.wait_frame(lambda f: any("no lease file" in l and "waiting for it" in l for l in f), what="waiting")
        assert not (env.dir / "leases.db").exists()  # it creates nothing
        w = env.worker()
        watch.wait_frame(lambda f: len(rows(f)) == 3 and not rows(f, "unowned"), what="the worker's 3 shards")
        assert watch.quit() == 0
        assert w.stop() == 0
    finally:
        watch.kill()
