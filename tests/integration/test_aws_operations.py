"""The Kinesis/DynamoDB path as a KCL user meets it (issue 13), against
kinesalite + dynalite on 127.0.0.1, with a local TCP proxy of the test's own
where a service must refuse, hang or answer wrongly: credentials follow the
config, read-only commands create nothing, failures say what to fix."""
import collections
import json
import re
import signal
import subprocess
import time

import pytest

from aws_helpers import AWS_ENV, DYNALITE_PORT, KINESALITE_PORT, dynamodb, kinesis
from conftest import RECORDING_PROCESSOR, SHARDRUN, parse_log_line, read_seen, wait_for
from test_aws import Aws, aws  # noqa: F401  (the aws fixture; emulators comes from conftest)


def stderr_events(r, name):
    out = []
    for line in r.stderr.decode(errors="replace").splitlines():
        ev = parse_log_line(line)
        if ev and ev.get("event") == name:
            out.append(ev)
    return out


def tables():
    return dynamodb("ListTables", {})["TableNames"]


def no_env_credentials(aws):
    """No credentials in the environment nor in ~/.aws: HOME is the test's folder."""
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        aws.env.extra_env.pop(k, None)
        aws.env.extra_env[k] = ""
    aws.env.extra_env["HOME"] = str(aws.env.dir)


# ---- 1. credentials follow the config ------------------------------------------------

def test_a_profile_named_in_the_config_beats_environment_credentials(aws):
    aws.env.write("p.lua", RECORDING_PROCESSOR)
    aws.env.write(".aws/credentials", "[prod]\naws_access_key_id = AKIDPRODPROFILE\n"
                                      "aws_secret_access_key = prod-profile-secret\n")
    aws.env.extra_env["HOME"] = str(aws.env.dir)  # AWS_ACCESS_KEY_ID stays set (AWS_ENV)
    aws.config(aws={"profile": "prod"})
    aws.create(1)
    aws.put(["a", "b"])
    w = aws.env.worker("--drain")
    assert w.wait(60) == 0, w.logs()[-3000:]
    (resolved,) = w.events("aws_credentials_resolved")
    assert resolved["source"] == "profile" and resolved["profile"] == "prod", resolved
    assert resolved["key"] == "****FILE"
    assert "prod-profile-secret" not in w.logs()


def test_a_profile_named_in_the_config_that_does_not_exist_fails_naming_it(aws):
    aws.env.write("p.lua", RECORDING_PROCESSOR)
    aws.config()
    aws.create(1)
    aws.env.extra_env["HOME"] = str(aws.env.dir)  # environment credentials are set, and must not be used
    aws.config(aws={"profile": "nope"})
    start = time.monotonic()
    r = aws.env.run("run", "--drain", check=False, timeout=60)
    err = r.stderr.decode()
    assert r.returncode == 1, err
    assert time.monotonic() - start < 20
    (failed,) = stderr_events(r, "backend_open_failed")
    assert failed["error"].startswith("aws.profile in the config names a profile that gives no credentials: "
                                      'profile "nope" is in neither'), failed
    assert err.count("nope") == 1, "said once"
    assert aws.app not in tables(), "nothing created"


@pytest.mark.parametrize("setting, reason", [
    ({"AWS_PROFILE": "nope"}, 'profile "nope" is in neither'),
    ({"AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials"}, "/nonexistent/credentials (no such file)"),
    ({"AWS_ACCESS_KEY_ID": "AKIDHALF"}, "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not"),
])
def test_without_credentials_the_error_names_each_step_of_the_chain_once(aws, setting, reason):
    aws.env.write("p.lua", RECORDING_PROCESSOR)
    aws.config()
    no_env_credentials(aws)
    aws.env.extra_env.update(setting)
    r = aws.env.run("run", check=False, timeout=60)
    err = r.stderr.decode()
    assert r.returncode == 1, err
    assert err.count("no AWS credentials found") == 1, err
    (failed,) = stderr_events(r, "backend_open_failed")
    err = failed["error"]
    assert reason in err
    for step in ("1. config (aws table)", "2. environment", "3. web identity", "4. shared files",
                 "5. container (ECS/EKS)", "6. EC2 instance metadata"):
        assert step in err, f"{step} not named: {err}"
    assert "after 0 attempts" not in err


# ---- 5. what AWS would refuse later is a config error now ------------------------------

@pytest.mark.parametrize("source, leases, top, field", [
    ({"endpoint": "127.0.0.1:4567"}, {}, {}, "source.endpoint: expected a URL starting with http:// or https://"),
    ({"endpoint": "http://127.0.0.1:4567/kinesis"}, {}, {}, "source.endpoint: \"http://127.0.0.1:4567/kinesis\" has a path"),
    ({}, {"endpoint": "localhost:4568"}, {}, "leases.endpoint: expected a URL"),
    ({"region": "us east 1"}, {}, {}, "source.region: \"us east 1\" is not an AWS region name"),
    ({}, {"table": "x"}, {}, "leases.table: \"x\" is not a DynamoDB table name (3 to 255 of A-Z a-z 0-9 _ . -)"),
    ({}, {"table": "orders/leases"}, {}, "leases.table: \"orders/leases\" is not a DynamoDB table name"),
    ({}, {}, {"application": "word count"}, "application: \"word count\" is not a DynamoDB table name"),
    ({"region": None}, {}, {"no_region": True}, "source.region: not set, and neither AWS_REGION"),
])
def test_each_bad_aws_setting_exits_2_naming_the_field(env, source, leases, top, field):
    env.write("p.lua", RECORDING_PROCESSOR)
    env.extra_env.update(AWS_ENV)
    if top.pop("no_region", False):
        env.extra_env["AWS_REGION"] = ""
        env.extra_env["HOME"] = str(env.dir)
    src = {"type": "kinesis", "region": "us-east-1", "endpoint": "http://127.0.0.1:1"}
    src.update(source)
    src = {k: v for k, v in src.items() if v is not None}
    lea = {"type": "dynamodb", "region": "us-east-1", "endpoint": "http://127.0.0.1:1"}
    lea.update(leases)
    env.config([{"name": "s", "processor": "p.lua"}], source=src, leases=lea, **top)
    for command in (["run"], ["status"]):
        r = env.run(*command, check=False, timeout=30)
        err = r.stderr.decode()
        assert r.returncode == 2, f"{command}: {err}"
        assert re.search(r"shardrun\.lua(:\d+)?: " + re.escape(field), err), err


# ---- 2. read-only commands create nothing; run creates the table only for a stream that exists ----

def test_status_on_a_missing_lease_table_creates_nothing(aws):
    aws.env.write("p.lua", RECORDING_PROCESSOR)
    aws.config(leases={"type": "dynamodb", "region": "us-east-1", "endpoint": aws.dynamodb_url,
                       "table": "mistyped-table-" + aws.app})
    before = set(tables())
    r = aws.env.run("status", "--json", check=False, timeout=60)
    err = r.stderr.decode()
    assert r.returncode == 0, err
    assert json.loads(r.stdout) == [], "no table, no leases"
    (missing,) = stderr_events(r, "lease_table_missing")
    assert missing["table"] == "mistyped-table-" + aws.app and "leases.table" in missing["note"], missing
    assert set(tables()) == before, "status created a table"
    assert "lease_table_create" not in err


def test_status_watch_on_a_missing_lease_table_says_so_once(aws):
    # --watch lists the table every second: the warning is for the first answer
    # only (without a terminal, frames follow one another on stdout)
    aws.env.write("p.lua", RECORDING_PROCESSOR)
    aws.config(leases={"type": "dynamodb", "region": "us-east-1", "endpoint": aws.dynamodb_url,
                       "table": "mistyped-table-" + aws.app})
    p = subprocess.Popen([SHARDRUN, "status", "--watch"], cwd=aws.env.dir, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=aws.env.proc_env())
    time.sleep(4)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=20)
    err = err.decode()
    assert out, "no frame"
    assert err.count("lease_table_missing") == 1, err


def test_stream_list_creates_nothing(aws):
    aws.env.write("p.lua", RECORDING_PROCESSOR)
    aws.config()
    aws.create(1)
    before = set(tables())
    r = aws.env.run("stream", "list", timeout=60)
    assert aws.stream in r.stdout.decode()
    assert set(tables()) == before


def test_run_against_a_missing_stream_exits_1_and_leaves_no_table(aws):
    aws.env.write("p.lua", RECORDING_PROCESSOR)
    aws.config()  # the stream is never created
    r = aws.env.run("run", check=False, timeout=60)
    err = r.stderr.decode()
    assert r.returncode == 1, err
    assert f"stream {aws.stream} does not exist" in err
    assert aws.app not in tables(), "the lease table was created for a stream that does not exist"
    # once the stream exists, the same config creates the table and runs
    aws.create(1)
    aws.put(["x"])
    w = aws.env.worker("--drain")
    assert w.wait(60) == 0, w.logs()[-3000:]
    assert aws.app in tables()


# ---- 3. a Kinesis endpoint that is wrong, or not Kinesis, stops the worker at start ----

def refused_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: connections are refused
    return port


@pytest.mark.parametrize("where, reason", [
    ("refused", "connection failed"),
    ("dynalite", "does not speak the Kinesis API"),
])
def test_a_wrong_kinesis_endpoint_exits_1_at_start_with_the_reason(aws, where, reason):
    aws.env.write("p.lua", RECORDING_PROCESSOR)
    url = f"http://127.0.0.1:{refused_port()}" if where == "refused" else f"http://127.0.0.1:{DYNALITE_PORT}"
    aws.config(kinesis_url=url)
    start = time.monotonic()
    r = aws.env.run("run", check=False, timeout=90)
    err = r.stderr.decode()
    assert r.returncode == 1, err
    assert time.monotonic() - start < 40, "bounded"
    (cannot,) = stderr_events(r, "worker_cannot_start")
    assert reason in cannot["error"] and aws.stream in cannot["error"], cannot
    if where == "dynalite":
        assert "check source.endpoint" in cannot["error"]
    assert aws.app not in tables(), "no lease table for a stream that could not be read"


# ---- 4 and 6: a DynamoDB outage: bounded logs, and a shutdown that says what it left ----

class Switch:
    """A FaultProxy plan the test flips: 'ok', or the fault to inject."""

    def __init__(self):
        self.mode = "ok"

    def __call__(self, n):
        return self.mode


def start_two_shards(aws, dynamodb_url, **top):
    aws.env.write("p.lua", RECORDING_PROCESSOR)
    aws.config(dynamodb_url=dynamodb_url, **top)
    aws.create(2)
    aws.put([f"r{i}" for i in range(20)])
    w = aws.env.worker()
    wait_for(lambda: len(read_seen(aws.env.dir / "seen")) == 20, 60, what="records processed")
    wait_for(lambda: len(w.events("shard_started")) == 2, 30, what="both shards started")
    return w


def log_lines_since(w, mark):
    return w.logs()[mark:].splitlines()


def test_a_30s_dynamodb_outage_is_told_in_a_bounded_number_of_lines(aws):
    from aws_helpers import FaultProxy
    switch = Switch()
    proxy = FaultProxy(DYNALITE_PORT, "ThrottlingException", plan=switch)
    try:
        w = start_two_shards(aws, proxy.url, shard_sync_interval_ms=60000)
        mark = len(w.logs())
        switch.mode = "reset"            # every DynamoDB request: connection reset
        time.sleep(30)
        switch.mode = "ok"
        wait_for(lambda: any(parse_log_line(l) and parse_log_line(l).get("event") == "lease_store_recovered"
                             for l in log_lines_since(w, mark)), 60, what="recovery logged")
        wait_for(lambda: len(w.events("shard_started")) >= 4, 60, what="leases taken again")
        lines = log_lines_since(w, mark)
        events = collections.Counter(parse_log_line(l).get("event") for l in lines if parse_log_line(l))
        assert w.stop(30) == 0, w.logs()[-3000:]
        assert len(lines) <= 45, f"{len(lines)} lines for one outage: {events}"
        assert events["aws_http_retry"] <= 2, events          # the first of the outage, in full
        assert events["aws_http_outage"] >= 2, events         # then one line per 10 s with counts
        (recovered,) = [parse_log_line(l) for l in lines
                        if parse_log_line(l) and parse_log_line(l).get("event") == "aws_http_recovered"]
        assert float(recovered["outage_s"]) >= 25, recovered
        for ev in (parse_log_line(l) for l in lines):
            if ev and ev.get("event") == "lease_write_failed":
                assert ev["op"] in ("renew", "checkpoint", "release", "take", "handoff"), ev
    finally:
        proxy.close()


def test_a_shutdown_during_a_dynamodb_hang_exits_1_naming_what_it_left(aws):
    from aws_helpers import FaultProxy
    switch = Switch()
    proxy = FaultProxy(DYNALITE_PORT, "ThrottlingException", plan=switch, stall_s=120)
    try:
        w = start_two_shards(aws, proxy.url, shard_sync_interval_ms=60000)
        keys = set(aws.leases())
        assert len(keys) == 2
        switch.mode = "stall"            # DynamoDB holds every request without answering
        aws.put([f"late{i}" for i in range(10)])
        wait_for(lambda: len(read_seen(aws.env.dir / "seen")) == 30, 30, what="late records processed")
        start = time.monotonic()
        code = w.stop(90)
        assert code != 0, "a shutdown that could not release its leases is not a clean exit"
        assert time.monotonic() - start < 60
        not_released = {e["lease"] for e in w.events("lease_not_released")}
        assert not_released == keys, (not_released, keys)
        assert w.events("checkpoint_not_written"), "the late records' checkpoint never reached DynamoDB"
        (stopped,) = w.events("worker_stopped")
        assert stopped["status"] != "0"
    finally:
        switch.mode = "ok"
        proxy.close()


def test_a_clean_shutdown_logs_each_release_and_exits_0(aws):
    aws.env.write("p.lua", RECORDING_PROCESSOR)
    w = start_two_shards(aws, aws.dynamodb_url)
    assert w.stop(30) == 0
    assert {e["lease"] for e in w.events("lease_released")} == set(aws.leases())
    assert not w.events("lease_not_released") and not w.events("shutdown_unclean")


def test_status_is_quiet_on_stderr_unless_verbose(aws):
    aws.env.write("p.lua", RECORDING_PROCESSOR)
    aws.config()
    aws.create(1)
    aws.put(["a"])
    w = aws.env.worker("--drain")
    assert w.wait(60) == 0
    r = aws.env.run("status", timeout=60)
    assert r.stderr == b"", r.stderr.decode()
    r = aws.env.run("status", "-v", timeout=60)
    assert b"aws_credentials_resolved" in r.stderr
    r = aws.env.run("stream", "list", timeout=60)
    assert r.stderr == b""


# ---- 7. status: shard order, aligned columns, lag as in --json --------------------------

def test_status_rows_are_in_shard_order_aligned_and_agree_with_json(aws):
    aws.env.write("p.lua", RECORDING_PROCESSOR)
    aws.config()
    aws.create(3)
    aws.put([f"r{i}" for i in range(60)])
    w = aws.env.worker()
    wait_for(lambda: len(read_seen(aws.env.dir / "seen")) == 60, 60, what="records processed")
    wait_for(lambda: all(r.get("millisBehind") is not None and r["checkpoint"].isdigit() for r in aws.env.status())
             and len(aws.env.status()) == 3, 30, what="owners report their lag")
    table = aws.env.run("status", timeout=60).stdout.decode().splitlines()
    rows = aws.env.status()
    assert [r["shard"] for r in rows] == sorted(r["shard"] for r in rows), "JSON in shard order"
    header, lines = table[0], table[1:]
    assert [l.split()[1] for l in lines] == sorted(r["shard"] for r in rows), "table in shard order"
    starts = [m.start() for m in re.finditer(r"\S+", header)] + [10 ** 6]
    for line in lines:
        cells = list(re.finditer(r"\S+", line))[:8]
        for k, m in enumerate(cells):  # every cell sits in its header's column
            assert starts[k] <= m.start() and m.end() <= starts[k + 1], f"misaligned:\n{header}\n{line}"
    by_shard = {r["shard"]: r for r in rows}
    for line in lines:
        cols = line.split()
        r = by_shard[cols[1]]
        assert len(r["checkpoint"]) == 56, r["checkpoint"]
        head, _, tail = cols[3].partition("..")
        assert len(cols[3]) <= 22 and r["checkpoint"].startswith(head) and r["checkpoint"].endswith(tail)
        assert cols[7] == f"{r['millisBehind']}ms", (line, r)
    assert w.stop(30) == 0


# ---- 8. test data with per-line keys; split and merge name their children ----------------

def all_records(stream):
    from aws_helpers import read_shard
    out = []
    for sh in kinesis("ListShards", {"StreamName": stream})["Shards"]:
        out += [(sh["ShardId"], d.decode(), k) for _, d, k in read_shard(stream, sh["ShardId"])]
    return out


def test_put_takes_a_key_per_line_from_a_json_field_or_before_a_tab(aws):
    aws.env.write("p.lua", RECORDING_PROCESSOR)
    aws.config()
    aws.create(4)
    import json
    lines = [json.dumps({"user": f"u{i % 5}", "n": i}) for i in range(50)]
    r = aws.env.run("put", "--key-field", "user", aws.stream, input=("\n".join(lines) + "\n").encode(), timeout=60)
    assert b"put 50 records" in r.stderr
    tab = [f"k{i % 3}\tvalue {i}" for i in range(30)]
    aws.env.run("put", "--key-tab", aws.stream, input=("\n".join(tab) + "\n").encode(), timeout=60)
    recs = all_records(aws.stream)
    by_key = collections.defaultdict(list)
    shard_of = collections.defaultdict(set)
    for shard, data, key in recs:
        by_key[key].append(data)
        shard_of[key].add(shard)
    for u in range(5):
        assert [json.loads(d)["n"] for d in by_key[f"u{u}"]] == list(range(u, 50, 5)), "in order, one shard per key"
        assert len(shard_of[f"u{u}"]) == 1
    for k in range(3):
        assert by_key[f"k{k}"] == [f"value {i}" for i in range(k, 30, 3)], "the key and its tab are not in the data"
    bad = aws.env.run("put", "--key-field", "user", aws.stream, input=b'{"user":"a"}\n{"nouser":1}\n', check=False)
    assert bad.returncode == 1 and b"line 2" in bad.stderr and b"no such field" in bad.stderr
    both = aws.env.run("put", "--key-tab", "--partition-key", "x", aws.stream, input=b"a\n", check=False)
    assert both.returncode == 2


def test_split_and_merge_print_the_child_shard_ids(aws):
    aws.env.write("p.lua", RECORDING_PROCESSOR)
    aws.config()
    aws.create(2)
    out = aws.env.run("stream", "split", aws.stream, "shardId-000000000000", timeout=60).stdout.decode().strip()
    children = {s["ShardId"] for s in kinesis("ListShards", {"StreamName": aws.stream})["Shards"]
                if s.get("ParentShardId") == "shardId-000000000000"}
    assert len(children) == 2
    assert out == f"ok split {aws.stream}: shardId-000000000000 -> " + " ".join(sorted(children)), out
    a, b = sorted(children)
    out = aws.env.run("stream", "merge", aws.stream, a, b, timeout=60).stdout.decode().strip()
    (merged,) = [s["ShardId"] for s in kinesis("ListShards", {"StreamName": aws.stream})["Shards"]
                 if s.get("ParentShardId") in (a, b) and s.get("AdjacentParentShardId") in (a, b)]
    assert out == f"ok merge {aws.stream}: {a} + {b} -> {merged}", out


# ---- 9. KCL 2.x/3.x multi-stream lease keys ----------------------------------------------

def test_kcl_multistream_rows_are_read_and_new_rows_written_in_the_kcls_form(aws):
    from aws_helpers import create_lease_table, read_shard
    aws.env.write("p.lua", RECORDING_PROCESSOR)
    other = aws.stream + "-b"
    ident = {aws.stream: f"123456789012:{aws.stream}:1700000000", other: f"123456789012:{other}:1700000001"}
    streams = [{"name": s, "processor": "p.lua", "idle_time_between_reads_ms": 200, "kcl_stream_identifier": ident[s]}
               for s in (aws.stream, other)]
    aws.env.config(streams, application=aws.app,
                   source={"type": "kinesis", "region": "us-east-1", "endpoint": aws.kinesis_url},
                   leases={"type": "dynamodb", "region": "us-east-1", "endpoint": aws.dynamodb_url},
                   lease_duration_ms=3000, shard_sync_interval_ms=1000)
    aws.env.create_stream(aws.stream, 1)
    aws.env.create_stream(other, 1)
    first = [f"a {i}" for i in range(40)]
    second = [f"b {i}" for i in range(10)]
    aws.env.put(aws.stream, first)
    aws.env.put(other, second)
    recs = read_shard(aws.stream, "shardId-000000000000")
    create_lease_table(aws.app)
    # the row a KCL 2.x MultiStreamTracker application wrote (released by its owner)
    key = ident[aws.stream] + ":shardId-000000000000"
    dynamodb("PutItem", {"TableName": aws.app, "Item": {
        "leaseKey": {"S": key}, "streamName": {"S": ident[aws.stream]}, "shardId": {"S": "shardId-000000000000"},
        "leaseCounter": {"N": "12"}, "checkpoint": {"S": recs[29][0]}, "checkpointSubSequenceNumber": {"N": "0"},
        "ownerSwitchesSinceCheckpoint": {"N": "0"}, "startingHashKey": {"S": "0"},
        "endingHashKey": {"S": "340282366920938463463374607431768211455"}}})
    w = aws.env.worker("--drain")
    assert w.wait(90) == 0, w.logs()[-3000:]
    seen = [d for *_, d in read_seen(aws.env.dir / "seen")]
    assert sorted(d for d in seen if d.startswith("a ")) == sorted(first[30:]), "resumed after the KCL's checkpoint"
    assert sorted(d for d in seen if d.startswith("b ")) == sorted(second)
    rows = aws.leases()
    assert set(rows) == {key, ident[other] + ":shardId-000000000000"}, rows.keys()
    for k, row in rows.items():
        stream_id = k.rsplit(":", 1)[0]
        assert row["streamName"] == stream_id and row["shardId"] == "shardId-000000000000", row
    assert rows[key]["leaseCounter"] > 12 and rows[key]["checkpoint"] == recs[-1][0]


def test_a_kcl_stream_identifier_must_name_its_stream(env):
    env.write("p.lua", RECORDING_PROCESSOR)
    env.extra_env.update(AWS_ENV)
    env.config([{"name": "orders", "processor": "p.lua", "kcl_stream_identifier": "123456789012:payments:1700000000"}],
               source={"type": "kinesis", "region": "us-east-1"}, leases={"type": "dynamodb", "region": "us-east-1"})
    r = env.run("run", check=False, timeout=30)
    assert r.returncode == 2
    assert b"streams[1].kcl_stream_identifier: expected \"<account id>:orders:<creation epoch seconds>\"" in r.stderr
