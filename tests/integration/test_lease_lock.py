"""Instant takeover on one machine (issue 18, runtime/lease/lease_alive.h):
workers sharing a local lease file each hold a kernel-released lock, so a
worker killed with kill -9 has its shards taken over at once, not after
lease_duration; a worker that is only paused (SIGSTOP) still holds its lock
and keeps its leases until the lease clock says otherwise.

lease_duration_ms is long here (20 s), so a takeover in seconds can only come
from the lock."""
import signal
import time

from conftest import TIMED_PROCESSOR, Producer, read_stints, seq_rank, wait_all_processed, wait_for
from test_leases import (assert_all_processed, first_takeover, load, max_overlap, resumed_stints, takeover_delays,
                         two_workers_at_2_2, w2_joins_w1)

LEASE_S = 20.0


def prepare(env, shards, lease_ms=int(LEASE_S * 1000), **stream):
    env.write("p.lua", TIMED_PROCESSOR)
    env.config([dict({"name": "s", "processor": "p.lua"}, **stream)], lease_duration_ms=lease_ms,
               taker_interval_ms=2000)
    env.create_stream("s", shards)


def test_kill_9_shards_resume_on_a_peer_of_the_same_machine_at_once_from_the_last_checkpoint(env):
    prepare(env, 4, checkpoint_interval_ms=500)
    prod, w1, w2, victim_id, shards = two_workers_at_2_2(env, timeout=60)
    t_kill = time.monotonic()
    w1.kill()
    last_cp = {k: env.leases()[k]["checkpoint"] for k in shards}

    stints, produced, delays = takeover_delays(
        env, prod, w2, victim_id, shards, t_kill, timeout=LEASE_S + 10, what="the dead worker's shards resume",
        label="kill -9 takeover with the lock (kill -> first record by the survivor)")
    assert max(delays.values()) < 5.0, f"takeover took {delays}: the lock was not seen (lease clock: {LEASE_S} s)"
    assert any(e["how"] == "exited" for e in w2.events("worker_gone")), w2.logs()[-2000:]
    assert_all_processed(stints, produced)
    for sh in shards:
        later = resumed_stints(stints, sh, victim_id, t_kill)
        assert seq_rank(later[0].position) == seq_rank(last_cp[sh]), (later[0], last_cp[sh])


def test_a_paused_worker_keeps_its_lock_and_its_leases_until_the_lease_clock_says_otherwise(env):
    lease_s = 4.0
    prepare(env, 2, lease_ms=int(lease_s * 1000))
    prod = Producer(env, "s", batch=4, interval=0.05).start()
    w1, w2, w1_id, w2_id = w2_joins_w1(env, timeout=30, what="w1 owns both shards")
    # balance: one shard each (a graceful handoff), then w1 is paused
    wait_for(lambda: load(env) == [1, 1], timeout=30, what=f"1/1 (now {load(env)})")
    time.sleep(1.0)
    (w1_shard,) = [k for k, v in env.leases().items() if v["leaseOwner"] == w1_id]
    w1.signal(signal.SIGSTOP)
    t_stop = time.monotonic()
    try:
        # while paused within lease_duration, its lease stays its own: the lock is held
        time.sleep(lease_s * 0.6)
        assert env.leases()[w1_shard]["leaseOwner"] == w1_id, "a paused worker's lease was taken early"
        # then the clock says it expired, and w2 takes it
        wait_for(lambda: env.leases()[w1_shard]["leaseOwner"] == w2_id, timeout=lease_s + 10,
                 what="w2 takes the expired lease")
        t_taken = time.monotonic()
        gone = [e for e in w2.events("worker_gone") if e.get("worker") == w1_id]
    finally:
        w1.signal(signal.SIGCONT)
    wait_for(lambda: w1.events("shard_lease_lost"), timeout=10, what="w1 gets leaseLost")
    produced = prod.stop()
    wait_all_processed(env, produced)
    assert w1.stop() == 0 and w2.stop() == 0

    print(f"paused worker's lease taken {t_taken - t_stop:.2f} s after SIGSTOP (lease_duration {lease_s} s)")
    assert t_taken - t_stop >= lease_s * 0.6
    assert not gone, f"a paused worker was called gone: {gone}"
    stints = read_stints(env.dir / "seen")
    first_w2 = first_takeover(stints, w1_shard, w1_id, t_stop)
    assert first_w2 is not None and first_w2 - t_stop >= lease_s * 0.6, first_w2 and first_w2 - t_stop
    # never two workers processing one shard at once (beyond the batch w1 was in when paused)
    overlaps = [(ov, a, b) for ov, a, b in max_overlap(stints) if ov > 0.5]
    assert not overlaps, overlaps[:2]
