"""Answers a Kinesis implementation may legally give that the emulators never
do, from a scripted endpoint on 127.0.0.1 (aws_helpers.FakeAws): a JSON null
is an absent value; every retry says why and ends."""
import time

import pytest

from aws_helpers import AWS_ENV, FakeAws
from conftest import parse_log_line


@pytest.fixture
def fake_env(env):
    env.extra_env.update(AWS_ENV)
    env.write("p.lua", "return { processRecords = function() end }\n")
    return env


def kinesis_config(env, url):
    env.config([{"name": "words", "processor": "p.lua"}],
               source={"type": "kinesis", "region": "us-east-1", "endpoint": url})


def put_answer(entries):
    return 200, {"FailedRecordCount": sum(1 for e in entries if e.get("ErrorCode")), "Records": entries}


def ok_entry(i):
    return {"SequenceNumber": str(1000 + i), "ShardId": "shardId-000000000000", "ErrorCode": None,
            "ErrorMessage": None}


def refused_entry(code="ProvisionedThroughputExceededException", msg="Rate exceeded for shard shardId-000000000000"):
    return {"ErrorCode": code, "ErrorMessage": msg}


def events(stderr, name):
    out = []
    for line in stderr.decode(errors="replace").splitlines():
        ev = parse_log_line(line)
        if ev and ev.get("event") == name:
            out.append(ev)
    return out


def put_words(fake_env, fake, data, timeout=60):
    """`shardrun put` of `data` (lines) to stream words of the Kinesis endpoint `fake`: the finished run."""
    kinesis_config(fake_env, fake.url)
    return fake_env.run("put", "words", input=data, check=False, timeout=timeout)


def refuse_every_entry(code, msg):
    """A FakeAws handler that answers every PutRecords with each entry refused (code, msg)."""
    def handler(op, req):
        return put_answer([refused_entry(code, msg) for _ in req["Records"]]) if op == "PutRecords" else None
    return handler


def test_put_takes_null_error_codes_as_written(fake_env):
    with FakeAws(lambda op, req: put_answer([ok_entry(i) for i in range(len(req["Records"]))])
                 if op == "PutRecords" else None) as fake:
        start = time.monotonic()
        r = put_words(fake_env, fake, b"a\nb\nc\n")
        assert r.returncode == 0, r.stderr.decode()
        assert time.monotonic() - start < 10, "no retries: every entry was written"
        assert "put 3 records to words" in r.stderr.decode()
        assert len(fake.ops("PutRecords")) == 1
        assert not events(r.stderr, "put_retry")


def test_put_retries_only_refused_entries_and_says_why(fake_env):
    def handler(op, req):
        if op != "PutRecords":
            return None
        first = len([c for c in fake.calls if c[0] == "PutRecords"]) == 1
        return put_answer([refused_entry() if first and i == 1 else ok_entry(i) for i in range(len(req["Records"]))])

    with FakeAws(handler) as fake:
        r = put_words(fake_env, fake, b"a\nb\nc\n")
        assert r.returncode == 0, r.stderr.decode()
        calls = fake.ops("PutRecords")
        assert [len(c["Records"]) for c in calls] == [3, 1], "the second call carries only the refused entry"
        (retry,) = events(r.stderr, "put_retry")
        assert retry["records"] == "1" and retry["attempt"] == "1"
        assert retry["error"].startswith("ProvisionedThroughputExceededException: Rate exceeded")


def test_put_gives_up_after_bounded_retries_naming_the_error(fake_env):
    with FakeAws(refuse_every_entry("InternalFailure", "injected")) as fake:
        r = put_words(fake_env, fake, b"a\n", timeout=90)
        err = r.stderr.decode()
        assert r.returncode == 1, err
        retries = events(r.stderr, "put_retry")
        assert len(retries) == len(fake.ops("PutRecords")) - 1 >= 5, "every retry is logged, and they end"
        assert all(e["error"] == "InternalFailure: injected" for e in retries)
        assert "still not written after" in err and "InternalFailure: injected" in err


def test_put_refused_for_good_stops_at_once(fake_env):
    with FakeAws(refuse_every_entry("KMSAccessDeniedException", "no key access")) as fake:
        r = put_words(fake_env, fake, b"a\n")
        assert r.returncode == 1
        assert len(fake.ops("PutRecords")) == 1
        assert "KMSAccessDeniedException: no key access" in r.stderr.decode()
