"""Foundation (issue 2): bad input gets a clear error and loses nothing.

Config errors exit 2 and name the file and the field (or file:line for Lua
errors); bad scripts are refused with the same message by `run` and `check`;
SQLite trouble (corrupt, locked) is reported or waited out, never a crash;
record data is binary-safe up to 1 MiB.
"""
import os
import pathlib
import shutil
import subprocess
import sys
import time

import pytest

from conftest import (HEX_RECORDING_PROCESSOR, RECORDING_PROCESSOR, SHARDRUN, read_seen, stream_records, wait_for)

GOOD_PROCESSOR = "local P = {}\nfunction P.processRecords(records, shard) return \"checkpoint\" end\nreturn P\n"

BASE_CONFIG = '''application = "test"
source = { type = "local", path = "streams.db" }
leases = { type = "local", path = "leases.db" }
taker_interval_ms = 200
lease_duration_ms = 2000
'''


def err(r):
    return r.stderr.decode(errors="replace")


def assert_no_crash(r):
    # a negative code is a signal (SIGSEGV, SIGABRT...); 134/139 a shell-reported one
    assert r.returncode >= 0 and r.returncode not in (134, 136, 139), f"crashed: {r.returncode}\n{err(r)}"


def assert_config_error(env, r, *texts):
    assert r.returncode == 2, f"exit {r.returncode}, expected 2:\n{err(r)}"
    msg = err(r)
    for t in texts:
        assert t in msg, f"{t!r} not in error message:\n{msg}"
    assert "Traceback" not in msg and "stack traceback" not in msg, msg
    # nothing was created or touched by a refused run
    assert not (env.dir / "leases.db").exists()


def write_config(env, text, name="shardrun.lua"):
    env.write("p.lua", GOOD_PROCESSOR)
    return env.write(name, text)


# ---- config ---------------------------------------------------------------------

def test_missing_config_file_is_exit_2_naming_the_file(env):
    r = env.run("run", "-c", "nope.lua", check=False)
    assert_config_error(env, r, "nope.lua")


def test_default_config_is_shardrun_lua_in_the_current_folder(env):
    r = env.run("run", check=False)
    assert_config_error(env, r, "shardrun.lua")


def test_unreadable_config_is_exit_2_naming_the_file(env):
    (env.dir / "cfg.lua").mkdir()  # a folder: unreadable as a file, even for root
    r = env.run("run", "-c", "cfg.lua", check=False)
    assert_config_error(env, r, "cfg.lua")


def test_config_without_read_permission_is_exit_2_naming_the_file(env):
    env.write("p.lua", GOOD_PROCESSOR)
    env.config([{"name": "s", "processor": "p.lua"}])
    os.chmod(env.dir / "shardrun.lua", 0)
    r = env.run("run", check=False) if os.geteuid() != 0 else run_as_nobody(env, "run")
    assert_config_error(env, r, "shardrun.lua")


def run_as_nobody(env, *args):
    """Root reads files whatever their mode, so CI (root) runs this one as nobody."""
    binary = shutil.copy(SHARDRUN, env.dir / "shardrun-copy")  # the checkout stays as it is
    for d in [env.dir, *env.dir.parents]:
        if d != pathlib.Path("/"):
            os.chmod(d, os.stat(d).st_mode | 0o001)  # nobody may pass through, not list
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", binary, *args],
                          cwd=env.dir, capture_output=True, timeout=60, env=env.proc_env())


def test_lua_syntax_error_in_config_names_file_and_line(env):
    write_config(env, BASE_CONFIG + 'streams = {\n  { name = "s", processor = = "p.lua" },\n}\n')
    r = env.run("run", check=False)
    assert_config_error(env, r, "shardrun.lua:7:")


def test_runtime_error_in_config_names_file_and_line(env):
    write_config(env, BASE_CONFIG + 'local t = nil\nstreams = { { name = t.x, processor = "p.lua" } }\n')
    r = env.run("run", check=False)
    assert_config_error(env, r, "shardrun.lua:7:")


@pytest.mark.parametrize("where,text,field", [
    ("top", "colour = 1\n", "colour"),
    ("stream", None, "streams[1].colour"),
    ("source", None, "source.colour"),
])
def test_unknown_field_is_rejected_naming_it(env, where, text, field):
    if where == "top":
        cfg = BASE_CONFIG + text + 'streams = { { name = "s", processor = "p.lua" } }\n'
    elif where == "stream":
        cfg = BASE_CONFIG + 'streams = { { name = "s", processor = "p.lua", colour = "red" } }\n'
    else:
        cfg = BASE_CONFIG.replace('path = "streams.db" }', 'path = "streams.db", colour = 1 }') + \
            'streams = { { name = "s", processor = "p.lua" } }\n'
    write_config(env, cfg)
    r = env.run("run", check=False)
    assert_config_error(env, r, "shardrun.lua", field, "unknown field")


@pytest.mark.parametrize("line,field,got", [
    ('processor_threads = "two"\n', "processor_threads", '"two"'),
    ("lease_duration_ms = 1.5\n", "lease_duration_ms", "1.5"),
    ("source = 5\n", "source", "5"),
    ("streams = {}\n", "streams", ""),
    ("__STREAM__ max_records = \"many\"", "streams[1].max_records", '"many"'),
    ("__STREAM__ max_records = 0", "streams[1].max_records", "0"),
    ("__STREAM__ name = 7", "streams[1].name", "7"),
    ("__STREAM__ on_error = 3", "streams[1].on_error", "3"),
])
def test_wrong_type_or_range_is_rejected_naming_field_and_value(env, line, field, got):
    if line.startswith("__STREAM__"):
        cfg = BASE_CONFIG + 'streams = { { name = "s", processor = "p.lua", ' + line[len("__STREAM__ "):] + " } }\n"
        if 'name = 7' in cfg:
            cfg = cfg.replace('name = "s", ', "")
    elif line.startswith("source"):
        cfg = BASE_CONFIG.replace('source = { type = "local", path = "streams.db" }\n', line) + \
            'streams = { { name = "s", processor = "p.lua" } }\n'
    elif line.startswith("streams"):
        cfg = BASE_CONFIG + line
    else:
        cfg = BASE_CONFIG + line + 'streams = { { name = "s", processor = "p.lua" } }\n'
    write_config(env, cfg)
    r = env.run("run", check=False)
    # the line where the field is written (its last assignment: the value that counts)
    key = field.split(".")[-1] + " ="
    line = max(i for i, text in enumerate(cfg.splitlines(), 1) if key in text)
    assert_config_error(env, r, f"shardrun.lua:{line}: {field}:", got)


def test_bad_initial_position_message_is_exact(env):
    write_config(env, BASE_CONFIG + 'streams = { { name = "s", processor = "p.lua", initial_position = "OLDEST" } }\n')
    r = env.run("run", check=False)
    assert_config_error(env, r, 'shardrun.lua:6: streams[1].initial_position: expected TRIM_HORIZON, LATEST or '
                                'AT_TIMESTAMP, got "OLDEST"')


def test_at_timestamp_without_timestamp_is_rejected(env):
    write_config(env, BASE_CONFIG + 'streams = { { name = "s", processor = "p.lua", '
                                    'initial_position = "AT_TIMESTAMP" } }\n')
    r = env.run("run", check=False)
    assert_config_error(env, r, "streams[1].initial_timestamp_ms")


def test_config_errors_are_exit_2_for_every_command_that_reads_the_config(env):
    write_config(env, BASE_CONFIG + 'streams = { { name = "s", processor = "p.lua", initial_position = "OLDEST" } }\n')
    for args in (["run"], ["status"], ["stream", "list"], ["stream", "create", "s", "--shards", "1"], ["put", "s"]):
        r = env.run(*args, check=False, input=b"x\n")
        assert r.returncode == 2, f"shardrun {' '.join(args)}: exit {r.returncode}, expected 2\n{err(r)}"
        assert "streams[1].initial_position" in err(r), err(r)


# ---- processor scripts ------------------------------------------------------------

BAD_SCRIPTS = {
    # name: (script text or None for missing / a folder, text the error must contain)
    "missing": (None, "missing.lua"),
    "folder": ("<dir>", "folder.lua"),
    "syntax_error": ("local P = {}\nfunction P.processRecords(r)\n  return = 1\nend\nreturn P\n", "syntax_error.lua:3:"),
    "load_error": ("local P = {}\nlocal x = nil\nx.y = 1\nreturn P\n", "load_error.lua:3:"),
    "no_processRecords": ("local P = {}\nfunction P.initialize() end\nreturn P\n", "processRecords"),
    "returns_nothing": ("local P = {}\nfunction P.processRecords() end\n", "returns_nothing.lua"),
    "lifecycle_not_function": ("return { processRecords = function() end, shardEnded = 5 }\n", "shardEnded"),
}


def make_script(env, name):
    text, _ = BAD_SCRIPTS[name]
    fname = "missing.lua" if text is None else f"{name}.lua"
    if text == "<dir>":
        (env.dir / fname).mkdir()
    elif text is not None:
        env.write(fname, text)
    return fname


@pytest.mark.parametrize("name", list(BAD_SCRIPTS))
def test_bad_processor_script_is_refused_by_run_naming_the_script(env, name):
    fname = make_script(env, name)
    env.config([{"name": "s", "processor": fname}])
    r = env.run("run", "--drain", check=False, timeout=60)
    assert r.returncode == 2, f"exit {r.returncode}, expected 2\n{err(r)}"
    assert BAD_SCRIPTS[name][1] in err(r), err(r)
    assert "shard_started" not in err(r), "a shard started with a broken script"


@pytest.mark.parametrize("name", [n for n in BAD_SCRIPTS if n != "missing"])
def test_check_refuses_each_bad_script_with_the_same_message_as_run(env, name):
    fname = make_script(env, name)
    env.config([{"name": "s", "processor": fname}])
    run = env.run("run", "--drain", check=False, timeout=60)
    chk = env.run("check", fname, check=False)
    assert chk.returncode == run.returncode == 2, (run.returncode, chk.returncode, err(chk))
    assert BAD_SCRIPTS[name][1] in err(chk), err(chk)
    # the same message, whatever path prefix each command prints the script with
    msg_run = [l for l in err(run).splitlines() if l.startswith("shardrun: ")][-1]
    msg_chk = [l for l in err(chk).splitlines() if l.startswith("shardrun: ")][-1]
    tail = lambda m: m.split(fname, 1)[-1]
    assert tail(msg_run) == tail(msg_chk), (msg_run, msg_chk)


def test_check_missing_script_is_bad_input_naming_it(env):
    r = env.run("check", "missing.lua", check=False)
    assert r.returncode == 2 and "missing.lua" in err(r), err(r)


def test_check_accepts_a_good_script_and_reports_each_script(env):
    env.write("good.lua", GOOD_PROCESSOR)
    env.write("rec.lua", RECORDING_PROCESSOR)
    r = env.run("check", "good.lua", "rec.lua")
    out = r.stdout.decode()
    assert "good.lua" in out and "rec.lua" in out, out
    # one bad script among good ones: non-zero, the good ones still reported
    env.write("bad.lua", "return 1\n")
    r = env.run("check", "good.lua", "bad.lua", check=False)
    assert r.returncode != 0
    assert "good.lua" in r.stdout.decode() and "bad.lua" in err(r)


def test_check_without_script_is_usage_error(env):
    r = env.run("check", check=False)
    assert r.returncode == 2, err(r)


# ---- CLI ------------------------------------------------------------------------

@pytest.mark.parametrize("cmd", ["run", "check", "status", "stream", "put", "version"])
def test_help_on_each_command_exits_0(env, cmd):
    r = env.run(cmd, "--help", check=False)
    assert r.returncode == 0, err(r)
    assert r.stdout.strip(), "help printed nothing"
    if cmd != "version":
        assert b"usage" in r.stdout.lower() and cmd.encode() in r.stdout


def test_top_level_help_exits_0_and_lists_commands(env):
    r = env.run("--help")
    for cmd in (b"run", b"check", b"status", b"stream", b"put", b"version"):
        assert cmd in r.stdout


def test_unknown_command_exits_2(env):
    r = env.run("frobnicate", check=False)
    assert r.returncode == 2 and "frobnicate" in err(r), err(r)


def test_no_command_exits_2(env):
    r = env.run(check=False)
    assert r.returncode == 2, err(r)


@pytest.mark.parametrize("args", [["run", "--bogus"], ["run", "extra"], ["stream", "create", "s"],
                                  ["stream", "explode", "s"], ["put"], ["status", "--bogus"]])
def test_bad_usage_exits_2(env, args):
    env.write("p.lua", GOOD_PROCESSOR)
    env.config([{"name": "s", "processor": "p.lua"}])
    r = env.run(*args, check=False)
    assert r.returncode == 2, f"shardrun {' '.join(args)}: exit {r.returncode}\n{err(r)}"
    assert "usage" in err(r).lower(), err(r)


def test_version_prints_the_version(env):
    r = env.run("version")
    assert r.stdout.startswith(b"shardrun ")


# ---- put ------------------------------------------------------------------------

def test_put_to_a_missing_stream_fails_naming_the_stream_and_stores_nothing(env):
    env.write("p.lua", GOOD_PROCESSOR)
    env.config([{"name": "s", "processor": "p.lua"}])
    env.create_stream("s", 1)
    r = env.run("put", "nosuch", input=b"a\nb\n", check=False)
    assert r.returncode != 0
    assert "nosuch" in err(r), err(r)
    assert stream_records(env, "nosuch") == [] and stream_records(env, "s") == []


def test_put_without_any_stream_file_fails_clearly(env):
    env.write("p.lua", GOOD_PROCESSOR)
    env.config([{"name": "s", "processor": "p.lua"}])
    r = env.run("put", "s", input=b"a\n", check=False)
    assert r.returncode != 0
    assert "streams.db" in err(r) and "stream create" in err(r), err(r)


def test_put_from_a_missing_file_fails_naming_it(env):
    env.write("p.lua", GOOD_PROCESSOR)
    env.config([{"name": "s", "processor": "p.lua"}])
    env.create_stream("s", 1)
    r = env.run("put", "s", "nope.txt", check=False)
    assert r.returncode != 0 and "nope.txt" in err(r), err(r)


def test_nul_bytes_and_invalid_utf8_round_trip_exactly(env):
    lines = [b"plain", b"a\x00b", b"\x00", b"\x00\x00\x00", b"\xff\xfe\xfd", b"\xc3\x28", b"\xed\xa0\x80",
             b"caf\xc3\xa9", b"tab\there", b"cr at end\r", b"", b"\x01\x02\x7f\x80", bytes(range(1, 10)) + bytes(
                 range(11, 256))]
    env.write("p.lua", HEX_RECORDING_PROCESSOR)
    env.config([{"name": "s", "processor": "p.lua"}])
    env.create_stream("s", 2)
    env.put("s", lines)
    # stored exactly
    assert sorted(d for _, _, d in stream_records(env, "s")) == sorted(lines)
    w = env.worker("--drain")
    assert w.wait(60) == 0, w.logs()
    got = sorted(bytes.fromhex(d) for _, _, _, d in read_seen(env.dir / "seen"))
    assert got == sorted(lines)


def test_binary_data_put_from_a_file_round_trips(env):
    # the same bytes put from a FILE argument instead of stdin
    lines = [b"x\x00y", b"\xff", b"z"]
    (env.dir / "in.bin").write_bytes(b"\n".join(lines) + b"\n")
    env.write("p.lua", HEX_RECORDING_PROCESSOR)
    env.config([{"name": "s", "processor": "p.lua"}])
    env.create_stream("s", 1)
    env.run("put", "s", "in.bin")
    w = env.worker("--drain")
    assert w.wait(60) == 0, w.logs()
    assert [bytes.fromhex(d) for _, _, _, d in read_seen(env.dir / "seen")] == lines


def test_a_1mib_record_works_and_a_larger_one_is_rejected_by_put(env):
    env.write("p.lua", HEX_RECORDING_PROCESSOR)
    env.config([{"name": "s", "processor": "p.lua"}])
    env.create_stream("s", 1)
    big = bytes((i * 7 + 3) % 256 for i in range(1024 * 1024)).replace(b"\n", b"N")
    assert len(big) == 1024 * 1024
    env.put("s", [big])
    w = env.worker("--drain")
    assert w.wait(60) == 0, w.logs()
    seen = read_seen(env.dir / "seen")
    assert len(seen) == 1 and bytes.fromhex(seen[0][3]) == big

    r = env.run("put", "s", input=big + b"x\n", check=False)
    assert r.returncode != 0
    assert "1 MiB" in err(r) or "1048576" in err(r), err(r)
    assert str(len(big) + 1) in err(r), "the message should give the record's size: " + err(r)
    assert len(stream_records(env, "s")) == 1, "the oversized record was stored"


# ---- SQLite trouble ---------------------------------------------------------------

def garbage(path, n=16384):
    path.write_bytes(bytes((i * 131 + 17) % 251 for i in range(n)))


@pytest.mark.parametrize("args", [["run", "--drain"], ["put", "s"], ["stream", "list"],
                                  ["stream", "create", "t", "--shards", "1"]])
def test_corrupt_stream_file_gives_a_clear_error_not_a_crash(env, args):
    env.write("p.lua", GOOD_PROCESSOR)
    env.config([{"name": "s", "processor": "p.lua"}])
    garbage(env.dir / "streams.db")
    before = (env.dir / "streams.db").read_bytes()
    r = env.run(*args, input=b"x\n", check=False, timeout=60)
    assert_no_crash(r)
    assert r.returncode != 0, err(r)
    assert "streams.db" in err(r) and "not a database" in err(r), err(r)
    assert (env.dir / "streams.db").read_bytes() == before, "the corrupt file was modified"


def test_status_with_a_corrupt_stream_file_says_so(env):
    env.write("p.lua", GOOD_PROCESSOR)
    env.config([{"name": "s", "processor": "p.lua"}])
    env.create_stream("s", 1)
    env.put("s", ["a"])
    assert env.worker("--drain").wait(60) == 0
    garbage(env.dir / "streams.db")
    for p in env.dir.glob("streams.db-*"):
        if p.is_file():  # SQLite's -wal and -shm; not the wake-up folder (streams.db-wake)
            p.unlink()
    r = env.run("status", check=False)
    assert_no_crash(r)
    assert "streams.db" in err(r), "status hid that the stream file is unusable:\n" + r.stdout.decode() + err(r)


def test_corrupt_lease_file_gives_a_clear_error_not_a_crash(env):
    env.write("p.lua", GOOD_PROCESSOR)
    env.config([{"name": "s", "processor": "p.lua"}])
    env.create_stream("s", 1)
    garbage(env.dir / "leases.db")
    for args in (["run", "--drain"], ["status"]):
        r = env.run(*args, check=False, timeout=60)
        assert_no_crash(r)
        assert r.returncode != 0, err(r)
        assert "leases.db" in err(r) and "not a database" in err(r), err(r)


def test_stream_file_truncated_mid_run_does_not_crash_the_worker(env):
    """A stream file replaced by garbage under a running worker: the worker
    reports it (fetch errors / halted shard) and stays controllable."""
    env.write("p.lua", RECORDING_PROCESSOR)
    env.config([{"name": "s", "processor": "p.lua"}])
    env.create_stream("s", 1)
    env.put("s", ["a", "b"])
    w = env.worker()
    wait_for(lambda: len(read_seen(env.dir / "seen")) == 2, timeout=30, what="records processed")
    for p in list(env.dir.glob("streams.db*")):
        if p.is_file():  # the file and SQLite's -wal and -shm; not the wake-up folder
            garbage(p, 4096)
    time.sleep(1.5)
    assert w.alive(), w.logs()
    code = w.stop()
    assert code in (0, 1), f"exit {code}\n{w.logs()[-2000:]}"


LOCKER = r'''
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
if sys.argv[3] == "exclusive":
    con.execute("PRAGMA locking_mode=EXCLUSIVE")
    con.execute("BEGIN EXCLUSIVE")
    con.execute("CREATE TABLE IF NOT EXISTS zz_lock(x)")
else:
    con.execute("BEGIN IMMEDIATE")
    con.execute("CREATE TABLE IF NOT EXISTS zz_lock(x)")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
con.execute("COMMIT")
con.close()
'''


def hold_lock(env, path, seconds, mode="exclusive"):
    """Starts a process holding a lock on a SQLite file for `seconds`; returns
    once the lock is held."""
    env.write("locker.py", LOCKER)
    p = subprocess.Popen([sys.executable, "locker.py", path, str(seconds), mode], cwd=env.dir,
                         stdout=subprocess.PIPE)
    assert p.stdout.readline().strip() == b"locked"
    return p


def test_worker_started_on_a_locked_stream_file_waits_and_processes_everything(env):
    env.write("p.lua", HEX_RECORDING_PROCESSOR)
    env.config([{"name": "s", "processor": "p.lua"}])
    env.create_stream("s", 2)
    env.put("s", [f"r{i}" for i in range(500)])
    put = sorted(d.hex() for _, _, d in stream_records(env, "s"))
    locker = hold_lock(env, "streams.db", 3)
    t0 = time.monotonic()
    w = env.worker("--drain")
    code = w.wait(90)
    locker.wait(30)
    if code != 0:
        # allowed: a clear report naming the file and the lock
        assert "streams.db" in w.logs() and "locked" in w.logs(), w.logs()
        pytest.fail(f"worker gave up on a 3 s lock after {time.monotonic() - t0:.1f} s (exit {code}):\n{w.logs()}")
    assert sorted(d for _, _, _, d in read_seen(env.dir / "seen")) == put


def test_put_waits_for_a_locked_stream_file(env):
    env.write("p.lua", GOOD_PROCESSOR)
    env.config([{"name": "s", "processor": "p.lua"}])
    env.create_stream("s", 1)
    locker = hold_lock(env, "streams.db", 2)
    env.put("s", ["a", "b", "c"])
    locker.wait(30)
    assert [d for _, _, d in stream_records(env, "s")] == [b"a", b"b", b"c"]


def test_put_on_a_stream_file_locked_too_long_fails_clearly(env):
    env.write("p.lua", GOOD_PROCESSOR)
    env.config([{"name": "s", "processor": "p.lua"}])
    env.create_stream("s", 1)
    locker = hold_lock(env, "streams.db", 12)
    try:
        r = env.run("put", "s", input=b"a\n", check=False, timeout=60)
    finally:
        locker.kill()
        locker.wait()
    assert_no_crash(r)
    assert r.returncode != 0
    assert "streams.db" in err(r) and "locked" in err(r), err(r)
    assert stream_records(env, "s") == []


def test_lease_file_write_locked_mid_run_delays_but_loses_nothing(env):
    """Another process holds the lease file's write lock for 3 s (longer than
    lease_duration_ms = 2 s) while the worker checkpoints every batch. The
    worker may consider its leases lost and take them back, but it must not
    crash, must end up with exactly one live shard per lease (no lease taken
    over and over), and must process every record. (An exclusive lock that
    also blocks readers cannot be taken while the worker has the WAL file
    open, so a write lock is the realistic case.)"""
    n = 4000
    env.extra_env["SLOW_MS"] = "5"
    env.write("p.lua", HEX_RECORDING_PROCESSOR)
    env.config([{"name": "s", "processor": "p.lua", "max_records": 50}])
    env.create_stream("s", 2)
    env.put("s", [f"r{i}" for i in range(n)])
    put = set((s, q, d.hex()) for s, q, d in stream_records(env, "s"))
    w = env.worker(name="w1")
    wait_for(lambda: len(read_seen(env.dir / "seen")) >= 500, timeout=60, what="processing to start")
    locker = hold_lock(env, "leases.db", 3, mode="immediate")
    locker.wait(30)

    def all_seen():
        assert w.alive(), f"worker died (exit {w.proc.returncode}):\n{w.logs()[-3000:]}"
        return put <= {(s, q, d) for _, s, q, d in read_seen(env.dir / "seen")}

    wait_for(all_seen, timeout=60, interval=0.2, what="every record after the lock was released")
    time.sleep(5)  # 2.5 lease durations: a lease the worker forgot about would be re-taken meanwhile
    assert w.alive(), f"worker died (exit {w.proc.returncode}):\n{w.logs()[-3000:]}"
    taken = {}
    for ev in w.events("lease_taken"):
        taken[ev["lease"]] = taken.get(ev["lease"], 0) + 1
    lost = {ev["lease"] for ev in w.events("lease_lost")}
    for lease, count in taken.items():
        assert count <= 1 + (lease in lost), f"{lease} taken {count} times (lost: {lease in lost}):\n{w.logs()[-4000:]}"
    assert w.stop() == 0, w.logs()[-3000:]
    stopping = w.events("worker_stopping")
    assert stopping and stopping[0]["shards"] == "2", f"shard objects at stop: {stopping}"
    seen = [(s, q, d) for _, s, q, d in read_seen(env.dir / "seen")]
    assert set(seen) == put
