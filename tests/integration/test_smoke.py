import shutil
import time

from conftest import RECORDING_PROCESSOR, read_seen


def test_drain_processes_every_record_once(env):
    env.write("p.lua", RECORDING_PROCESSOR)
    env.config([{"name": "words", "processor": "p.lua"}])
    env.create_stream("words", 4)
    env.put("words", [f"line {i}" for i in range(2000)])
    w = env.worker("--drain")
    assert w.wait(60) == 0, w.logs()
    seen = read_seen(env.dir / "seen")
    assert sorted(d for _, _, _, d in seen) == sorted(f"line {i}" for i in range(2000))


def test_drain_ends_once_caught_up_without_waiting_for_the_next_lease_scan(env):
    """The scan that finds the new leases unowned is the one that takes them: a
    drain must count them as taken, not wait a taker interval (here 10 s) for a
    scan that says so."""
    env.write("p.lua", RECORDING_PROCESSOR)
    env.config([{"name": "words", "processor": "p.lua"}], taker_interval_ms=10000, lease_duration_ms=30000)
    env.create_stream("words", 4)
    env.put("words", [f"line {i}" for i in range(2000)])
    for run in range(3):   # a fresh lease table each time: the first scan races the leases' creation
        for p in env.dir.glob("leases.db*"):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        t0 = time.monotonic()
        w = env.worker("--drain")
        assert w.wait(60) == 0, w.logs()
        took = time.monotonic() - t0
        assert took < 5, f"run {run}: the drain took {took:.1f} s (a taker interval is 10 s)\n{w.logs()[-2000:]}"
