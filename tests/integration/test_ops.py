"""From first try to production host (issue 17).

README's quick start run verbatim in a fresh copy of the tree; `shardrun
init` -> `shardrun test` -> `shardrun run --drain`; config errors with lines
and suggestions; the tree `make install DESTDIR=...` writes, running a drain
with no source tree around it; the systemd unit (systemd-analyze verify) and
the sd_notify protocol; the Debian package installed with dpkg -i and removed.
"""
import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from aws_helpers import AWS_ENV, DYNALITE_PORT, KINESALITE_PORT, unique
from conftest import ASAN, ROOT, SHARDRUN, child_env, parse_log_line, wait_for


def proc_env(**extra):
    """The caller's environment without AWS settings and proxies (as conftest's Env), then `extra`."""
    return child_env(extra)


def run(args, cwd, timeout=300, env=None, check=True):
    r = subprocess.run(args, cwd=cwd, capture_output=True, timeout=timeout, env=env or proc_env())
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} exited {r.returncode}:\n"
                             f"{r.stdout.decode(errors='replace')}\n{r.stderr.decode(errors='replace')}")
    return r


def out(r):
    return r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")


def fresh_copy(dest):
    """What a fresh clone holds (tracked files plus new, not ignored ones), and
    the build already made here (timestamps kept, so `make` has nothing to do),
    in dest; .deps (what `make deps` built) is linked. Without git: the tree
    minus the build, data and git folders."""
    dest.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True)
    if r.returncode == 0:
        for name in r.stdout.decode().split("\0"):
            src = ROOT / name
            if name and src.is_file():
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / name)
    else:
        def ignore(folder, names):
            top = Path(folder) == ROOT
            return [n for n in names if n in ("__pycache__", "data") or
                    (top and (n.startswith("build") or n in ("shardrun", ".git", ".deps")))]
        shutil.copytree(ROOT, dest, dirs_exist_ok=True, symlinks=True, ignore=ignore)
    for built in ("build", "shardrun"):
        src = ROOT / built
        if src.is_file():
            shutil.copy2(src, dest / built)
        elif src.is_dir():
            shutil.copytree(src, dest / built, symlinks=True)
    if (ROOT / ".deps").exists():  # make deps' LuaJIT and emulators: shared, not copied
        (dest / ".deps").symlink_to(ROOT / ".deps")
    return dest


def readme_block(heading):
    """The first ```sh block under the README heading `heading`."""
    text = (ROOT / "README.md").read_text()
    m = re.search(r"^## " + re.escape(heading) + r"\n(.*?)^```sh\n(.*?)^```", text, re.M | re.S)
    assert m, f"README.md has no ```sh block under '## {heading}'"
    return m.group(2)


# ---- the README quick start ------------------------------------------------------

def test_readme_quick_start_runs_verbatim_on_a_fresh_copy(tmp_path):
    copy = fresh_copy(tmp_path / "shardrun")
    assert not (copy / "examples/wordcount/data").exists()  # as in a fresh clone
    script = readme_block("Quick start (local stream, no cloud)")
    (tmp_path / "quickstart.sh").write_text(script)
    r = run(["bash", "-euo", "pipefail", str(tmp_path / "quickstart.sh")], cwd=copy, timeout=900)
    # status: four shards, each checkpointed, nothing behind
    rows = [l.split() for l in r.stdout.decode().splitlines() if l.startswith("words ")]
    assert len(rows) == 4, out(r)
    assert all(row[-1] == "0" for row in rows), out(r)
    # the word counts cover every line once: 10000 x "hello", 10000 x "world"
    hello = 0
    for f in (copy / "examples/wordcount/data").glob("words.*.counts"):
        for line in f.read_text().splitlines()[1:]:
            w, n = line.split("\t")
            hello += int(n) if w == "hello" else 0
    assert hello == 10000, out(r)


# ---- config errors: line, suggestion, plain words --------------------------------

CONFIG_HEAD = '''application = "test"
source = { type = "local", path = "data/streams.db" }
leases = { type = "local", path = "data/leases.db" }
'''


def config_error(tmp_path, text):
    (tmp_path / "p.lua").write_text("return { processRecords = function() end }\n")
    (tmp_path / "shardrun.lua").write_text(CONFIG_HEAD + text)
    r = run([SHARDRUN, "run", "--drain"], cwd=tmp_path, check=False)
    assert r.returncode == 2, out(r)
    assert not (tmp_path / "data").exists()  # a refused config touches nothing
    return r.stderr.decode().strip()


def test_a_misspelt_field_is_named_with_its_line_and_the_field_meant(tmp_path):
    msg = config_error(tmp_path, 'streams = {\n  { name = "a",\n    procesor = "p.lua" },\n}\n')
    assert msg == "shardrun: shardrun.lua:6: streams[1].procesor: unknown field (did you mean `processor`?)"


def test_streams_nested_one_level_too_deep_is_told_plainly(tmp_path):
    msg = config_error(tmp_path, 'streams = { {\n  { name = "a", processor = "p.lua" },\n} }\n')
    assert msg.startswith("shardrun: shardrun.lua:4: streams[1]: expected a stream table (name = ..., processor = "
                          "...), got a list of tables: one pair of braces too many?"), msg
    assert "non-name key" not in msg


def test_a_wrong_value_names_the_line_of_its_field(tmp_path):
    msg = config_error(tmp_path, 'streams = {\n  { name = "a", processor = "p.lua",\n'
                                 '    initial_position = "OLDEST" },\n}\n')
    assert msg == ('shardrun: shardrun.lua:6: streams[1].initial_position: expected TRIM_HORIZON, LATEST or '
                   'AT_TIMESTAMP, got "OLDEST"')


# ---- shardrun init -> shardrun test -> the printed commands -----------------------

def printed_commands(init_output):
    """The commands `init` prints under "run it:", as a shell script."""
    text = init_output.split("run it:\n", 1)[1]
    return "".join(line.strip() + "\n" for line in text.splitlines() if line.strip())


def path_with(binary):
    return f"{Path(binary).resolve().parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"


def drained(log):
    """The worker_drained event of a run's log."""
    evs = [parse_log_line(l) for l in log.splitlines()]
    evs = [e for e in evs if e and e.get("event") == "worker_drained"]
    assert evs, log
    return evs[-1]


def test_init_writes_a_project_whose_spec_passes_and_whose_printed_commands_run_it(tmp_path):
    r = run([SHARDRUN, "init", "orders"], cwd=tmp_path)
    proj = tmp_path / "orders"
    for f in ("shardrun.lua", "processor.lua", "spec/processor_spec.lua", ".gitignore"):
        assert (proj / f).is_file(), f
    processor = (proj / "processor.lua").read_text()
    for cb in ("initialize", "processRecords", "shardEnded", "leaseLost", "shutdownRequested"):
        assert f"function P.{cb}(" in processor
    assert 'application = "orders"' in (proj / "shardrun.lua").read_text()
    assert "data/" in (proj / ".gitignore").read_text()
    script = printed_commands(r.stdout.decode())
    assert script.splitlines() == [
        "cd orders", "shardrun test",
        "shardrun stream create events --shards 2 && seq 1 1000 | shardrun put events",
        "shardrun run --drain"], script
    # the commands exactly as printed, with shardrun on the PATH
    env = proc_env(PATH=path_with(SHARDRUN))
    r = run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env, timeout=300)
    assert "2 successes / 0 failures / 0 errors" in out(r), out(r)
    assert drained(r.stderr.decode())["records"] == "1000"
    st = run([SHARDRUN, "status", "--json"], cwd=proj)
    import json
    leases = json.loads(st.stdout)
    assert len(leases) == 2 and all(l["checkpoint"].isdigit() for l in leases), leases


def test_init_never_overwrites_and_writes_nothing_when_a_file_exists(tmp_path):
    proj = tmp_path / "p"
    proj.mkdir()
    (proj / "processor.lua").write_text("-- mine\n")
    r = run([SHARDRUN, "init", str(proj)], cwd=tmp_path, check=False)
    assert r.returncode == 1, out(r)
    assert f"{proj}/processor.lua exists" in r.stderr.decode()
    assert (proj / "processor.lua").read_text() == "-- mine\n"
    assert sorted(p.name for p in proj.iterdir()) == ["processor.lua"]


def test_init_refuses_a_stream_name_kinesis_would_refuse(tmp_path):
    r = run([SHARDRUN, "init", "p", "--stream", 'a"b'], cwd=tmp_path, check=False)
    assert r.returncode == 2 and "stream name" in r.stderr.decode(), out(r)
    assert not (tmp_path / "p").exists()


def test_shardrun_test_exits_with_busteds_status_and_names_the_failure(tmp_path):
    run([SHARDRUN, "init", "p", "--stream", "clicks"], cwd=tmp_path)
    proj = tmp_path / "p"
    src = (proj / "processor.lua").read_text()
    (proj / "processor.lua").write_text(src.replace("st.bytes + #r.data", "st.bytes + 2 * #r.data"))
    r = run([SHARDRUN, "test"], cwd=proj, check=False)
    assert r.returncode != 0, out(r)
    assert "1 success / 1 failure" in out(r) and "spec/processor_spec.lua" in out(r), out(r)
    # a spec named on the command line, from another folder: busted's options pass through
    (proj / "processor.lua").write_text(src)
    r = run([SHARDRUN, "test", "--filter=graceful", "p/spec"], cwd=tmp_path)
    assert "1 success / 0 failures" in out(r), out(r)


def test_init_kinesis_project_runs_against_kinesis_and_dynamodb(tmp_path, emulators):
    """--kinesis: the same three commands, on Kinesis and DynamoDB (the
    emulators, reached through the SDKs' AWS_ENDPOINT_URL_* variables the
    config reads)."""
    app, stream = unique("app"), unique("s")
    r = run([SHARDRUN, "init", app, "--kinesis", "--stream", stream], cwd=tmp_path)
    cfg = (tmp_path / app / "shardrun.lua").read_text()
    assert 'type = "kinesis"' in cfg and 'type = "dynamodb"' in cfg
    env = proc_env(PATH=path_with(SHARDRUN), **AWS_ENV,
                   AWS_ENDPOINT_URL_KINESIS=f"http://127.0.0.1:{KINESALITE_PORT}",
                   AWS_ENDPOINT_URL_DYNAMODB=f"http://127.0.0.1:{DYNALITE_PORT}")
    r = run(["bash", "-euo", "pipefail", "-c", printed_commands(r.stdout.decode())], cwd=tmp_path, env=env,
            timeout=300)
    assert drained(r.stderr.decode())["records"] == "1000"


def test_drain_exits_1_when_a_shard_is_halted_as_readme_says(env):
    env.write("p.lua", "return { processRecords = function(records)\n"
                       "  for _, r in ipairs(records) do if r.data == 'poison' then error('bad record') end end\n"
                       "  return 'checkpoint' end }\n")
    env.config([{"name": "s", "processor": "p.lua", "on_error": "halt"}])
    env.create_stream("s", 2)
    env.put("s", ["a", "poison", "b"], partition_key="k")
    env.put("s", ["c", "d"], partition_key="other-key-7")
    w = env.worker("--drain")
    assert w.wait(60) == 1, w.logs()
    assert "event=drain_incomplete" in w.logs() and "halted_shards=1" in w.logs(), w.logs()

# ---- systemd: the notify protocol --------------------------------------------------

class NotifySocket:
    """A fake systemd: the datagram socket NOTIFY_SOCKET names; collects messages."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages = []

    def drain(self):
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except (socket.timeout, BlockingIOError):
                return self.messages

    def wait_for(self, pred, timeout=30, what="message"):
        def seen():
            self.drain()
            return [m for m in self.messages if pred(m)]
        return wait_for(seen, timeout=timeout, what=what)

    def close(self):
        self.sock.close()


def test_under_systemd_the_worker_reports_ready_after_its_first_lease_scan_and_feeds_the_watchdog(env):
    short = Path(tempfile.mkdtemp(prefix="sr-notify-", dir="/tmp"))  # AF_UNIX paths are short
    ns = NotifySocket(short / "notify")
    try:
        env.write("p.lua", "return { processRecords = function() return 'checkpoint' end }\n")
        env.config([{"name": "s", "processor": "p.lua"}], shutdown_grace_ms=7000)
        env.create_stream("s", 2)
        env.extra_env.update(NOTIFY_SOCKET=ns.path, WATCHDOG_USEC="400000")
        w = env.worker()
        ready = ns.wait_for(lambda m: "READY=1" in m, what="READY=1")
        # READY once, after the scan: its status counts the two shards' leases
        assert re.search(r"STATUS=running: \d of 2 leases owned", ready[0]), ready
        # pings every 200 ms (half of WatchdogSec), from the loop
        t0 = time.monotonic()
        ns.wait_for(lambda m: m == "WATCHDOG=1", what="WATCHDOG=1")
        pings = ns.wait_for(lambda m: m == "WATCHDOG=1" and len([x for x in ns.messages if x == "WATCHDOG=1"]) >= 5,
                            what="5 watchdog pings")
        assert pings and time.monotonic() - t0 < 20
        assert len([m for m in ns.messages if "READY=1" in m]) == 1
        # a graceful stop says so, asking for shutdown_grace_ms (+5 s) to finish
        w.signal(signal.SIGTERM)
        stopping = ns.wait_for(lambda m: "STOPPING=1" in m, what="STOPPING=1")
        assert "EXTEND_TIMEOUT_USEC=12000000" in stopping[0], stopping
        assert w.wait(30) == 0, w.logs()
        assert "event=watchdog_enabled interval_ms=400 ping_ms=200" in w.logs()
    finally:
        ns.close()
        shutil.rmtree(short, ignore_errors=True)


def test_without_notify_socket_nothing_is_sent_and_the_worker_runs_as_before(env):
    env.write("p.lua", "return { processRecords = function() return 'checkpoint' end }\n")
    env.config([{"name": "s", "processor": "p.lua"}])
    env.create_stream("s", 1)
    env.put("s", ["a", "b"])
    env.extra_env.update(WATCHDOG_USEC="400000")  # without NOTIFY_SOCKET: ignored
    w = env.worker("--drain")
    assert w.wait(60) == 0, w.logs()
    assert "watchdog_enabled" not in w.logs() and "notify_failed" not in w.logs()


# ---- make install, the systemd unit, make deb ----------------------------------------

def make_args():
    """The make variables that build the binary under test (SHARDRUN)."""
    if ASAN:
        return ["BUILD=build-asan", "SAN=1", "CFLAGS=-O1 -g"]
    return []


def installed_env(bindir, **extra):
    """An environment that knows nothing of the source tree: shardrun from
    bindir, the system's tools, no SHARDRUN_LUA_DIR or LUA_PATH."""
    e = proc_env(PATH=f"{bindir}:/usr/bin:/bin", **extra)
    for k in ("SHARDRUN_LUA_DIR", "LUA_PATH", "LUA_CPATH", "SHARDRUN"):
        e.pop(k, None)
    return e


WHERE_SPEC = '''-- where shardrun's modules come from, for the test that installs them
describe("the installed modules", function()
  it("are found in LUA_DIR", function()
    local p = package.searchpath("shardrun.testing", package.path)
    assert.is_truthy(p and p:find([[LUA_DIR/]], 1, true) == 1, tostring(p))
  end)
end)
'''


def check_installed(bindir, lua_dir, work):
    """init -> test -> the printed commands (a drain) with an installed shardrun
    only; the modules must come from lua_dir, in the specs and in the worker."""
    env = installed_env(bindir)
    assert shutil.which("shardrun", path=env["PATH"]) == f"{bindir}/shardrun"
    r = run(["shardrun", "version"], cwd=work, env=env)
    assert r.stdout.decode().startswith("shardrun " + (ROOT / "VERSION").read_text().strip()), out(r)
    r = run(["shardrun", "init", "proj"], cwd=work, env=env)
    proj = work / "proj"
    (proj / "spec/where_spec.lua").write_text(WHERE_SPEC.replace("LUA_DIR", str(lua_dir)))
    # the worker says where its shardrun.json came from
    where = work / "where.txt"
    src = (proj / "processor.lua").read_text()
    (proj / "processor.lua").write_text(src.replace(
        "function P.initialize(shard)\n",
        "function P.initialize(shard)\n  local f = assert(io.open(%r, 'w'))\n"
        "  f:write(package.searchpath('shardrun.json', package.path)) f:close()\n" % str(where)))
    r = run(["bash", "-euo", "pipefail", "-c", printed_commands(r.stdout.decode())], cwd=work, env=env, timeout=300)
    assert "3 successes / 0 failures / 0 errors" in out(r), out(r)
    assert drained(r.stderr.decode())["records"] == "1000"
    assert where.read_text().startswith(f"{lua_dir}/"), where.read_text()


def test_make_install_destdir_tree_runs_init_test_and_a_drain_with_no_source_tree(tmp_path):
    dest = tmp_path / "dest"
    run(["make", "--no-print-directory", *make_args(), "install", f"DESTDIR={dest}", "PREFIX=/opt/shardrun"],
        cwd=ROOT, timeout=900)
    root = dest / "opt/shardrun"
    for f in ("bin/shardrun", "share/shardrun/lua/shardrun/testing.lua", "share/shardrun/lua/shardrun/_host.lua",
              "share/shardrun/examples/wordcount/wordcount.lua", "share/man/man1/shardrun.1",
              "lib/systemd/system/shardrun@.service"):
        assert (root / f).is_file(), f
    unit = (root / "lib/systemd/system/shardrun@.service").read_text()
    assert "ExecStart=/opt/shardrun/bin/shardrun run -c /etc/shardrun/%i/shardrun.lua" in unit
    # run from a copy of the installed tree elsewhere: nothing may point back
    # into the source tree or into DESTDIR's first place
    moved = tmp_path / "moved"
    shutil.copytree(root, moved, symlinks=True)
    work = tmp_path / "work"
    work.mkdir()
    check_installed(moved / "bin", moved / "share/shardrun/lua", work)
    # the installed example, with shardrun.json from the installed modules
    ex = work / "json-filter"
    shutil.copytree(moved / "share/shardrun/examples/json-filter", ex)
    env = installed_env(moved / "bin")
    run(["shardrun", "stream", "create", "events", "--shards", "2"], cwd=ex, env=env)
    subprocess.run(["shardrun", "put", "events"], cwd=ex, env=env, check=True, capture_output=True,
                   input=b'{"level":"error","msg":"disk full"}\n{"level":"info"}\nnot json\n')
    r = run(["shardrun", "run", "--drain"], cwd=ex, env=env)
    matches = "".join(f.read_text() for f in (ex / "data").glob("*.matches.jsonl"))
    assert "disk full" in matches and "info" not in matches, out(r)


def test_the_man_page_names_every_command_and_every_config_field():
    page = (ROOT / "man/shardrun.1").read_text()
    main_c = (ROOT / "runtime/cli/main.c").read_text()
    commands = re.findall(r'\{"(\w+)", cmd_\w+, NULL\}', main_c)
    assert {"run", "init", "test", "version"} <= set(commands), commands
    section = page.split(".SH COMMANDS", 1)[1].split(".SH CONFIGURATION", 1)[0]
    for cmd in commands:
        assert re.search(r"^\.B " + cmd + r"\b", section, re.M), f"shardrun(1) COMMANDS lacks {cmd}"
    config_c = (ROOT / "runtime/config/config.c").read_text()
    fields = set()
    for arr in re.findall(r"static const char \*const (?:keys|rkeys|reload_keys)\[\] = \{(.*?)\};", config_c, re.S):
        fields |= set(re.findall(r'"(\w+)"', arr))
    assert {"application", "processor", "shutdown_grace_ms", "retries", "rollback_after_failures"} <= fields
    section = page.split(".SH CONFIGURATION", 1)[1].split(".SH THE LUA CONTRACT", 1)[0]
    missing = sorted(f for f in fields if not re.search(r"\b" + f + r"\b", section))
    assert not missing, f"shardrun(1) CONFIGURATION lacks {missing}"
    # and it renders without a warning
    if shutil.which("groff"):
        r = run(["groff", "-man", "-Tutf8", "-ww", "-z", str(ROOT / "man/shardrun.1")], cwd=ROOT)
        assert not r.stderr, out(r)


def systemd_analyze():
    """systemd-analyze, when it can run here at all (it needs no running systemd)."""
    tool = shutil.which("systemd-analyze")
    if not tool:
        return None, "systemd-analyze is not installed (Debian: apt install systemd)"
    r = subprocess.run([tool, "--version"], capture_output=True)
    if r.returncode != 0:
        return None, f"systemd-analyze cannot run here: {out(r).strip()}"
    return tool, None


def test_the_systemd_unit_passes_systemd_analyze_verify(tmp_path):
    tool, why = systemd_analyze()
    if not tool:
        if os.environ.get("CI"):
            pytest.fail(why)  # scripts/install-deps.sh installs it: in CI its absence is a failure
        pytest.skip(why)
    dest = tmp_path / "dest"
    run(["make", "--no-print-directory", *make_args(), "install", f"DESTDIR={dest}", "PREFIX=/usr/local"],
        cwd=ROOT, timeout=900)
    unit = (dest / "usr/local/lib/systemd/system/shardrun@.service").read_text()
    for line in ("Type=notify", "WatchdogSec=30", "ExecReload=/bin/kill -HUP $MAINPID", "Restart=on-failure",
                 "NoNewPrivileges=yes", "ProtectSystem=strict", "StateDirectory=shardrun/%i", "KillMode=mixed"):
        assert line in unit.splitlines(), line
    assert "MemoryDenyWriteExecute" not in unit.replace("# set, on purpose: MemoryDenyWriteExecute", "")
    # verify checks that ExecStart exists: point it at the DESTDIR binary; the
    # man page of Documentation= is found through MANPATH
    units = tmp_path / "units"
    units.mkdir()
    env = proc_env(MANPATH=str(dest / "usr/local/share/man"))

    def verify(text):
        (units / "shardrun@orders.service").write_text(text)
        return run([tool, "verify", str(units / "shardrun@orders.service")], cwd=tmp_path, env=env, check=False)

    r = verify(unit.replace("/usr/local/bin/shardrun", str(dest / "usr/local/bin/shardrun")))
    assert r.returncode == 0 and not out(r).strip(), out(r)
    # the check is real: a misspelt key is reported
    r = verify(unit.replace("/usr/local/bin/shardrun", str(dest / "usr/local/bin/shardrun"))
               .replace("WatchdogSec=", "WatchdogSek="))
    assert "WatchdogSek" in out(r), out(r)


def dpkg(*args, timeout=300):
    """dpkg, waiting while another dpkg or apt holds the lock."""
    deadline = time.monotonic() + timeout
    while True:
        r = subprocess.run(["dpkg", *args], capture_output=True, env=proc_env(DEBIAN_FRONTEND="noninteractive"))
        if r.returncode == 0 or "lock" not in out(r) or time.monotonic() > deadline:
            return r
        time.sleep(2)


def package_installed(name):
    r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", name], capture_output=True)
    return r.returncode == 0 and b"install ok installed" in r.stdout


def test_the_debian_package_installs_runs_a_project_from_the_installed_files_and_removes_cleanly(tmp_path):
    if not shutil.which("dpkg") or not shutil.which("dpkg-deb"):
        pytest.skip("not a Debian system: no dpkg")
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("CI runs as root: dpkg -i needs it")
        pytest.skip("dpkg -i needs root")
    # one run of this test at a time on a machine (the package is machine-wide)
    lock = open("/tmp/shardrun-deb-test.lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        deb_round_trip(tmp_path)
    finally:
        lock.close()


def deb_round_trip(tmp_path):
    if package_installed("shardrun"):
        pytest.skip("a shardrun package is installed on this machine already: not replacing it")
    r = run(["make", "--no-print-directory", *make_args(), "deb"], cwd=ROOT, timeout=900)
    deb = Path(r.stdout.decode().strip().splitlines()[-1])
    deb = deb if deb.is_absolute() else ROOT / deb
    assert deb.is_file(), out(r)
    fields = run(["dpkg-deb", "-f", str(deb), "Package", "Version", "Depends"], cwd=tmp_path).stdout.decode()
    assert "Package: shardrun" in fields and "libsystemd0" in fields and "lua-cjson" in fields, fields
    installed = False
    try:
        r = dpkg("-i", str(deb))
        installed = package_installed("shardrun")
        assert r.returncode == 0 and installed, out(r)
        for f in ("/usr/bin/shardrun", "/usr/share/shardrun/lua/shardrun/testing.lua",
                  "/usr/share/man/man1/shardrun.1.gz", "/usr/lib/systemd/system/shardrun@.service",
                  "/usr/share/shardrun/examples/wordcount/wordcount.lua"):
            assert Path(f).is_file(), f
        work = tmp_path / "work"
        work.mkdir()
        check_installed(Path("/usr/bin"), Path("/usr/share/shardrun/lua"), work)
        if shutil.which("man"):
            r = run(["man", "-w", "shardrun"], cwd=work)
            assert r.stdout.decode().strip() == "/usr/share/man/man1/shardrun.1.gz", out(r)
        tool, _ = systemd_analyze()
        if tool:  # the installed unit, as installed: its binary and its man page exist now
            units = tmp_path / "units"
            units.mkdir()
            shutil.copy("/usr/lib/systemd/system/shardrun@.service", units / "shardrun@orders.service")
            r = run([tool, "verify", str(units / "shardrun@orders.service")], cwd=tmp_path, check=False)
            assert r.returncode == 0 and not out(r).strip(), out(r)
    finally:
        if installed or package_installed("shardrun"):
            r = dpkg("-r", "shardrun")
            assert r.returncode == 0, out(r)
            dpkg("--purge", "shardrun")  # and dpkg's record of it
    assert not package_installed("shardrun")
    assert not Path("/usr/bin/shardrun").exists() and not Path("/usr/share/shardrun").exists()
