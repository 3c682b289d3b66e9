"""shardrun against kinesalite (Kinesis) and dynalite (DynamoDB): the
foundation and lease scenarios again, with several worker processes, plus a
lease row written as a KCL application writes it and HTTP faults.

The emulators come from conftest.py's `emulators` fixture (started when not
running, and then stopped again at the end, by PID); each test uses its own
stream and lease table."""
import collections
import json
import time

import pytest

from aws_helpers import (AWS_ENV, DYNALITE_PORT, KINESALITE_PORT, ORDER_PROCESSOR, FaultProxy, KeyedRounds,
                         create_lease_table, dynamodb, kinesis, read_shard, scan_leases, unique)
from conftest import (ASAN, RECORDING_PROCESSOR, assert_exactly_once, busy_processor, peak_rss_kb, processed_log,
                      processed_log_processor, read_seen, wait_for)
from kpl import kpl_aggregate  # scripts/ (on sys.path through conftest.py)


class Aws:
    """An Env configured for Kinesis + DynamoDB, with a unique stream and table."""

    def __init__(self, env):
        self.env = env
        self.stream = unique("s")
        self.app = unique("app")
        env.extra_env.update(AWS_ENV)
        self.kinesis_url = f"http://127.0.0.1:{KINESALITE_PORT}"
        self.dynamodb_url = f"http://127.0.0.1:{DYNALITE_PORT}"

    def config(self, name="shardrun.lua", kinesis_url=None, dynamodb_url=None, processor="p.lua", stream=None,
               **top):
        fields = {
            "application": self.app,
            "source": {"type": "kinesis", "region": "us-east-1", "endpoint": kinesis_url or self.kinesis_url},
            "leases": {"type": "dynamodb", "region": "us-east-1", "endpoint": dynamodb_url or self.dynamodb_url},
            "lease_duration_ms": 3000,
            "shard_sync_interval_ms": 1000,
        }
        fields.update(top)
        sc = {"name": self.stream, "processor": processor, "idle_time_between_reads_ms": 200}
        sc.update(stream or {})
        return self.env.config([sc], name=name, **fields)

    def create(self, shards):
        self.env.create_stream(self.stream, shards)

    def put(self, lines, **kw):
        self.env.put(self.stream, lines, **kw)

    def leases(self):
        try:
            return scan_leases(self.app)
        except RuntimeError:
            return {}


@pytest.fixture
def aws(env, emulators):
    return Aws(env)


def datas(seen):
    return [d for _, _, _, d in seen]


def test_kinesis_drain_processes_every_record_exactly_once(aws):
    aws.env.write("p.lua", RECORDING_PROCESSOR)
    aws.config()
    aws.create(4)
    lines = [f"rec {i}" for i in range(8000)]
    aws.put(lines)
    w = aws.env.worker("--drain")
    assert w.wait(120) == 0, w.logs()[-3000:]
    seen = read_seen(aws.env.dir / "seen")
    assert_exactly_once(seen, lines)
    leases = aws.leases()
    assert len(leases) == 4
    assert all("leaseOwner" not in l for l in leases.values()), "drained worker released its leases"
    assert all(l["checkpoint"].isdigit() for l in leases.values())


SLOW_PROCESSOR = RECORDING_PROCESSOR.replace('  out:flush()\n', '  out:flush()\n  os.execute("sleep 0.05")\n')


def test_kinesis_kill9_restart_redelivers_only_after_the_checkpoint(aws):
    aws.env.write("p.lua", SLOW_PROCESSOR)
    aws.config(stream={"max_records": 50})
    aws.create(2)
    lines = [f"k {i}" for i in range(3000)]
    aws.put(lines)
    aws.env.extra_env["SEEN_DIR"] = "seen1"
    w1 = aws.env.worker(name="w1")
    wait_for(lambda: len(read_seen(aws.env.dir / "seen1")) > 300, 60, what="some records processed")
    w1.kill()
    at_kill = {l["shardId"]: l["checkpoint"] for l in aws.leases().values()}
    first = read_seen(aws.env.dir / "seen1")
    aws.env.extra_env["SEEN_DIR"] = "seen2"
    # not --drain: the dead worker's leases only count as expired after lease_duration
    w2 = aws.env.worker(name="w2")
    left = set(lines) - set(datas(first))
    assert left, "w1 was killed before it processed everything"
    wait_for(lambda: left <= set(datas(read_seen(aws.env.dir / "seen2"))), 90, what="the rest processed")
    assert w2.stop(30) == 0, w2.logs()[-3000:]
    second = read_seen(aws.env.dir / "seen2")
    assert set(datas(first)) | set(datas(second)) == set(lines), "no record lost"
    assert len(second) == len(set(datas(second))), "the restarted worker processed each record once"
    again = set(datas(first)) & set(datas(second))
    for _, shard, seq, d in second:
        if d in again:
            cp = at_kill.get(shard, "TRIM_HORIZON")
            assert not cp.isdigit() or int(seq) > int(cp), f"{d} (seq {seq}) re-delivered though checkpointed at {cp}"


def test_kinesis_sigterm_hands_off_without_redelivery(aws):
    aws.env.write("p.lua", RECORDING_PROCESSOR)
    aws.config()
    aws.create(4)
    first = [f"a {i}" for i in range(2000)]
    aws.put(first)
    w1 = aws.env.worker(name="w1")
    wait_for(lambda: len(read_seen(aws.env.dir / "seen")) == len(first), 60, what="w1 processes the first batch")
    w2 = aws.env.worker(name="w2")
    time.sleep(1.0)
    assert w1.stop(30) == 0, w1.logs()[-3000:]
    def w2_owns_all():
        leases = aws.leases()
        owners = {l.get("leaseOwner") for l in leases.values()}
        return len(leases) == 4 and len(owners) == 1 and None not in owners  # w1 has stopped: the one owner is w2
    wait_for(w2_owns_all, 30, what="w2 owns all shards")
    second = [f"b {i}" for i in range(2000)]
    aws.put(second)
    wait_for(lambda: len(read_seen(aws.env.dir / "seen")) >= len(first) + len(second), 60,
             what="w2 processes the second batch")
    time.sleep(0.5)
    assert w2.stop(30) == 0
    assert_exactly_once(read_seen(aws.env.dir / "seen"), first + second)


def test_kinesis_three_workers_share_the_shards(aws):
    aws.env.write("p.lua", RECORDING_PROCESSOR)
    aws.config()
    aws.create(6)
    ws = [aws.env.worker(name=f"w{i}") for i in range(3)]

    def balanced():
        owners = collections.Counter(l.get("leaseOwner") for l in aws.leases().values())
        return len(aws.leases()) == 6 and None not in owners and sorted(owners.values()) == [2, 2, 2]

    wait_for(balanced, 60, what="2 shards per worker")
    # a victim of a steal learns it at its next renewal: let every worker see the final owners
    time.sleep(3.5)
    wait_for(balanced, 30, what="2 shards per worker, settled")
    lines = [f"r {i}" for i in range(3000)]
    aws.put(lines)
    wait_for(lambda: len(read_seen(aws.env.dir / "seen")) >= len(lines), 60, what="all records processed")
    for w in ws:
        assert w.stop(30) == 0
    seen = read_seen(aws.env.dir / "seen")
    assert_exactly_once(seen, lines)
    assert len({wk for wk, _, _, _ in seen}) >= 2, "the work was shared"


def test_kinesis_split_while_consuming_keeps_per_key_order(aws):
    aws.env.write("p.lua", ORDER_PROCESSOR)
    aws.config()
    aws.create(2)
    w = aws.env.worker()
    rounds = KeyedRounds(aws)
    rounds.put_round(150)
    rounds.wait_started()
    aws.env.run("stream", "split", aws.stream, "shardId-000000000000")
    rounds.put_round(150)
    shards = kinesis("ListShards", {"StreamName": aws.stream})["Shards"]
    assert len(shards) == 4
    rounds.wait_all_processed(w)
    # the parent's lease is checkpointed at SHARD_END, then removed once its children started
    wait_for(lambda: any(e.get("shard") == "shardId-000000000000" for e in w.events("shard_finished")), 30,
             what="the parent finished")
    assert aws.leases().get("shardId-000000000000", {}).get("checkpoint", "SHARD_END") == "SHARD_END"
    assert w.stop(30) == 0, w.logs()[-3000:]
    rounds.assert_in_order(w)


def test_kinesis_honours_a_lease_row_written_by_the_kcl(aws):
    aws.env.write("p.lua", RECORDING_PROCESSOR)
    aws.config()
    aws.create(1)
    lines = [f"x {i}" for i in range(100)]
    aws.put(lines)
    recs = read_shard(aws.stream, "shardId-000000000000")
    assert len(recs) == 100
    checkpoint = recs[49][0]
    create_lease_table(aws.app)
    # exactly the attributes a KCL 2.x worker writes (no streamName/shardId), released by its owner
    dynamodb("PutItem", {"TableName": aws.app, "Item": {
        "leaseKey": {"S": "shardId-000000000000"}, "leaseCounter": {"N": "57"},
        "checkpoint": {"S": checkpoint}, "checkpointSubSequenceNumber": {"N": "0"},
        "ownerSwitchesSinceCheckpoint": {"N": "0"},
        "startingHashKey": {"S": "0"}, "endingHashKey": {"S": "340282366920938463463374607431768211455"},
        "throughputKBps": {"N": "0.0"}}})
    w = aws.env.worker("--drain")
    assert w.wait(60) == 0, w.logs()[-3000:]
    seen = read_seen(aws.env.dir / "seen")
    assert datas(seen) == lines[50:], "resumed right after the KCL's checkpoint"
    row = aws.leases()["shardId-000000000000"]
    assert row["leaseCounter"] > 57
    assert row["checkpoint"] == recs[99][0]


def test_kinesis_survives_http_faults_without_losing_records(aws):
    kp = FaultProxy(KINESALITE_PORT, "ProvisionedThroughputExceededException")
    dp = FaultProxy(DYNALITE_PORT, "ThrottlingException")
    try:
        aws.env.write("p.lua", RECORDING_PROCESSOR)
        aws.config(kinesis_url=kp.url, dynamodb_url=dp.url, lease_duration_ms=8000)
        aws.create(3)
        lines = [f"f {i}" for i in range(3000)]
        aws.put(lines)
        w = aws.env.worker("--drain")
        assert w.wait(180) == 0, w.logs()[-3000:]
        seen = read_seen(aws.env.dir / "seen")
        assert set(datas(seen)) == set(lines), "every record processed despite the faults"
        for p in (kp, dp):
            assert p.faults["500"] and p.faults["throttle"] and p.faults["reset"], p.faults
        logs = w.logs()
        assert "Segmentation" not in logs and "ERROR: AddressSanitizer" not in logs
    finally:
        kp.close()
        dp.close()


POISON_PROCESSOR = processed_log_processor('''  for i = 1, #records do
    if records[i].data == "poison" then error("poison record") end
  end
''')


def test_kinesis_dead_letter_stream_gets_the_poison_record_before_the_checkpoint_passes_it(aws):
    import json
    aws.env.write("p.lua", POISON_PROCESSOR)
    dlq = unique("dlq")
    aws.config(stream={"max_records": 100, "on_error": {"retries": 0, "final": "dead_letter",
                                                         "dead_letter": {"stream": dlq}}})
    aws.create(1)
    aws.env.create_stream(dlq, 1)
    lines = [f"r{i}" for i in range(60)]
    lines[37] = "poison"
    aws.put(lines, partition_key="k")
    w = aws.env.worker("--drain")
    assert w.wait(120) == 0, w.logs()[-3000:]
    processed = processed_log(aws.env)
    assert processed == [l for l in lines if l != "poison"]
    (shard,) = [s["ShardId"] for s in kinesis("ListShards", {"StreamName": dlq})["Shards"]]
    dead = [json.loads(data) for _, data, _ in read_shard(dlq, shard)]
    assert len(dead) == 1 and dead[0]["error"].endswith("poison record")
    assert dead[0]["stream"] == aws.stream and dead[0]["partitionKey"] == "k"
    assert w.events("records_dead_lettered")[0]["destination"] == dlq
    (lease,) = aws.leases().values()
    assert lease["checkpoint"] != "TRIM_HORIZON"


def test_kinesis_dlq_replay_puts_binary_records_back_with_their_keys(aws):
    import base64
    import json
    aws.env.write("p.lua", RECORDING_PROCESSOR)  # the config names one, even for the CLI
    aws.config()
    again = unique("again")
    aws.env.create_stream(again, 1)
    # 600 records: more than one PutRecords call; data with NUL, newline and 0xff bytes
    recs = [(bytes([i % 256, 0, 255, 10]) + b"x" * (i % 50), f"key{i}") for i in range(600)]
    lines = [json.dumps({"data": base64.b64encode(d).decode(), "partitionKey": k}) for d, k in recs]
    aws.env.write("dlq.jsonl", "\n".join(lines) + "\n\n")
    r = aws.env.run("dlq", "replay", "dlq.jsonl", "--to", again)
    assert "replayed 600 records to " + again in r.stderr.decode()
    (shard,) = [s["ShardId"] for s in kinesis("ListShards", {"StreamName": again})["Shards"]]
    assert [(d, k) for _, d, k in read_shard(again, shard)] == recs


CHECKPOINT_AT_THIRD = r'''
local P = {}
function P.processRecords(records, shard)
  local out = assert(io.open("seen-" .. (os.getenv("SHARDRUN_TEST_NAME") or "w") .. ".log", "a"))
  for i = 1, #records do out:write(records[i].data, " ", records[i].subSequenceNumber, "\n") end
  out:close()
  if os.getenv("STOP_AT_THIRD") then return { checkpoint = records[3] } end
  return "checkpoint"
end
return P
'''


def test_kinesis_checkpoint_inside_a_kpl_aggregate_resumes_at_the_next_sub_record(aws):
    import base64
    aws.env.write("p.lua", CHECKPOINT_AT_THIRD)
    aws.config()
    aws.create(1)
    users = [("k", f"user{i}") for i in range(5)]
    kinesis("PutRecord", {"StreamName": aws.stream, "PartitionKey": "k",
                          "Data": base64.b64encode(kpl_aggregate(users)).decode()})
    aws.env.extra_env["STOP_AT_THIRD"] = "1"
    w1 = aws.env.worker("--drain", name="first")
    assert w1.wait(60) == 0, w1.logs()[-3000:]
    first = (aws.env.dir / "seen-first.log").read_text().split("\n")
    assert first[:5] == [f"user{i} {i}" for i in range(5)], "the aggregate is expanded with sub-sequence numbers"
    (lease,) = aws.leases().values()
    assert lease["checkpointSubSequenceNumber"] == 2
    del aws.env.extra_env["STOP_AT_THIRD"]
    w2 = aws.env.worker("--drain", name="second")
    assert w2.wait(60) == 0, w2.logs()[-3000:]
    second = (aws.env.dir / "seen-second.log").read_text().split()
    assert second == ["user3", "3", "user4", "4"], "a restart resumes at the sub-record after the checkpoint"


def test_kinesis_credentials_from_the_config_come_first_in_the_chain(aws):
    aws.env.write("p.lua", RECORDING_PROCESSOR)
    aws.config(aws={"access_key_id": "AKIDCONFIG", "secret_access_key": "from-config"})
    aws.create(1)
    aws.put(["a", "b", "c"])
    # no credentials in the environment, and no metadata service to fall back on
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        aws.env.extra_env[k] = ""
    aws.env.extra_env["HOME"] = str(aws.env.dir)          # no ~/.aws files either
    aws.config(name="nocreds.lua")
    w0 = aws.env.worker("--drain", config="nocreds.lua", name="nocreds")
    assert w0.wait(60) != 0, "without credentials the worker must fail, not run unsigned"
    w = aws.env.worker("--drain")
    assert w.wait(60) == 0, w.logs()[-3000:]
    assert sorted(d for *_, d in read_seen(aws.env.dir / "seen")) == ["a", "b", "c"]
    assert "from-config" not in w.logs(), "a secret never reaches the logs"


# ---- KPL aggregates: decisions and checkpoints inside one aggregate ---------

KPL_DECIDE = r'''
local P = {}
local function note(records)
  local out = assert(io.open("seen-" .. (os.getenv("SHARDRUN_TEST_NAME") or "w") .. ".log", "a"))
  for i = 1, #records do out:write(records[i].data, " ", records[i].subSequenceNumber, "\n") end
  out:close()
end
function P.processRecords(records, shard)
  note(records)
  local mode = os.getenv("MODE")
  if mode == "bare_seq" then return { checkpoint = records[3].sequenceNumber } end
  if mode == "fail_once" then
    -- user3 fails on its first try only: the records around it go on
    for i = 1, #records do
      if records[i].data == "user3" and not shard.state.failed then
        shard.state.failed = true
        return { failed = records[i], error = "transient" }
      end
    end
  end
  return "checkpoint"
end
return P
'''


def kpl_put(aws, n):
    import base64
    kinesis("PutRecord", {"StreamName": aws.stream, "PartitionKey": "k",
                          "Data": base64.b64encode(kpl_aggregate([("k", f"user{i}") for i in range(n)])).decode()})


def seen_lines(aws, name):
    return (aws.env.dir / f"seen-{name}.log").read_text().split("\n")[:-1]


def kpl_first_drain(aws, processor, mode, **config):
    """One shard holding one KPL aggregate of user0..user4; a first worker
    ("first") drains it with `mode` ({variable: value}) in its environment."""
    aws.env.write("p.lua", processor)
    aws.config(**config)
    aws.create(1)
    kpl_put(aws, 5)
    aws.env.extra_env.update(mode)
    w1 = aws.env.worker("--drain", name="first")
    assert w1.wait(60) == 0, w1.logs()[-3000:]
    for k in mode:
        del aws.env.extra_env[k]


def kpl_second_drain(aws, config="shardrun.lua"):
    """A second worker ("second") drains the shard again."""
    w2 = aws.env.worker("--drain", config=config, name="second")
    assert w2.wait(60) == 0, w2.logs()[-3000:]


def test_kpl_a_bare_sequence_number_checkpoints_sub_record_0_only(aws):
    # {checkpoint = r.sequenceNumber} names the aggregate's sub-record 0 (the
    # KCL's checkpoint(String)): the sub-records after it were not named, so a
    # restart delivers them again; never the other way round.
    kpl_first_drain(aws, KPL_DECIDE, {"MODE": "bare_seq"})
    (lease,) = aws.leases().values()
    assert lease["checkpointSubSequenceNumber"] == 0
    kpl_second_drain(aws)
    assert seen_lines(aws, "second") == [f"user{i} {i}" for i in range(1, 5)]


def test_kpl_checkpoints_advance_inside_one_aggregate(aws):
    # user3 fails once: user0..2 are checkpointed at sub-record 2, user3 is
    # retried alone and checkpointed at 3, then user4 at 4. Each advance
    # inside the one aggregate must be written (same sequence number, a
    # higher sub-sequence number), or a restart re-delivers them.
    kpl_first_drain(aws, KPL_DECIDE, {"MODE": "fail_once"},
                    stream={"on_error": {"retries": 3, "backoff_ms": 50, "final": "halt"}})
    (lease,) = aws.leases().values()
    assert lease["checkpointSubSequenceNumber"] == 4, lease
    kpl_second_drain(aws)
    assert not (aws.env.dir / "seen-second.log").exists(), "nothing is re-delivered"


def test_kpl_an_empty_first_read_keeps_the_resume_inside_the_aggregate(aws):
    # A resume reads AT the checkpoint's sequence number and drops the
    # sub-records up to the checkpoint. Kinesis may answer the first read with
    # no records: the filter must survive it, or the next read re-delivers.
    kpl_first_drain(aws, CHECKPOINT_AT_THIRD, {"STOP_AT_THIRD": "1"})
    empty = {"n": 0}

    def first_read_empty(headers, body):
        if headers.get("x-amz-target", "").endswith(".GetRecords") and empty["n"] == 0:
            empty["n"] += 1
            it = json.loads(body)["ShardIterator"]
            return 200, json.dumps({"Records": [], "NextShardIterator": it, "MillisBehindLatest": 1000}).encode()
        return None

    proxy = FaultProxy(KINESALITE_PORT, "ProvisionedThroughputExceededException", plan=lambda n: "ok",
                       answer=first_read_empty)
    try:
        aws.config(name="proxied.lua", kinesis_url=proxy.url)
        kpl_second_drain(aws, config="proxied.lua")
    finally:
        proxy.close()
    assert empty["n"] == 1
    assert seen_lines(aws, "second") == ["user3 3", "user4 4"]


@pytest.mark.skipif(ASAN, reason="under AddressSanitizer RSS measures the sanitizer's shadow memory and quarantine")
def test_kpl_max_buffered_mb_bounds_records_as_expanded_in_memory(aws):
    # 300 aggregates of 2000 small user records: ~15 MB on the wire, ~80 MB
    # once expanded into batches. With max_buffered_mb = 8 the worker reads a
    # few aggregates at a time, sized by what they expand into.
    import base64
    aws.env.write("p.lua", busy_processor(0.05))
    aws.config(max_buffered_mb=8, processor_threads=1)
    aws.create(1)
    data = base64.b64encode(kpl_aggregate([("k", f"{i:020d}") for i in range(2000)])).decode()
    for _ in range(300):
        kinesis("PutRecord", {"StreamName": aws.stream, "PartitionKey": "k", "Data": data})
    w = aws.env.worker("--drain")
    peak = peak_rss_kb(w)
    assert w.wait(5) == 0, w.logs()[-3000:]
    assert w.events("worker_drained")[0]["records"] == "600000"
    assert peak < 60 * 1024, f"peak RSS {peak // 1024} MB"


def test_kinesis_a_worker_whose_lease_store_hangs_stops_dispatching_before_a_peer_takes_over(aws):
    """Issue 11 #4: worker A's DynamoDB traffic goes through a proxy that
    accepts requests and never answers. A declares the lease lost by a timer
    within lease_duration of its last successful renewal (not at the end of
    a hung call), and B takes the lease only after A dispatched its last batch."""
    import threading
    from conftest import TIMED_PROCESSOR, read_stints
    lease_ms = 6000
    hang = threading.Event()
    proxy = FaultProxy(DYNALITE_PORT, "ThrottlingException", plan=lambda n: "stall" if hang.is_set() else "ok",
                       stall_s=3600)
    stop = threading.Event()

    def produce():
        i = 0
        while not stop.is_set():
            aws.put([f"r {i + k}" for k in range(5)])
            i += 5
            time.sleep(0.2)

    try:
        aws.env.write("p.lua", TIMED_PROCESSOR)
        aws.env.extra_env["SEEN_DIR"] = str(aws.env.dir / "seen")
        aws.config(name="a.lua", dynamodb_url=proxy.url, lease_duration_ms=lease_ms, taker_interval_ms=1000)
        aws.config(name="b.lua", lease_duration_ms=lease_ms, taker_interval_ms=1000)
        aws.config(lease_duration_ms=lease_ms)   # shardrun.lua: for `stream create` and `put`
        aws.create(1)
        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        a = aws.env.worker(config="a.lua", name="A")
        wait_for(lambda: any(s.records for s in read_stints(aws.env.dir / "seen")), 60, what="A processes records")
        b = aws.env.worker(config="b.lua", name="B")
        time.sleep(3.0)                   # B sees A renewing: it takes nothing
        assert not b.events("lease_taken"), b.logs()[-2000:]
        hang.set()
        t_hang = time.monotonic()
        lost_at = None
        deadline = t_hang + 40
        while time.monotonic() < deadline and (lost_at is None or not b.events("lease_taken")):
            if lost_at is None and a.events("lease_lost"):
                lost_at = time.monotonic()
            time.sleep(0.05)
        assert lost_at is not None, a.logs()[-3000:]
        # the last renewal that succeeded was sent at most renew_interval before the hang
        assert lost_at - t_hang <= lease_ms / 1000 + 1.5, f"lease_lost {lost_at - t_hang:.1f} s after the hang"
        assert lost_at - t_hang >= lease_ms / 1000 * 2 / 3 - 0.5, f"lease_lost too early: {lost_at - t_hang:.1f} s"
        taken = [e for e in b.events("lease_taken") if e.get("previous_owner") not in (None, "-")]
        assert taken, b.logs()[-3000:]
        # B's processor starts (initialize) a moment after B's lease_taken line
        wait_for(lambda: any(s.name == "B" and s.records for s in read_stints(aws.env.dir / "seen")), 30,
                 what="B processes the shard")
        stints = read_stints(aws.env.dir / "seen")
        a_stints = [s for s in stints if s.name == "A"]
        b_stints = [s for s in stints if s.name == "B"]
        a_last_batch = max(t for s in a_stints for _, t, _ in s.records)
        b_start = min(s.start for s in b_stints)
        assert a_last_batch < b_start, (f"A dispatched a batch {a_last_batch - b_start:.2f} s after B "
                                        f"started the shard")
        assert "ERROR: AddressSanitizer" not in a.logs() + b.logs()
    finally:
        stop.set()
        hang.clear()
        aws.env.stop_all()
        proxy.close()


def test_kinesis_a_throttled_shard_shows_as_backing_off_in_status(aws):
    # every GetRecords is throttled: the shard waits and says so, with why
    aws.env.write("p.lua", RECORDING_PROCESSOR)

    def throttle(headers, body):
        if headers.get("x-amz-target", "").endswith(".GetRecords"):
            return 400, json.dumps({"__type": "ProvisionedThroughputExceededException",
                                    "message": "Rate exceeded for shard"}).encode()
        return None

    proxy = FaultProxy(KINESALITE_PORT, "ProvisionedThroughputExceededException", plan=lambda n: "ok",
                       answer=throttle)
    try:
        aws.config(kinesis_url=proxy.url, renew_interval_ms=300)
        aws.create(1)
        w = aws.env.worker()
        rows = wait_for(lambda: [r for r in aws.env.status() if r["state"] == "backing_off"], timeout=60,
                        what="status backing_off")
        assert "ProvisionedThroughputExceeded" in rows[0]["worker"]["readError"]
        w.stop()
    finally:
        proxy.close()
