"""Helpers for the AWS integration tests: raw JSON API calls to the
emulators (kinesalite, dynalite) from the test itself, and a fault-injecting
HTTP proxy. The emulators themselves (ports, start, stop) are
scripts/emulators.py, behind the `emulators` fixture of conftest.py."""
import collections
import http.client
import itertools
import json
import socket
import struct
import threading
import time
import uuid

import emulators  # scripts/ (on sys.path through conftest.py)
from conftest import RECORDING_PROCESSOR, wait_for
from emulators import AWS_ENV, ROOT  # noqa: F401  (re-exported for the tests)

KINESALITE_PORT = emulators.KINESALITE.port
DYNALITE_PORT = emulators.DYNALITE.port


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _call(emu, op, body, timeout=30):
    status, out = emulators.call(emu, op, body, timeout)
    if status != 200:
        raise RuntimeError(f"{emu.target_prefix}.{op}: HTTP {status}: {out}")
    return out


def kinesis(op, body):
    return _call(emulators.KINESALITE, op, body)


def dynamodb(op, body):
    return _call(emulators.DYNALITE, op, body)


def read_shard(stream, shard):
    """Every record of a shard: [(seq, data bytes, pkey)]."""
    import base64
    it = kinesis("GetShardIterator", {"StreamName": stream, "ShardId": shard,
                                      "ShardIteratorType": "TRIM_HORIZON"})["ShardIterator"]
    out = []
    while it:
        r = kinesis("GetRecords", {"ShardIterator": it, "Limit": 10000})
        out += [(x["SequenceNumber"], base64.b64decode(x["Data"]), x["PartitionKey"]) for x in r["Records"]]
        if not r["Records"]:
            break
        it = r.get("NextShardIterator")
    return out


def scan_leases(table):
    """{leaseKey: {attribute: python value}} of a lease table."""
    items, start = [], None
    while True:
        q = {"TableName": table, "ConsistentRead": True}
        if start:
            q["ExclusiveStartKey"] = start
        r = dynamodb("Scan", q)
        items += r["Items"]
        start = r.get("LastEvaluatedKey")
        if not start:
            break
    out = {}
    for it in items:
        row = {}
        for k, v in it.items():
            (t, x), = v.items()
            row[k] = int(x) if t == "N" else x
        out[row["leaseKey"]] = row
    return out


def create_lease_table(table):
    dynamodb("CreateTable", {"TableName": table, "BillingMode": "PAY_PER_REQUEST",
                             "AttributeDefinitions": [{"AttributeName": "leaseKey", "AttributeType": "S"}],
                             "KeySchema": [{"AttributeName": "leaseKey", "KeyType": "HASH"}]})
    for _ in range(200):
        if dynamodb("DescribeTable", {"TableName": table})["Table"]["TableStatus"] == "ACTIVE":
            return
        time.sleep(0.05)
    raise AssertionError(f"table {table} not ACTIVE")


# One file for every shard of the worker, a line per record ("partitionKey data"),
# written in the order batches were processed: per partition key, data must come in order.
ORDER_PROCESSOR = r'''
local P = {}
function P.processRecords(records, shard)
  local parts = {}
  for i = 1, #records do parts[#parts + 1] = records[i].partitionKey .. " " .. records[i].data .. "\n" end
  local f = assert(io.open("order.log", "a"))
  f:write(table.concat(parts))
  f:close()
  return "checkpoint"
end
function P.shardEnded(shard) return "checkpoint" end
function P.shutdownRequested(shard) return "checkpoint" end
return P
'''


class KeyedRounds:
    """Numbered records on eight partition keys, put in rounds through
    `target.put` (the Kinesis or the fan-out fixture of a test), and the
    check of ORDER_PROCESSOR's order.log: each key's numbers in order, none
    missing. Shared by the split-while-consuming tests of both sources."""

    def __init__(self, target):
        self.target, self.n = target, 0
        self.keys = [f"key{k}" for k in range(8)]
        self.log = target.env.dir / "order.log"

    def put_round(self, count):
        for k in self.keys:
            self.target.put([f"{self.n + i}" for i in range(count)], partition_key=k)
        self.n += count

    def wait_started(self):
        wait_for(self.log.exists, 30, what="processing started")

    def per_key(self):
        per_key = collections.defaultdict(list)
        for line in self.log.read_text().splitlines() if self.log.exists() else []:
            k, d = line.split(" ")
            per_key[k].append(int(d))
        return per_key

    def wait_all_processed(self, worker=None):
        # every number of every key, not a count of lines: a record processed
        # twice would make the count without the last records
        def missing():
            per_key = self.per_key()
            return {k: sorted(set(range(self.n)) - set(per_key[k])) for k in self.keys
                    if set(per_key[k]) != set(range(self.n))}
        try:
            wait_for(lambda: not missing(), 90, what="every record processed")
        except AssertionError as e:
            gaps = {k: f"{v[:10]} (of {len(v)})" for k, v in missing().items()}
            raise AssertionError(f"{e}; missing: {gaps}{warnings_of(worker)}") from None

    def assert_in_order(self, worker=None):
        per_key, problems = self.per_key(), []
        for k in self.keys:  # every key's problems at once: one may explain another's
            got = per_key[k]
            missing = sorted(set(range(self.n)) - set(got))
            repeated = sorted(d for d, c in collections.Counter(got).items() if c > 1)
            if got != sorted(got):
                problems.append(f"{k}: records out of order across the split: {describe_order(got)}")
            if missing:
                problems.append(f"{k}: records missing: {missing[:20]} (of {len(missing)})")
            if repeated:
                problems.append(f"{k}: records repeated: {repeated[:20]} (of {len(repeated)})")
        assert not problems, "; ".join(problems) + warnings_of(worker)


def warnings_of(worker):
    """The worker's last warnings and errors, for a failure message."""
    if worker is None:
        return ""
    lines = [l for l in worker.logs().splitlines() if "level=warn" in l or "level=error" in l]
    return "\nthe worker's last warnings:\n" + "\n".join(lines[-15:]) if lines else "\nthe worker logged no warning"


def describe_order(numbers):
    """Where a list of numbers first goes back, for a failure message."""
    for i in range(1, len(numbers)):
        if numbers[i] < numbers[i - 1]:
            return f"{numbers[max(0, i - 3):i + 3]} at position {i} of {len(numbers)}"
    return "in order"


class FaultProxy:
    """An HTTP/1.1 proxy on 127.0.0.1 in front of one emulator. Requests are
    numbered; by their number some are answered 500, some with a throttling
    error, some get their connection reset, some stall before being
    forwarded; the rest are forwarded. Faults are decided before forwarding,
    so a faulted write never reached the emulator."""

    def __init__(self, upstream_port, throttle_type, plan=None, stall_s=6.0, answer=None):
        self.upstream = upstream_port
        # answer(headers, body) -> None (go on with the plan) or (status, body bytes) to answer with
        self.answer = answer
        self.throttle_type = throttle_type
        self.stall_s = stall_s
        self.plan = plan or self.default_plan
        self.counter = itertools.count()
        self.faults = {"500": 0, "throttle": 0, "reset": 0, "stall": 0, "ok": 0}
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.closed = False
        threading.Thread(target=self.accept_loop, daemon=True).start()

    @staticmethod
    def default_plan(n):
        if n % 11 == 3:
            return "500"
        if n % 11 == 7:
            return "throttle"
        if n % 23 == 5:
            return "reset"
        if n % 97 == 50:
            return "stall"
        return "ok"

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def close(self):
        self.closed = True
        self.sock.close()

    def accept_loop(self):
        while not self.closed:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def read_request(self, f):
        line = f.readline()
        if not line:
            return None
        headers = {}
        while True:
            h = f.readline()
            if h in (b"\r\n", b"\n", b""):
                break
            k, _, v = h.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        body = f.read(int(headers.get("content-length", "0")))
        return line, headers, body

    def respond(self, c, status, body, ctype="application/x-amz-json-1.1"):
        reason = {200: "OK", 400: "Bad Request", 500: "Internal Server Error"}.get(status, "X")
        c.sendall(f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                  f"x-amzn-RequestId: fault-{uuid.uuid4().hex[:8]}\r\n\r\n".encode() + body)

    def serve(self, c):
        f = c.makefile("rb")
        try:
            while True:
                req = self.read_request(f)
                if req is None:
                    return
                line, headers, body = req
                own = self.answer(headers, body) if self.answer else None
                if own is not None:
                    self.respond(c, own[0], own[1])
                    continue
                with self.lock:
                    n = next(self.counter)
                    kind = self.plan(n)
                    self.faults[kind] += 1
                if kind == "500":
                    self.respond(c, 500, b'{"__type":"InternalFailure","message":"injected"}')
                    continue
                if kind == "throttle":
                    self.respond(c, 400, json.dumps({"__type": self.throttle_type,
                                                     "message": "injected throttling"}).encode())
                    continue
                if kind == "reset":
                    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    c.close()
                    return
                if kind == "stall":
                    time.sleep(self.stall_s)
                up = http.client.HTTPConnection("127.0.0.1", self.upstream, timeout=60)
                fwd = {k: v for k, v in headers.items() if k not in ("connection", "content-length")}
                up.request("POST", line.split()[1].decode(), body, fwd)
                r = up.getresponse()
                data = r.read()
                up.close()
                self.respond(c, r.status, data, r.getheader("Content-Type", "application/json"))
        except OSError:
            return
        finally:
            try:
                c.close()
            except OSError:
                pass


class FakeAws:
    """A scripted AWS JSON API endpoint on 127.0.0.1: answers by X-Amz-Target
    operation ("PutRecords", "ListShards", ...) with what the test's handler
    returns, (status, body dict) or None for a 400 UnknownOperationException;
    records every (operation, request body). For answers the emulators never
    give: JSON nulls, odd shapes, errors on demand."""

    def __init__(self, handler):
        import http.server

        fake = self
        self.handler = handler
        self.calls = []
        self.lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                op = self.headers.get("X-Amz-Target", "").rpartition(".")[2]
                req = json.loads(body) if body else {}
                with fake.lock:
                    fake.calls.append((op, req))
                out = fake.handler(op, req)
                status, answer = out if out else (400, {"__type": "UnknownOperationException"})
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def ops(self, name):
        with self.lock:
            return [req for op, req in self.calls if op == name]

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def proxied_kinesis_project(env, proxy, records, **top):
    """A Kinesis + DynamoDB project whose worker reads Kinesis through `proxy`
    (a FaultProxy in front of kinesalite): direct.lua goes straight to
    kinesalite (for stream create and put), shardrun.lua through the proxy
    with the extra top-level fields `top`. RECORDING_PROCESSOR; a 2-shard
    stream holding `records` records k0, k1, ... Returns (stream, application)."""
    env.extra_env.update(AWS_ENV)
    stream, app = unique("s"), unique("app")
    common = {"application": app, "leases": {"type": "dynamodb", "region": "us-east-1",
                                             "endpoint": f"http://127.0.0.1:{DYNALITE_PORT}"}}
    direct = {"type": "kinesis", "region": "us-east-1", "endpoint": f"http://127.0.0.1:{KINESALITE_PORT}"}
    env.config([{"name": stream, "processor": "p.lua"}], name="direct.lua", source=direct, **common)
    env.config([{"name": stream, "processor": "p.lua", "idle_time_between_reads_ms": 200}],
               source=dict(direct, endpoint=proxy.url), **common, **top)
    env.write("p.lua", RECORDING_PROCESSOR)
    env.create_stream(stream, 2, config="direct.lua")
    env.put(stream, [f"k{i}" for i in range(records)], config="direct.lua")
    return stream, app
