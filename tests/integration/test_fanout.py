"""Enhanced fan-out (SubscribeToShard) against kinesis-mock, with DynamoDB
leases on dynalite (the `kinesis_mock` fixture of conftest.py).

kinesis-mock serves two ports: plain (HTTP/1.1, or h2c with prior knowledge)
and TLS (ALPN h2 or http/1.1, a certificate made for 127.0.0.1 by
scripts/emulators.py). The drain test runs on each of those four
combinations; the rest on TLS + HTTP/2, AWS's own. Its quirks shape some
tests (docs-efo-notes.md): it pushes one event a second, never sends
ChildShards (the source confirms a closed shard's end with GetRecords), and
ends subscriptions only after 5 minutes (the h2proxy.js in front of it ends
them sooner, and breaks frames on purpose)."""
import collections
import hashlib
import json
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

import emulators
from aws_helpers import AWS_ENV, ROOT, scan_leases, unique
from conftest import RECORDING_PROCESSOR, read_seen, wait_for

MOCK = emulators.KINESIS_MOCK
H2PROXY = Path(__file__).with_name("h2proxy.js")

# name -> (scheme, http_version in the config, the version curl must report)
COMBOS = {
    "http1": ("http", "1.1", "HTTP/1.1"),
    "h2c": ("http", "2", "HTTP/2"),
    "tls-http1": ("https", "1.1", "HTTP/1.1"),
    "tls-h2": ("https", "2", "HTTP/2"),
}


def libcurl_version():
    """(major, minor) of the libcurl shardrun links (the machine's libcurl.so.4)."""
    import ctypes
    lib = ctypes.CDLL("libcurl.so.4")
    lib.curl_version.restype = ctypes.c_char_p
    m = re.match(rb"libcurl/(\d+)\.(\d+)", lib.curl_version())
    return int(m.group(1)), int(m.group(2))


def mock_call(op, body):
    status, out = emulators.call(MOCK, op, body)
    if status != 200:
        raise RuntimeError(f"kinesis-mock {op}: HTTP {status}: {out}")
    return out


def mock_actions():
    """How many requests of each action kinesis-mock got so far (its DEBUG log)."""
    text = MOCK.files("log").read_text(errors="replace")
    return collections.Counter(re.findall(r"action=(\w+) Assembled headers", text))


def connections(pid, port):
    """Established TCP connections of process `pid` to 127.0.0.1:`port`."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                t = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if t.startswith("socket:["):
                inodes.add(t[8:-1])
    except OSError:
        return 0
    n = 0
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            p = line.split()
            if p[3] == "01" and int(p[2].split(":")[1], 16) == port and p[9] in inodes:
                n += 1
    return n


class ConnectionSampler:
    """The most connections a process held to a port, sampled every 50 ms."""

    def __init__(self, pid, port):
        self.pid, self.port, self.most = pid, port, 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.is_set():
            self.most = max(self.most, connections(self.pid, self.port))
            self._stop.wait(0.05)

    def stop(self):
        self._stop.set()
        self._t.join(5)
        return self.most


def hash_of(key):
    return int(hashlib.md5(key.encode()).hexdigest(), 16)


def keys_for(shard_index, shards, n):
    """n partition keys that Kinesis routes to shard `shard_index` of a new stream of `shards` shards."""
    span = (1 << 128) // shards
    out, i = [], 0
    while len(out) < n:
        k = f"k{i}"
        if min(hash_of(k) // span, shards - 1) == shard_index:
            out.append(k)
        i += 1
    return out


class Fanout:
    """An Env configured for kinesis-mock + dynalite, with a unique stream,
    lease table and consumer name."""

    def __init__(self, env):
        self.env = env
        self.stream = unique("s")
        self.app = unique("app")
        self.consumer = unique("c")
        env.extra_env.update(AWS_ENV)
        env.extra_env["SEEN_DIR"] = "seen"

    def source(self, combo="tls-h2", consumer=True, url=None):
        scheme, version, _ = COMBOS[combo]
        src = {"type": "kinesis", "region": "us-east-1",
               "endpoint": url or (MOCK.tls_url if scheme == "https" else MOCK.url), "http_version": version}
        if scheme == "https":
            src["ca_file"] = str(MOCK.ca_file)
        if consumer:
            src["consumer"] = self.consumer
        return src

    def config(self, name="shardrun.lua", combo="tls-h2", consumer=True, url=None, stream=None, **top):
        fields = {
            "application": self.app,
            "source": self.source(combo, consumer, url),
            "leases": {"type": "dynamodb", "region": "us-east-1", "endpoint": emulators.DYNALITE.url},
            "lease_duration_ms": 3000,
            "shard_sync_interval_ms": 1000,
        }
        fields.update(top)
        sc = {"name": self.stream, "processor": "p.lua"}
        sc.update(stream or {})
        return self.env.config([sc], name=name, **fields)

    def admin_config(self):
        """A polling config on the plain port, for the CLI (create, put, split)."""
        if not (self.env.dir / "p.lua").exists():
            self.env.write("p.lua", RECORDING_PROCESSOR)
        self.config(name="admin.lua", combo="http1", consumer=False)

    def create(self, shards):
        self.admin_config()
        self.env.create_stream(self.stream, shards, config="admin.lua")

    def put(self, lines, partition_key=None):
        self.env.put(self.stream, lines, partition_key=partition_key, config="admin.lua")

    def leases(self):
        try:
            return scan_leases(self.app)
        except RuntimeError:
            return {}

    def consumers(self):
        arn = mock_call("DescribeStreamSummary", {"StreamName": self.stream})["StreamDescriptionSummary"]["StreamARN"]
        return mock_call("ListStreamConsumers", {"StreamARN": arn}).get("Consumers") or []


@pytest.fixture
def fo(env, kinesis_mock):
    return Fanout(env)


def assert_exactly_once(seen, expected):
    counts = collections.Counter(d for _, _, _, d in seen)
    dups = {d: n for d, n in counts.items() if n > 1}
    missing = set(expected) - set(counts)
    assert not missing, f"{len(missing)} records never processed, e.g. {sorted(missing)[:5]}"
    assert not dups, f"{len(dups)} records processed more than once, e.g. {list(dups.items())[:5]}"
    assert set(counts) == set(expected)


def test_put_to_kinesis_mock_stores_each_record_once(fo):
    # kinesis-mock answers each stored PutRecords entry with "ErrorCode": null
    fo.create(2)
    fo.put([f"p {i}" for i in range(1200)])
    total = 0
    for sh in mock_call("ListShards", {"StreamName": fo.stream})["Shards"]:
        it = mock_call("GetShardIterator", {"StreamName": fo.stream, "ShardId": sh["ShardId"],
                                            "ShardIteratorType": "TRIM_HORIZON"})["ShardIterator"]
        total += len(mock_call("GetRecords", {"ShardIterator": it, "Limit": 10000})["Records"])
    assert total == 1200


@pytest.mark.parametrize("combo", list(COMBOS))
def test_fanout_drain_processes_every_record_once_without_polling(fo, combo):
    fo.env.write("p.lua", RECORDING_PROCESSOR)
    fo.create(4)
    lines = [f"rec {i}" for i in range(20000)]
    fo.put(lines)
    fo.config(combo=combo)
    before = mock_actions()
    assert before["CreateStream"], "kinesis-mock does not log its requests: start it with KINESIS_MOCK_LOG_LEVEL=DEBUG"
    w = fo.env.worker("--drain")
    port = MOCK.tls_port if COMBOS[combo][0] == "https" else MOCK.port
    sampler = ConnectionSampler(w.pid, port)
    rc = w.wait(180)
    most = sampler.stop()
    assert rc == 0, w.logs()[-3000:]
    assert_exactly_once(read_seen(fo.env.dir / "seen"), lines)
    calls = mock_actions() - before
    assert calls["GetRecords"] == 0 and calls["GetShardIterator"] == 0, f"polling calls were made: {calls}"
    assert calls["SubscribeToShard"] >= 4, calls
    used = {e["http"] for e in w.events("fanout_subscribed")}
    assert used == {COMBOS[combo][2]}, f"subscriptions used {used}"
    if combo == "h2c" and libcurl_version() < (8, 0):
        # libcurl 7.x cannot reuse an h2c connection (curl#10634): one per request
        assert most >= 4, f"h2c on libcurl < 8: a connection per request, saw at most {most}"
    elif COMBOS[combo][2] == "HTTP/2":
        assert most == 1, f"HTTP/2: every call and subscription shares one connection, saw {most}"
    else:
        assert most >= 4, f"HTTP/1.1: a connection per subscription, saw at most {most}"
    leases = fo.leases()
    assert len(leases) == 4 and all(l["checkpoint"].isdigit() for l in leases.values()), leases
    assert [c["ConsumerName"] for c in fo.consumers()] == [fo.consumer]
