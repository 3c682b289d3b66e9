"""Hot reload: change a processor script while the worker runs, lose nothing."""
import os
import signal
import time

from conftest import Producer, read_seen, wait_for

# VERSION is replaced per version; every batch gets an id so the test can
# check that one batch was processed wholly by one version.
TEMPLATE = r'''
local P = {}
local VERSION = "@VERSION@"
function P.initialize(shard)
  os.execute("mkdir -p seen")
  shard.state.out = shard.state.out or assert(io.open("seen/" .. (os.getenv("SHARDRUN_TEST_NAME") or "w") .. "-" .. shard.id .. ".log", "a"))
  shard.state.count = shard.state.count or 0
end
function P.processRecords(records, shard)
  local out, parts = shard.state.out, {}
  local batch = shard.id .. ":" .. records[1].sequenceNumber
  for i = 1, #records do
    shard.state.count = shard.state.count + 1
    parts[#parts + 1] = VERSION .. "|" .. batch .. " " .. shard.id .. " " .. records[i].sequenceNumber .. " " .. records[i].data .. "\n"
  end
  out:write(table.concat(parts))
  out:flush()
  @EXTRA@
  return "checkpoint"
end
function P.shutdownRequested() return "checkpoint" end
@MIGRATE@
return P
'''


def version(v, extra="", migrate=""):
    return TEMPLATE.replace("@VERSION@", v).replace("@EXTRA@", extra).replace("@MIGRATE@", migrate)


def replace(env, name, text, rename):
    path = env.dir / name
    if rename:
        tmp = env.dir / (name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    else:
        with open(path, "w") as f:
            f.write(text)


def seen_versions(env):
    return [(w.split("|")[0], w.split("|")[1], shard, seq, data) for w, shard, seq, data in read_seen(env.dir / "seen")]


def start(env, shards=2, workers=1, **stream):
    env.write("p.lua", version("v0"))
    env.config([dict({"name": "s", "processor": "p.lua", "max_records": 50}, **stream)])
    env.create_stream("s", shards)
    ws = [env.worker() for _ in range(workers)]
    wait_for(lambda: all(w.events("shard_started") for w in ws), what="workers started")
    return ws


def test_a_changed_script_runs_from_the_next_batch_with_position_kept(env):
    (w,) = start(env)
    env.put("s", [f"a{i}" for i in range(100)])
    wait_for(lambda: len(seen_versions(env)) == 100, what="first records")
    replace(env, "p.lua", version("v1"), rename=True)
    wait_for(lambda: w.events("reload_applied"), what="reload")
    env.put("s", [f"b{i}" for i in range(100)])
    wait_for(lambda: len(seen_versions(env)) == 200, what="second records")
    rows = seen_versions(env)
    assert {r[0] for r in rows if r[4].startswith("b")} == {"v1"}
    assert sorted(r[4] for r in rows) == sorted([f"a{i}" for i in range(100)] + [f"b{i}" for i in range(100)])
    assert not w.events("lease_lost"), "no lease churn"
    assert w.stop() == 0


def test_twenty_replacements_under_load_process_every_record_exactly_once(env):
    ws = start(env, shards=4, workers=2, max_records=20)
    prod = Producer(env, "s", batch=50, interval=0.05).start()
    for n in range(1, 21):
        replace(env, "p.lua", version(f"v{n}"), rename=(n % 2 == 0))
        time.sleep(0.3)
    produced = prod.stop()
    assert not prod.errors
    wait_for(lambda: len(seen_versions(env)) >= len(produced), timeout=60, what="all records")
    time.sleep(1.0)
    rows = seen_versions(env)
    datas = [r[4] for r in rows]
    assert sorted(datas) == sorted(produced), "every record exactly once"
    versions_of_batch = {}
    for v, batch, *_ in rows:
        versions_of_batch.setdefault(batch, set()).add(v)
    assert all(len(v) == 1 for v in versions_of_batch.values()), "each batch wholly by one version"
    # after the last reload every shard runs it: one more record per shard shows v20
    env.put("s", [f"z{i}" for i in range(200)])
    wait_for(lambda: len(seen_versions(env)) >= len(produced) + 200, what="last records")
    last = {r[2]: r[0] for r in seen_versions(env) if r[4].startswith("z")}
    assert set(last.values()) == {"v20"} and len(last) == 4
    for w in ws:
        assert w.stop() == 0


def test_broken_versions_never_replace_a_working_one(env):
    (w,) = start(env)
    bad = {
        "syntax": "local P = {}\nfunction P.processRecords(records\nreturn P\n",
        "initialize": version("vbad").replace("function P.initialize(shard)", "function P.initialize(shard) error('init boom')"),
        "missing": "return { initialize = function() end }\n",
    }
    wanted = {"syntax": "p.lua:3:", "initialize": "init boom", "missing": "has no processRecords function"}
    for i, (kind, text) in enumerate(bad.items()):
        replace(env, "p.lua", text, rename=False)
        wait_for(lambda: len(w.events("reload_failed")) > i, what=f"reload_failed for {kind}")
        assert wanted[kind] in w.events("reload_failed")[i]["error"]
        env.put("s", [f"{kind}{k}" for k in range(10)])
        wait_for(lambda: sum(1 for r in seen_versions(env) if r[4].startswith(kind)) == 10, what="records")
        assert {r[0] for r in seen_versions(env) if r[4].startswith(kind)} == {"v0"}
    # status shows the version each shard runs and the last reload error
    st = wait_for(lambda: [r for r in env.status() if r.get("worker", {}).get("reloadError")], what="status")
    assert "has no processRecords function" in st[0]["worker"]["reloadError"]
    assert st[0]["worker"]["version"] and st[0]["worker"]["loadedAtMs"] > 0
    # `shardrun check` says the same
    r = env.run("check", "p.lua", check=False)
    assert r.returncode != 0 and b"has no processRecords function" in r.stderr
    w.stop()


def test_state_survives_reloads_and_migrate_runs(env):
    (w,) = start(env, shards=1)
    env.put("s", [f"a{i}" for i in range(30)])
    wait_for(lambda: len(seen_versions(env)) == 30, what="records")
    migrate = 'function P.migrate(old) old.migrated = (old.migrated or 0) + 1 return old end'
    report = 'local f = io.open("state.txt", "w") f:write(shard.state.count, " ", tostring(shard.state.migrated)) f:close()'
    replace(env, "p.lua", version("v1", extra=report, migrate=migrate), rename=True)
    wait_for(lambda: w.events("reload_applied"), what="reload")
    env.put("s", [f"b{i}" for i in range(5)])
    wait_for(lambda: (env.dir / "state.txt").exists() and (env.dir / "state.txt").read_text() == "35 1", what="state 35 1")
    w.stop()


def test_rollback_after_n_failing_batches(env):
    env.write("p.lua", version("v0"))
    env.config([{"name": "s", "processor": "p.lua", "max_records": 10,
                 "on_error": {"retries": -1, "backoff_ms": 10, "max_backoff_ms": 20}}],
               reload={"rollback_after_failures": 3})
    env.create_stream("s", 1)
    w = env.worker()
    wait_for(lambda: w.events("shard_started"), what="start")
    replace(env, "p.lua", version("v1").replace("function P.processRecords(records, shard)",
                                               "function P.processRecords(records, shard) error('v1 is broken')"), rename=True)
    wait_for(lambda: w.events("reload_applied"), what="reload")
    env.put("s", [f"a{i}" for i in range(10)])
    wait_for(lambda: w.events("reload_rolled_back"), what="rollback")
    wait_for(lambda: len(seen_versions(env)) == 10, what="records by the previous version")
    assert {r[0] for r in seen_versions(env)} == {"v0"}
    assert len(w.events("batch_failed")) == 3
    w.stop()


def test_a_changed_module_triggers_a_reload(env):
    env.write("helper.lua", 'return { tag = "m1" }\n')
    env.write("p.lua", version("v0").replace('local VERSION = "v0"', 'local VERSION = require("helper").tag'))
    env.config([{"name": "s", "processor": "p.lua"}])
    env.create_stream("s", 1)
    w = env.worker()
    wait_for(lambda: w.events("shard_started"), what="start")
    replace(env, "helper.lua", 'return { tag = "m2" }\n', rename=True)
    wait_for(lambda: w.events("reload_applied"), what="reload after module change")
    env.put("s", ["x"])
    wait_for(lambda: seen_versions(env), what="record")
    assert seen_versions(env)[0][0] == "m2"
    w.stop()


def test_sighup_applies_a_policy_change_and_refuses_a_source_change(env):
    env.write("p.lua", version("v0", extra='if records[1].data == "bad" then error("poison") end'))
    env.config([{"name": "s", "processor": "p.lua", "max_records": 1, "on_error": "halt"}])
    env.config([{"name": "s", "processor": "p.lua", "max_records": 1, "on_error": "halt"}], name="put.lua")
    env.create_stream("s", 1)
    w = env.worker()
    wait_for(lambda: w.events("shard_started"), what="start")
    env.config([{"name": "s", "processor": "p.lua", "max_records": 1, "on_error": "skip"}],
               source={"type": "local", "path": "other.db"})
    w.signal(signal.SIGHUP)
    wait_for(lambda: w.events("config_reloaded"), what="config reload")
    refused = w.events("config_reload_refused")
    assert refused and "source" in refused[0]["fields"]
    env.put("s", ["bad", "good"], config="put.lua")
    wait_for(lambda: w.events("records_skipped"), what="skip applied")
    wait_for(lambda: any(r[4] == "good" for r in seen_versions(env)), what="good record")
    assert not w.events("shard_halted")
    w.stop()


def test_a_slow_check_of_a_new_version_does_not_hold_up_the_running_one(env):
    # The new version's initialize takes 4 s, but only in the reload check
    # (the check's shard context says position "reload-check"). Meanwhile
    # the old version goes on processing and leases are renewed: the check
    # runs on a thread of its own, not on the loop.
    (w,) = start(env)
    slow = version("v1").replace("function P.initialize(shard)", """function P.initialize(shard)
  if shard.position == "reload-check" then local t = os.clock() while os.clock() - t < 4 do end end""")
    replace(env, "p.lua", slow, rename=True)
    time.sleep(0.5)  # the debounce is over: the check has started
    env.put("s", [f"during{i}" for i in range(20)])
    wait_for(lambda: len(seen_versions(env)) == 20, timeout=3, what="records processed while the check runs")
    assert {r[0] for r in seen_versions(env)} == {"v0"} and not w.events("reload_applied")
    wait_for(lambda: w.events("reload_applied"), what="the slow version, once checked")
    assert not w.events("lease_lost")
    assert w.stop() == 0


def test_a_slow_config_on_sighup_does_not_hold_up_the_loop(env):
    # The config is user Lua: evaluating it may take as long as it likes (here
    # 3 s when a marker file exists), on a thread of its own. Meanwhile records
    # are processed and leases renewed (lease_duration 2 s: a loop held for
    # 3 s would lose them).
    (w,) = start(env)
    cfg = (env.dir / "shardrun.lua").read_text()
    env.write("put.lua", cfg)
    env.write("shardrun.lua", 'if io.open("slow") then os.execute("sleep 3") end\n' + cfg)
    env.write("slow", "")
    counter = env.leases()["shardId-000000000000"]["leaseCounter"]
    w.signal(signal.SIGHUP)
    time.sleep(0.3)
    env.put("s", [f"during{i}" for i in range(5)], config="put.lua")
    wait_for(lambda: len(seen_versions(env)) == 5, timeout=2.5, what="records processed while the config loads")
    assert not w.events("config_reloaded")
    wait_for(lambda: w.events("config_reloaded"), what="the config, once evaluated")
    assert env.leases()["shardId-000000000000"]["leaseCounter"] > counter + 2
    assert not w.events("lease_lost") and w.stop() == 0
