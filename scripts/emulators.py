#!/usr/bin/env python3
"""The AWS emulators, kinesalite (Kinesis) and dynalite (DynamoDB): one
fixture for the integration tests and the benchmarks, and the command
behind scripts/emulators.sh.

    python3 scripts/emulators.py install   npm packages into .deps/node (a no-op when present)
    python3 scripts/emulators.py start     start both (idempotent), wait until they answer
    python3 scripts/emulators.py stop      stop both, by the PIDs `start` saved
    python3 scripts/emulators.py status    say what runs where; exit 1 if either is down

From Python (tests/integration/conftest.py, scripts/bench.py):

    with emulators.Session() as s:      # starts only what does not answer yet
        ...                              # s.started: the names this session started
                                         # leaving stops only those, by their PIDs

Both listen on 127.0.0.1 only (kinesalite's own CLI binds every interface, so
they are started from a few lines of Node instead), keep everything in memory
(a restart is a clean slate), and take their ports from KINESALITE_PORT
(default 4567) and DYNALITE_PORT (default 4568). PIDs and logs:
.deps/run/<name>-<port>.{pid,log}.

Known kinesalite quirks the runtime must tolerate (or tests must avoid):
  - GetRecords never returns ChildShards, even at the end of a closed shard:
    shard sync has to find children through ListShards (ParentShardId).
  - GetShardIterator AT_TIMESTAMP on an empty shard may never answer;
    requests need a timeout, and tests should not depend on that case.
  - Base64 is strict: Data must be canonical, padded base64, or the call
    fails with a SerializationException.
  - Stream create/delete/update delays are simulated; they are set small here
    (STREAM_DELAY_MS, default 10 ms) so tests need not wait.
"""
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NODE_PREFIX = ROOT / ".deps" / "node"
RUN_DIR = ROOT / ".deps" / "run"
STREAM_DELAY_MS = int(os.environ.get("STREAM_DELAY_MS", "10"))
START_TIMEOUT_S = float(os.environ.get("START_TIMEOUT_S", "20"))

# Credentials and region for processes that talk to the emulators: they accept
# any well-formed signature, and nothing leaves 127.0.0.1.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIDSHARDRUNTEST",
    "AWS_SECRET_ACCESS_KEY": "shardrun-test-secret",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_REGION": "us-east-1",
}


@dataclass(frozen=True)
class Emulator:
    name: str            # npm package and module name
    version: str         # pinned: known to run on Node 20 (dynalite 4 requires Node >= 20)
    port_env: str
    default_port: int
    target_prefix: str   # X-Amz-Target prefix of its API
    json_version: str    # application/x-amz-json-<version>
    service: str         # SigV4 service name
    probe_op: str        # a cheap call that answers once the server is up
    delays: tuple        # option names of its simulated delays (set to STREAM_DELAY_MS)
    extra: tuple = ()    # further (option, value) pairs

    @property
    def port(self):
        return int(os.environ.get(self.port_env, str(self.default_port)))

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def options(self):
        opts = {k: STREAM_DELAY_MS for k in self.delays}
        opts.update(self.extra)
        return opts

    def files(self, ext):
        return RUN_DIR / f"{self.name}-{self.port}.{ext}"


KINESALITE = Emulator("kinesalite", "3.3.3", "KINESALITE_PORT", 4567, "Kinesis_20131202", "1.1", "kinesis",
                      "ListStreams", ("createStreamMs", "deleteStreamMs", "updateStreamMs"), (("shardLimit", 1000),))
DYNALITE = Emulator("dynalite", "4.0.0", "DYNALITE_PORT", 4568, "DynamoDB_20120810", "1.0", "dynamodb",
                    "ListTables", ("createTableMs", "deleteTableMs", "updateTableMs"))
ALL = (KINESALITE, DYNALITE)


class EmulatorError(RuntimeError):
    pass


_children = {}   # pid -> Popen of each emulator this process started (and has not stopped)


def call(emu, op, body, timeout=30):
    """One API call to an emulator, shaped like an SDK's: the emulators check
    that an Authorization header is present and well-formed, not the
    signature. Returns (HTTP status, parsed JSON body)."""
    headers = {
        "Content-Type": f"application/x-amz-json-{emu.json_version}",
        "X-Amz-Target": f"{emu.target_prefix}.{op}",
        "X-Amz-Date": "20240101T000000Z",
        "Authorization": f"AWS4-HMAC-SHA256 Credential={AWS_ENV['AWS_ACCESS_KEY_ID']}/20240101/us-east-1/"
                         f"{emu.service}/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, "
                         "Signature=0000",
    }
    c = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=timeout)   # never a proxy
    try:
        c.request("POST", "/", json.dumps(body), headers)
        r = c.getresponse()
        data = r.read()
        return r.status, (json.loads(data) if data else {})
    finally:
        c.close()


def answers(emu):
    """Whether the emulator's API answers on its port."""
    try:
        return call(emu, emu.probe_op, {}, timeout=2)[0] == 200
    except (OSError, ValueError, http.client.HTTPException):
        return False


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def saved_pid(emu):
    """The PID saved by a start on this port, if that process is alive."""
    try:
        pid = int(emu.files("pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def installed_version(emu):
    try:
        return json.loads((NODE_PREFIX / "node_modules" / emu.name / "package.json").read_text()).get("version")
    except (OSError, ValueError):
        return None


def install(quiet=False):
    """npm packages into .deps/node; a no-op when the pinned versions are there."""
    if all(installed_version(e) == e.version for e in ALL):
        if not quiet:
            say(" and ".join(f"{e.name} {e.version}" for e in ALL) + f" already installed in {NODE_PREFIX}")
        return
    for tool in ("node", "npm"):
        if subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True).returncode:
            raise EmulatorError(f"{tool} is not installed (apt-get install nodejs npm)")
    NODE_PREFIX.mkdir(parents=True, exist_ok=True)
    pkgs = [f"{e.name}@{e.version}" for e in ALL]
    say(f"npm install {' '.join(pkgs)} into {NODE_PREFIX}")
    # Native LevelDB bindings are optional: in-memory stores need none of them.
    r = subprocess.run(["npm", "install", "--prefix", str(NODE_PREFIX), "--no-audit", "--no-fund",
                        "--omit=optional", *pkgs])
    if r.returncode:
        raise EmulatorError("npm install failed (see the output above)")
    for e in ALL:
        if installed_version(e) != e.version:
            raise EmulatorError(f"{e.name} {e.version} not installed in {NODE_PREFIX}")


# Node program for one emulator: module name, port, options as JSON.
NODE_MAIN = r'''
const [mod, port, opts] = process.argv.slice(1);
const server = require(mod)(JSON.parse(opts));
server.on('error', (e) => { console.error(`${mod}: ${e.message}`); process.exit(1); });
server.listen(Number(port), '127.0.0.1', () => console.log(`${mod} listening on 127.0.0.1:${port}`));
const bye = () => server.close(() => process.exit(0));
process.on('SIGTERM', bye);
process.on('SIGINT', bye);
'''


def _tail(path, n=20):
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def start(emu):
    """Starts the emulator on 127.0.0.1 and waits until it answers; returns its PID.
    Refuses when its port answers already (use `answers` first)."""
    if answers(emu):
        raise EmulatorError(f"something already answers on 127.0.0.1:{emu.port}; stop it or set {emu.port_env}")
    if installed_version(emu) is None:
        raise EmulatorError(f"{emu.name} is not installed; run: scripts/emulators.sh install")
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    log = emu.files("log")
    env = dict(os.environ, NODE_PATH=str(NODE_PREFIX / "node_modules"))
    with open(log, "wb") as out:
        # a session of its own: the emulator must not die with the shell (or CI step) that started it
        p = subprocess.Popen(["node", "-e", NODE_MAIN, emu.name, str(emu.port), json.dumps(emu.options())],
                             stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                             start_new_session=True)
    _children[p.pid] = p
    emu.files("pid").write_text(f"{p.pid}\n")
    deadline = time.monotonic() + START_TIMEOUT_S
    while not answers(emu):
        if p.poll() is not None:
            emu.files("pid").unlink(missing_ok=True)
            raise EmulatorError(f"{emu.name} exited during start (status {p.returncode}); log {log}:\n{_tail(log)}")
        if time.monotonic() > deadline:
            stop(emu, p.pid)
            raise EmulatorError(f"{emu.name} (pid {p.pid}) did not answer on 127.0.0.1:{emu.port} within "
                                f"{START_TIMEOUT_S:g} s; log {log}:\n{_tail(log)}")
        time.sleep(0.1)
    return p.pid


def stop(emu, pid):
    """Stops the emulator process `pid` (SIGTERM, then SIGKILL after 5 s) and
    forgets its pid file if the file names that PID."""
    child = _children.pop(pid, None)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    if not _wait_gone(pid, child, 5):
        say(f"{emu.name} (pid {pid}) ignored SIGTERM for 5 s; sending SIGKILL")
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _wait_gone(pid, child, 5)
    if saved_pid(emu) in (pid, None):
        emu.files("pid").unlink(missing_ok=True)


def _wait_gone(pid, child, timeout):
    """Waits for `pid` to exit: our own child is reaped, anyone else's is polled."""
    if child is not None:
        try:
            child.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


class Session:
    """Makes sure both emulators answer: starts each one that does not (and
    only those), and on close stops exactly what it started, by PID. An
    emulator that was already running, whoever started it, is used and left
    running."""

    def __init__(self, emus=ALL):
        self.emus = emus
        self.started = {}     # name -> pid

    def __enter__(self):
        try:
            for e in self.emus:
                if not answers(e):
                    install(quiet=True)
                    self.started[e.name] = start(e)
        except BaseException:
            self.close()
            raise
        return self

    def close(self):
        for e in self.emus:
            pid = self.started.pop(e.name, None)
            if pid is not None:
                stop(e, pid)

    def __exit__(self, *exc):
        self.close()


def say(msg):
    print(f"emulators: {msg}", flush=True)


def main(argv):
    cmd = argv[1] if len(argv) == 2 else ""
    try:
        if cmd == "install":
            install()
        elif cmd == "start":
            install(quiet=True)
            for e in ALL:
                pid = saved_pid(e)
                if pid is not None:
                    if not answers(e):
                        raise EmulatorError(f"{e.name} (pid {pid}) runs but does not answer on 127.0.0.1:{e.port}; "
                                            f"see {e.files('log')}")
                    say(f"{e.name} already running (pid {pid}, 127.0.0.1:{e.port})")
                    continue
                pid = start(e)
                say(f"{e.name} {e.version} started (pid {pid}, 127.0.0.1:{e.port})")
        elif cmd == "stop":
            for e in ALL:
                pid = saved_pid(e)
                if pid is None:
                    e.files("pid").unlink(missing_ok=True)
                    say(f"{e.name} not running (no live pid in {e.files('pid')})")
                    continue
                stop(e, pid)
                say(f"{e.name} stopped (pid {pid})")
        elif cmd == "status":
            rc = 0
            for e in ALL:
                pid, up = saved_pid(e), answers(e)
                if up:
                    say(f"{e.name} running ({f'pid {pid}' if pid else 'not started here'}, {e.url})")
                else:
                    rc = 1
                    say(f"{e.name} pid {pid} alive but not answering on 127.0.0.1:{e.port}" if pid
                        else f"{e.name} not running")
            return rc
        else:
            print(f"usage: {argv[0]} install|start|stop|status", file=sys.stderr)
            return 2
    except EmulatorError as ex:
        print(f"emulators: error: {ex}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
