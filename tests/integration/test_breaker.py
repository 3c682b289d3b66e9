"""The poison-rate breaker: skipping and dead-lettering cost a few records,
never a stream. When most records of a stream fail, nothing more is given up
on: a newly loaded script version is rolled back, or the shards halt."""
import json

from conftest import processed_log, processed_log_processor, wait_for

FAILS_EVERY_RECORD = r'''
local P = {}
function P.processRecords(records)
  error("attempt to index field 'missing' (a nil value)")
end
return P
'''

GOOD = processed_log_processor()


def dlq_lines(env, name="dlq.jsonl"):
    p = env.dir / name
    return [json.loads(l) for l in p.read_text().splitlines()] if p.exists() else []


def test_a_script_that_fails_every_record_trips_the_breaker_and_halts_the_stream(env):
    env.write("p.lua", FAILS_EVERY_RECORD)
    env.config([{"name": "s", "processor": "p.lua", "max_records": 100,
                 "on_error": {"final": "dead_letter", "dead_letter": {"file": "dlq.jsonl"}}}])
    env.create_stream("s", 2)
    env.put("s", [f"r{i}" for i in range(2000)])
    w = env.worker()
    wait_for(lambda: w.events("breaker_halt"), timeout=120, what="the breaker to halt the stream")
    wait_for(lambda: len(w.events("shard_halted")) == 2, what="both shards to halt")
    # at most the window's worth of records reached the dead-letter queue
    assert 1 <= len(dlq_lines(env)) <= 100
    # status says why, from the lease rows (written with the next renewals)
    wait_for(lambda: json.dumps(env.status()).count("poison-rate breaker") == 2, what="status to show the reason")
    w.stop()


def test_a_reload_that_fails_every_record_rolls_back_and_loses_nothing(env):
    env.write("p.lua", GOOD)
    env.config([{"name": "s", "processor": "p.lua", "max_records": 50,
                 "on_error": {"final": "dead_letter", "dead_letter": {"file": "dlq.jsonl"}}}])
    env.create_stream("s", 1)
    env.put("s", [f"a{i}" for i in range(200)], partition_key="k")
    w = env.worker()
    wait_for(lambda: len(processed_log(env)) == 200, what="the first records, on the good version")
    env.write("p.lua", FAILS_EVERY_RECORD)
    wait_for(lambda: w.events("reload_applied"), what="the bad version to load")
    env.put("s", [f"b{i}" for i in range(1000)], partition_key="k")
    wait_for(lambda: w.events("breaker_rollback"), timeout=120, what="the breaker to roll back")
    wait_for(lambda: len(processed_log(env)) + len(dlq_lines(env)) >= 1200, timeout=120,
             what="every record processed or dead-lettered")
    w.stop()
    dead = [d["sequenceNumber"] for d in dlq_lines(env)]
    assert len(dead) <= 100, "no more than the window's worth of records reached the dead-letter queue"
    done = processed_log(env)
    assert len(done) + len(dead) == 1200 and len(set(done)) == len(done), "no record lost, none processed twice"
    assert done[-1] == "b999", "the good version processed the rest"
    assert not w.events("breaker_halt")
