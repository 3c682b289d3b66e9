"""Helpers for the observability tests: a worker's metrics endpoint, and a real
Prometheus server (Debian's `prometheus` package) started on 127.0.0.1 with a
generated scrape config and a temporary storage folder, stopped by PID."""
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from conftest import ROOT, Worker, wait_for

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def faults_binary():
    """The test build with the fault hooks (make faults). Built here when the
    Makefile did not name one, so pytest run by hand finds it too."""
    path = os.environ.get("SHARDRUN_FAULTS")
    if path:
        return path
    r = subprocess.run(["make", "-C", str(ROOT), "--no-print-directory", "faults"], capture_output=True, timeout=600)
    if r.returncode:
        raise AssertionError(f"make faults failed:\n{r.stdout.decode()}{r.stderr.decode()}")
    return str(ROOT / "build-faults" / "shardrun")


class FaultsWorker(Worker):
    """A `shardrun run` of the test build (faults_binary)."""

    def __init__(self, env, args, name):
        super().__init__(env, args, name, binary=faults_binary())
        env.workers.append(self)


def metrics_port(worker, timeout=30):
    """The port the worker's metrics server bound (metrics.listen port 0: the OS chose)."""
    ev = wait_for(lambda: worker.events("metrics_listening"), timeout=timeout, what="metrics_listening")
    return int(ev[0]["port"])


def get(port, path, timeout=10):
    """(status, body text) of GET http://127.0.0.1:port/path."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def samples(text):
    """{series: value} of an exposition (series as written, labels included)."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def total(text, name, **labels):
    """Sum of the samples of metric `name` whose labels include `labels`."""
    want = [f'{k}="{v}"' for k, v in labels.items()]
    s = 0.0
    for series, v in samples(text).items():
        base = series.split("{", 1)[0]
        if base == name and all(w in series for w in want):
            s += v
    return s


def free_port(lo=19400, hi=19499):
    """A port of this helper's range that nothing listens on now."""
    for port in range(lo, hi + 1):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise AssertionError(f"no free port in {lo}-{hi}")


class Prometheus:
    """A Prometheus server scraping `targets` (host:port) every second."""

    def __init__(self, folder, targets):
        if not os.path.exists(PROMETHEUS):
            raise AssertionError("prometheus is not installed: `make deps` installs Debian's package")
        self.dir = Path(folder)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        cfg = self.dir / "prometheus.yml"
        cfg.write_text("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                       "scrape_configs:\n  - job_name: shardrun\n    static_configs:\n"
                       f"      - targets: {json.dumps(targets)}\n")
        self.log = open(self.dir / "prometheus.log", "ab")
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={cfg}", f"--storage.tsdb.path={self.dir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=self.dir)
        wait_for(self._ready, timeout=60, interval=0.2, what="prometheus ready")

    def _ready(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited {self.proc.returncode}:\n"
                                 f"{(self.dir / 'prometheus.log').read_text()[-2000:]}")
        try:
            return get(self.port, "/-/ready", timeout=2)[0] == 200
        except OSError:
            return False

    def query(self, q):
        """The value of an instant query with one result, or None (no data yet)."""
        status, body = get(self.port, "/api/v1/query?" + urllib.parse.urlencode({"query": q}))
        assert status == 200, body
        res = json.loads(body)["data"]["result"]
        return float(res[0]["value"][1]) if res else None

    def wait_value(self, q, want, timeout=30):
        """Waits until query q answers exactly `want`; returns the last answer either way."""
        deadline = time.monotonic() + timeout
        v = None
        while time.monotonic() < deadline:
            v = self.query(q)
            if v == want:
                return v
            time.sleep(0.25)
        return v

    def targets_up(self):
        status, body = get(self.port, "/api/v1/targets")
        return [t for t in json.loads(body)["data"]["activeTargets"] if t["health"] == "up"]

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.log.close()
