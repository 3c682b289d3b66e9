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
