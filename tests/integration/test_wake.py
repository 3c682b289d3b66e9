"""Push wake-up of the local source (issue 18): a worker learns of new records
from the stream file's doorbells (runtime/source/doorbell.h) instead of
polling, and polling stays the fallback.

The tests that need wake-ups set idle_time_between_reads_ms to 60 s: a record
they see processed within seconds came through a wake-up, never a poll.
SHARDRUN_LOCAL_WAKE=0 turns wake-ups off (polling only)."""
import subprocess
import time
from pathlib import Path

from conftest import SHARDRUN, wait_for

NO_POLL_MS = 60000

# One line per record: "<data> <ms from its put to processRecords>", per shard;
# SLOW_MS: a sleep after each batch (a busy processor).
LATENCY_PROCESSOR = r'''
local ffi = require "ffi"
pcall(ffi.cdef, "typedef struct { long tv_sec; long tv_nsec; } wake_ts; int clock_gettime(int, wake_ts *);" ..
                "int usleep(unsigned int usec);")
local ts = ffi.new("wake_ts")
local slow = tonumber(os.getenv("SLOW_MS") or "0")
local P = {}
function P.processRecords(records, shard)
  ffi.C.clock_gettime(0, ts)   -- CLOCK_REALTIME, the clock of the arrival timestamps
  local now = tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
  local f = assert(io.open("seen-" .. shard.id .. ".log", "a"))
  for i = 1, #records do
    f:write(records[i].data, " ", string.format("%.1f", now - records[i].approximateArrivalTimestamp), "\n")
  end
  f:close()
  if slow > 0 then ffi.C.usleep(slow * 1000) end
  return "checkpoint"
end
return P
'''


def seen(env):
    """[(data, latency ms)] of every record processed, per shard in order: {shard: [...]}."""
    out = {}
    for f in Path(env.dir).glob("seen-*.log"):
        rows = [line.rsplit(" ", 1) for line in f.read_text().splitlines()]
        out[f.name[5:-4]] = [(d, float(ms)) for d, ms in rows]
    return out


def all_seen(env):
    return [r for rows in seen(env).values() for r in rows]


def start(env, shards, idle_ms, **stream):
    env.write("p.lua", LATENCY_PROCESSOR)
    env.config([dict({"name": "s", "processor": "p.lua", "idle_time_between_reads_ms": idle_ms}, **stream)])
    env.create_stream("s", shards)
    w = env.worker(name="w")
    # caught up on every shard: a warm-up record per shard is processed (every
    # shard has read once and waits idle now)
    env.put("s", [f"warm{i}" for i in range(8 * shards)], partition_key=None)
    wait_for(lambda: len(seen(env)) == shards and len(all_seen(env)) == 8 * shards, timeout=30,
             what=f"warm-up records on all {shards} shards")
    return w


def put_one_at_a_time(env, n, gap_s, what):
    """Puts records r0..r<n-1>, one `put` each, gap_s apart, on keys of their
    own; waits until all are processed. Returns their put -> process latencies (ms)."""
    base = len(all_seen(env))
    for i in range(n):
        env.put("s", [f"r{i}"], partition_key=f"k{i}")
        time.sleep(gap_s)
    wait_for(lambda: len(all_seen(env)) == base + n, timeout=20, what=f"{n} records processed {what}")
    return [ms for d, ms in all_seen(env) if d.startswith("r")]


def test_a_put_into_a_caught_up_stream_is_processed_at_once_not_at_the_next_poll(env):
    start(env, 2, NO_POLL_MS)
    lat = put_one_at_a_time(env, 10, 0.1, "without a poll")
    print(f"put -> processRecords: max {max(lat):.1f} ms, median {sorted(lat)[len(lat) // 2]:.1f} ms")
    assert max(lat) < 5000, lat  # a poll would take up to 60 s


def test_puts_made_while_the_processor_is_busy_are_all_processed_in_order_without_a_poll(env):
    env.extra_env["SLOW_MS"] = "200"
    w = start(env, 1, NO_POLL_MS, max_records=4)
    base = len(all_seen(env))
    # 30 transactions back to back while batches take 200 ms each: wake-ups
    # come while a read is out, while the prefetch queue is full, while idle
    procs = []
    for i in range(30):
        data = "".join(f"b{i:02d}-{j}\n" for j in range(3)).encode()
        procs.append(subprocess.Popen([SHARDRUN, "put", "s"], cwd=env.dir, stdin=subprocess.PIPE,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env.proc_env()))
        procs[-1].communicate(data)
        assert procs[-1].returncode == 0
    wait_for(lambda: len(all_seen(env)) == base + 90, timeout=60, what="90 records processed without a poll")
    got = [d for d, _ in all_seen(env)][base:]
    want = [f"b{i:02d}-{j}" for i in range(30) for j in range(3)]
    assert got == want, "records lost, repeated or out of order"
    assert w.alive()


def test_with_wake_ups_off_records_still_arrive_by_polling_only_later(env):
    env.extra_env["SHARDRUN_LOCAL_WAKE"] = "0"
    start(env, 2, 1500)
    lat = put_one_at_a_time(env, 6, 0.3, "by polling")
    print(f"wake-ups off: put -> processRecords {sorted(round(x) for x in lat)} ms")
    # they waited for a poll: all six landing within 200 ms of their put by
    # chance has odds of about (200/1500)^6
    assert max(lat) > 200, lat
    assert max(lat) < 1500 + 3000, lat
