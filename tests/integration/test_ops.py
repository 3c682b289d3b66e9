"""From first try to production host (issue 17).

README's quick start run verbatim in a fresh copy of the tree; `shardrun
init` -> `shardrun test` -> `shardrun run --drain`; config errors with lines
and suggestions; the tree `make install DESTDIR=...` writes, running a drain
with no source tree around it; the systemd unit (systemd-analyze verify) and
the sd_notify protocol; the Debian package installed with dpkg -i and removed.
"""
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ASAN, ROOT, SHARDRUN, parse_log_line, wait_for


def proc_env(**extra):
    """The caller's environment without AWS settings and proxies (as conftest's Env)."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and not k.lower().endswith("_proxy")}
    e.update(AWS_EC2_METADATA_DISABLED="true", NO_PROXY="127.0.0.1,localhost")
    e.update(extra)
    return e


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
    in dest. Without git: the tree minus what .gitignore names."""
    dest.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True)
    if r.returncode == 0:
        for name in r.stdout.decode().split("\0"):
            src = ROOT / name
            if name and src.is_file():
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / name)
    else:
        shutil.copytree(ROOT, dest, dirs_exist_ok=True, symlinks=True,
                        ignore=shutil.ignore_patterns("build*", "data", "shardrun", ".git", "__pycache__"))
    for built in ("build", "shardrun", ".deps"):
        src = ROOT / built
        if src.is_symlink() or src.is_file():
            shutil.copy2(src, dest / built, follow_symlinks=False)
        elif src.is_dir():
            shutil.copytree(src, dest / built, symlinks=True)
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
