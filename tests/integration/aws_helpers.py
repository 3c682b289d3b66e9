"""Helpers for the AWS integration tests: the emulators (kinesalite, dynalite)
on 127.0.0.1, raw JSON API calls from the test itself (the emulators check
that an Authorization header is well-formed, not its signature), and a
fault-injecting HTTP proxy."""
import http.client
import itertools
import json
import os
import socket
import struct
import subprocess
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KINESALITE_PORT = int(os.environ.get("KINESALITE_PORT", "4567"))
DYNALITE_PORT = int(os.environ.get("DYNALITE_PORT", "4568"))

# Dummy credentials: the emulators accept any; nothing leaves 127.0.0.1.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIDSHARDRUNTEST",
    "AWS_SECRET_ACCESS_KEY": "shardrun-test-secret",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_REGION": "us-east-1",
}


def emulators_running():
    r = subprocess.run([str(ROOT / "scripts/emulators.sh"), "status"], capture_output=True)
    return r.returncode == 0


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def aws_call(port, target, body, version, timeout=30):
    service = "kinesis" if target.startswith("Kinesis") else "dynamodb"
    headers = {
        "Content-Type": f"application/x-amz-json-{version}",
        "X-Amz-Target": target,
        "X-Amz-Date": "20240101T000000Z",
        "Authorization": f"AWS4-HMAC-SHA256 Credential=AKIDSHARDRUNTEST/20240101/us-east-1/{service}/aws4_request, "
                         "SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=0000",
    }
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("POST", "/", json.dumps(body), headers)
        r = c.getresponse()
        data = r.read()
        out = json.loads(data) if data else {}
        if r.status != 200:
            raise RuntimeError(f"{target}: HTTP {r.status}: {out}")
        return out
    finally:
        c.close()


def kinesis(op, body):
    return aws_call(KINESALITE_PORT, f"Kinesis_20131202.{op}", body, "1.1")


def dynamodb(op, body):
    return aws_call(DYNALITE_PORT, f"DynamoDB_20120810.{op}", body, "1.0")


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
