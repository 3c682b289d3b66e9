#!/usr/bin/env python3
"""The AWS emulators, kinesalite (Kinesis) and dynalite (DynamoDB), and
kinesis-mock (Kinesis with enhanced fan-out): one fixture for the integration
tests and the benchmarks, and the command behind scripts/emulators.sh.

    python3 scripts/emulators.py install   npm packages (all three; a no-op when present)
    python3 scripts/emulators.py start     start kinesalite and dynalite (idempotent), wait until they answer
    python3 scripts/emulators.py stop      stop all three, by the PIDs `start` saved
    python3 scripts/emulators.py status    say what runs where; exit 1 if kinesalite or dynalite is down
    python3 scripts/emulators.py kinesis-mock install|start|stop|status
                                           the same for kinesis-mock alone (`start` above
                                           leaves it out: it costs ~200 MB and only the
                                           fan-out tests need it)

From Python (tests/integration/conftest.py, scripts/bench.py):

    with emulators.Session() as s:      # starts only what does not answer yet
        ...                              # s.started: the names this session started
                                         # leaving stops only those, by their PIDs

Both listen on 127.0.0.1 only (kinesalite's own CLI binds every interface, so
they are started from a few lines of Node instead), keep everything in memory
(a restart is a clean slate), and take their ports from KINESALITE_PORT
(default 4567) and DYNALITE_PORT (default 4568). PIDs and logs:
.deps/run/<name>-<port>.{pid,log}.

kinesis-mock (npm kinesis-local, a Scala.js program run by Node, no JVM) is
installed into a prefix of its own, .deps/kinesis-mock, and serves two ports:
KINESIS_MOCK_PORT (default 4569; HTTP/1.1, or h2c with prior knowledge: an
`Upgrade: h2c` POST gets 101 and then no answer) and KINESIS_MOCK_TLS_PORT
(default 4570; TLS with a self-signed certificate for 127.0.0.1 made at the
first start, .deps/run/kinesis-mock-<port>.cert.pem, ALPN h2 and http/1.1). Its CLI binds every interface, so a few lines of Node bind its
servers to 127.0.0.1 (and refuse to run otherwise) and exit at once on SIGTERM
(its own graceful stop waits forever on HTTP/2 connections clients left).
Nothing is persisted and its environment is built from nothing, so a caller's
AWS_REGION and the like cannot leak in. KINESIS_MOCK_LOG_LEVEL=DEBUG makes it
log every request with its action (tests count GetRecords calls that way).
Its quirks (events every second, no ChildShards, a hard 5-minute subscription
end, ...) are listed in docs-efo-notes.md.

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
import ssl
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

    # How it is installed and started: an npm module whose export makes a
    # server, run by NODE_MAIN (KinesisMock overrides these).
    prefix = NODE_PREFIX

    @property
    def package(self):
        return self.name

    def launch(self):
        """(argv, env, cwd) of the process that serves it."""
        return (["node", "-e", NODE_MAIN, self.name, str(self.port), json.dumps(self.options())],
                dict(os.environ, NODE_PATH=str(NODE_PREFIX / "node_modules")), None)

    def answers(self):
        """Whether its API answers on its port."""
        try:
            return call(self, self.probe_op, {}, timeout=2)[0] == 200
        except (OSError, ValueError, http.client.HTTPException):
            return False

    def where(self):
        return self.url


KINESALITE = Emulator("kinesalite", "3.3.3", "KINESALITE_PORT", 4567, "Kinesis_20131202", "1.1", "kinesis",
                      "ListStreams", ("createStreamMs", "deleteStreamMs", "updateStreamMs"), (("shardLimit", 1000),))
DYNALITE = Emulator("dynalite", "4.0.0", "DYNALITE_PORT", 4568, "DynamoDB_20120810", "1.0", "dynamodb",
                    "ListTables", ("createTableMs", "deleteTableMs", "updateTableMs"))
ALL = (KINESALITE, DYNALITE)

# kinesis-mock's simulated delays (environment variables <NAME>_DURATION), all
# set to STREAM_DELAY_MS instead of 500 ms.
KINESIS_MOCK_DELAYS = ("CREATE_STREAM", "DELETE_STREAM", "REGISTER_STREAM_CONSUMER", "DEREGISTER_STREAM_CONSUMER",
                       "START_STREAM_ENCRYPTION", "STOP_STREAM_ENCRYPTION", "MERGE_SHARDS", "SPLIT_SHARD",
                       "UPDATE_SHARD_COUNT", "UPDATE_STREAM_MODE")

# Node program that runs kinesis-mock's main.js with every server it opens
# bound to 127.0.0.1 (it asks for 0.0.0.0), refusing to run otherwise.
KINESIS_MOCK_MAIN = r'''
const net = require('net');
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === 'number') {
    if (args.length === 1 || typeof args[1] === 'function') args.splice(1, 0, '127.0.0.1');
    else if (typeof args[1] === 'string') args[1] = '127.0.0.1';
  }
  this.once('listening', () => {
    const a = this.address();
    if (!a || a.address !== '127.0.0.1') {
      console.error(`kinesis-mock: refusing to run: a server listens on ${JSON.stringify(a)}, not 127.0.0.1`);
      process.exit(1);
    }
    console.log(`kinesis-mock listening on 127.0.0.1:${a.port}`);
  });
  return listen.apply(this, args);
};
// Nothing is persisted, so there is nothing to wait for.
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
require(process.argv[1]);
'''


@dataclass(frozen=True)
class KinesisMock(Emulator):
    """kinesis-mock: not an npm module whose export starts a server but a
    program (main.js) configured by its environment, with a plain and a TLS port."""
    tls_port_env: str = "KINESIS_MOCK_TLS_PORT"
    tls_default_port: int = 4570
    prefix = ROOT / ".deps" / "kinesis-mock"

    @property
    def package(self):
        return "kinesis-local"

    @property
    def tls_port(self):
        return int(os.environ.get(self.tls_port_env, str(self.tls_default_port)))

    @property
    def tls_url(self):
        return f"https://127.0.0.1:{self.tls_port}"

    @property
    def ca_file(self):
        """The PEM certificate its TLS port presents (for a client's ca_file)."""
        return self.files("cert.pem")

    def make_certificate(self):
        """A self-signed certificate for 127.0.0.1 and localhost, written once:
        the package's own has no subject alternative name, so a client that
        verifies the host (shardrun always does) would refuse it. Returns the
        JSON file kinesis-mock reads (KINESIS_MOCK_CERT_PATH)."""
        pem, key, js = self.ca_file, self.files("key.pem"), self.files("cert.json")
        if not (pem.exists() and js.exists()):
            r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "36500",
                                "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                                "-keyout", str(key), "-out", str(pem)], capture_output=True, text=True)
            if r.returncode:
                raise EmulatorError(f"openssl could not make kinesis-mock's certificate: {r.stderr.strip()}")
            js.write_text(json.dumps({"server": {"key": key.read_text(), "cert": pem.read_text()}}))
        return js

    def launch(self):
        pkg = self.prefix / "node_modules" / self.package
        data = RUN_DIR / f"{self.name}-{self.port}-data"   # its working directory: stays empty
        data.mkdir(parents=True, exist_ok=True)
        cert = self.make_certificate()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"),
               "KINESIS_MOCK_PLAIN_PORT": str(self.port), "KINESIS_MOCK_TLS_PORT": str(self.tls_port),
               "KINESIS_MOCK_CERT_PATH": str(cert),
               "SHOULD_PERSIST_DATA": "false", "LOAD_DATA_IF_EXISTS": "false", "PERSIST_PATH": str(data),
               "SHARD_LIMIT": "1000", "AWS_REGION": "us-east-1", "AWS_ACCOUNT_ID": "000000000000",
               "LOG_LEVEL": os.environ.get("KINESIS_MOCK_LOG_LEVEL", "INFO"), "ROOT_LOG_LEVEL": "ERROR"}
        env.update({f"{d}_DURATION": f"{STREAM_DELAY_MS}ms" for d in KINESIS_MOCK_DELAYS})
        return ["node", "-e", KINESIS_MOCK_MAIN, str(pkg / "main.js")], env, data

    def answers(self):
        """Both ports answer /healthcheck (the TLS one verified with the certificate made for it)."""
        if self.ca_file.exists():
            ctx = ssl.create_default_context(cafile=str(self.ca_file))
        else:   # started elsewhere, before any certificate was made here
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        for c in (http.client.HTTPConnection("127.0.0.1", self.port, timeout=2),
                  http.client.HTTPSConnection("127.0.0.1", self.tls_port, timeout=2, context=ctx)):
            try:
                c.request("GET", "/healthcheck")
                if c.getresponse().status != 200:
                    return False
            except (OSError, http.client.HTTPException):
                return False
            finally:
                c.close()
        return True

    def where(self):
        return f"{self.url}, {self.tls_url}"


KINESIS_MOCK = KinesisMock("kinesis-mock", "0.6.2", "KINESIS_MOCK_PORT", 4569, "Kinesis_20131202", "1.1", "kinesis",
                           "ListStreams", ())
EVERY = ALL + (KINESIS_MOCK,)     # what install and stop cover


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
    """Whether the emulator answers on its port(s)."""
    return emu.answers()


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
        return json.loads((emu.prefix / "node_modules" / emu.package / "package.json").read_text()).get("version")
    except (OSError, ValueError):
        return None


def install(emus=EVERY, quiet=False):
    """npm packages into their prefixes (.deps/node; kinesis-mock in
    .deps/kinesis-mock); a no-op when the pinned versions are there."""
    missing = [e for e in emus if installed_version(e) != e.version]
    if not missing:
        if not quiet:
            say(" and ".join(f"{e.name} {e.version}" for e in emus) + " already installed")
        return
    for tool in ("node", "npm"):
        if subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True).returncode:
            raise EmulatorError(f"{tool} is not installed (apt-get install nodejs npm)")
    for prefix in sorted({e.prefix for e in missing}):
        pkgs = [f"{e.package}@{e.version}" for e in missing if e.prefix == prefix]
        prefix.mkdir(parents=True, exist_ok=True)
        say(f"npm install {' '.join(pkgs)} into {prefix}")
        # Native LevelDB bindings are optional: in-memory stores need none of them.
        r = subprocess.run(["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund",
                            "--omit=optional", "--save-exact", *pkgs])
        if r.returncode:
            raise EmulatorError("npm install failed (see the output above)")
    for e in missing:
        if installed_version(e) != e.version:
            raise EmulatorError(f"{e.name} {e.version} not installed in {e.prefix}")


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
        raise EmulatorError(f"something already answers on {emu.where()}; stop it or set {emu.port_env}")
    if installed_version(emu) is None:
        raise EmulatorError(f"{emu.name} is not installed; run: scripts/emulators.sh install")
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    log = emu.files("log")
    argv, env, cwd = emu.launch()
    with open(log, "wb") as out:
        # a session of its own: the emulator must not die with the shell (or CI step) that started it
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                             cwd=cwd, start_new_session=True)
    _children[p.pid] = p
    emu.files("pid").write_text(f"{p.pid}\n")
    deadline = time.monotonic() + START_TIMEOUT_S
    while not answers(emu):
        if p.poll() is not None:
            emu.files("pid").unlink(missing_ok=True)
            raise EmulatorError(f"{emu.name} exited during start (status {p.returncode}); log {log}:\n{_tail(log)}")
        if time.monotonic() > deadline:
            stop(emu, p.pid)
            raise EmulatorError(f"{emu.name} (pid {p.pid}) did not answer on {emu.where()} within "
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
                    install((e,), quiet=True)
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


def cmd_start(emus):
    install(emus, quiet=True)
    for e in emus:
        pid = saved_pid(e)
        if pid is not None:
            if not answers(e):
                raise EmulatorError(f"{e.name} (pid {pid}) runs but does not answer on {e.where()}; "
                                    f"see {e.files('log')}")
            say(f"{e.name} already running (pid {pid}, {e.where()})")
            continue
        pid = start(e)
        say(f"{e.name} {e.version} started (pid {pid}, {e.where()})")
    return 0


def cmd_stop(emus):
    for e in emus:
        pid = saved_pid(e)
        if pid is None:
            e.files("pid").unlink(missing_ok=True)
            say(f"{e.name} not running (no live pid in {e.files('pid')})")
            continue
        stop(e, pid)
        say(f"{e.name} stopped (pid {pid})")
    return 0


def cmd_status(emus):
    rc = 0
    for e in emus:
        pid, up = saved_pid(e), answers(e)
        if up:
            say(f"{e.name} running ({f'pid {pid}' if pid else 'not started here'}, {e.where()})")
        else:
            rc = 1
            say(f"{e.name} pid {pid} alive but not answering on {e.where()}" if pid
                else f"{e.name} not running")
    return rc


def main(argv):
    args = argv[1:]
    # `install` and `stop` cover kinesis-mock too; `start` and `status` do not
    emus = {"install": EVERY, "start": ALL, "stop": EVERY, "status": ALL}
    if len(args) == 2 and args[0] == KINESIS_MOCK.name:
        args, emus = args[1:], dict.fromkeys(emus, (KINESIS_MOCK,))
    cmd = args[0] if len(args) == 1 else ""
    try:
        if cmd == "install":
            install(emus[cmd])
            return 0
        if cmd in ("start", "stop", "status"):
            return {"start": cmd_start, "stop": cmd_stop, "status": cmd_status}[cmd](emus[cmd])
        print(f"usage: {argv[0]} install|start|stop|status | kinesis-mock install|start|stop|status",
              file=sys.stderr)
        return 2
    except EmulatorError as ex:
        print(f"emulators: error: {ex}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
