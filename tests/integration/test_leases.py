"""Leases (DESIGN.md section 6, issue 3): many worker processes share the
shards of one stream through the SQLite lease table.

Every test runs real `shardrun run` processes with TIMED_PROCESSOR (each record
logged with the worker's id, shard, sequence number and CLOCK_MONOTONIC time)
and checks the lease table, the workers' log events and the processing logs.
Config: lease_duration_ms = 2000, taker_interval_ms = 200 (conftest defaults),
so renewals every ~667 ms."""
import json
import re
import signal
import socket
import sqlite3
import time


from conftest import (TIMED_PROCESSOR, LeaseMonitor, Producer, owners, read_stints, seq_rank, wait_all_processed,
                      wait_for)

LEASE_S = 2.0
TAKER_S = 0.2


def prepare(env, shards, stream=None, **top):
    env.write("p.lua", TIMED_PROCESSOR)
    env.config([dict({"name": "s", "processor": "p.lua"}, **(stream or {}))], **top)
    env.create_stream("s", shards)


def worker_ids(ws):
    """{runtime worker id: Worker} from each worker's worker_started event."""
    out = {}
    for w in ws:
        ev = wait_for(lambda: w.events("worker_started"), timeout=20, what=f"{w.name} started")
        out[ev[0]["worker"]] = w
    return out


def load(env):
    """Sorted owned-lease counts per owner (unowned leases left out)."""
    return sorted(len(v) for k, v in owners(env).items() if k is not None)


def pending_handoffs(env):
    try:
        return [k for k, v in env.leases().items() if v.get("pendingOwner")]
    except sqlite3.OperationalError:
        return ["?"]


def processed(stints):
    out = {}
    for s in stints:
        for seq, t, data in s.records:
            out.setdefault(data, []).append((t, s, seq))
    return out


def first_takeover(stints, shard, victim_id, after):
    """Monotonic time of the first record processed on `shard` by a worker other than the victim after `after`."""
    ts = [t for s in stints if s.shard == shard and s.worker != victim_id for _, t, _ in s.records if t > after]
    return min(ts) if ts else None


def w2_joins_w1(env, timeout, what="w1 owns both leases"):
    """w1 starts and takes both leases, then w2 starts: (w1, w2, w1's worker id, w2's)."""
    w1 = env.worker(name="w1")
    (w1_id,) = worker_ids([w1])
    wait_for(lambda: load(env) == [2], timeout=timeout, what=what)
    w2 = env.worker(name="w2")
    (w2_id,) = worker_ids([w2])
    return w1, w2, w1_id, w2_id


def two_workers_at_2_2(env, timeout):
    """A producer and workers w1 and w2 sharing 4 shards 2/2, processing for a
    second: (producer, w1, w2, w1's worker id, w1's shards in order)."""
    prod = Producer(env, "s", batch=8, interval=0.03).start()
    w1, w2 = env.worker(name="w1"), env.worker(name="w2")
    ids = worker_ids([w1, w2])
    wait_for(lambda: load(env) == [2, 2], timeout=timeout, what=f"2/2 (now {load(env)})")
    time.sleep(1.0)
    w1_id = next(k for k, v in ids.items() if v is w1)
    shards = sorted(k for k, v in env.leases().items() if v["leaseOwner"] == w1_id)
    return prod, w1, w2, w1_id, shards


def takeover_delays(env, prod, survivor, victim_id, shards, since, timeout, what, label):
    """Waits until a peer processes each of the victim's `shards` after `since`,
    then until every record `prod` put is processed; stops the survivor and
    prints each shard's delay after `label`. Returns (stints, produced,
    {shard: seconds from `since` to the peer's first record})."""
    def taken_over():
        st = read_stints(env.dir / "seen")
        return all(first_takeover(st, sh, victim_id, since) for sh in shards)
    wait_for(taken_over, timeout=timeout, interval=0.05, what=what)
    time.sleep(0.5)
    produced = prod.stop()
    assert not prod.errors, prod.errors[:3]
    wait_all_processed(env, produced)
    assert survivor.stop() == 0

    stints = read_stints(env.dir / "seen")
    delays = {sh: first_takeover(stints, sh, victim_id, since) - since for sh in shards}
    print(f"{label}: " + ", ".join(f"{k}={v:.2f}s" for k, v in delays.items()))
    return stints, produced, delays


def assert_all_processed(stints, produced):
    """Every produced record is in some stint; returns processed(stints)."""
    got = processed(stints)
    missing = [d for d in produced if d not in got]
    assert not missing, f"{len(missing)} records never processed, e.g. {missing[:5]}"
    return got


def resumed_stints(stints, shard, victim_id, since):
    """The stints of `shard` by workers other than the victim, started after `since`."""
    return [s for s in stints if s.shard == shard and s.worker != victim_id and s.start > since]


def max_overlap(stints):
    """[(overlap seconds, stint a, stint b)] of every two stints of one shard, largest first."""
    out = []
    by_shard = {}
    for s in stints:
        if s.records or s.ends:
            by_shard.setdefault(s.shard, []).append(s)
    for shard, ss in by_shard.items():
        for i, a in enumerate(ss):
            for b in ss[i + 1:]:
                ov = min(a.end, b.end) - max(a.start, b.start)
                if ov > 0:
                    out.append((ov, a, b))
    return sorted(out, key=lambda x: -x[0])


# ---- balance and stealing ------------------------------------------------------------------------


def test_a_worker_waits_for_a_lease_file_another_process_is_setting_up(env):
    # Workers started together set the same new file up at once; the one that
    # finds it locked must wait and start, not give up. Here the lock is held
    # on purpose for 1.5 s, far past SQLite's per-call busy wait.
    env.write("p.lua", "return { processRecords = function() return 'checkpoint' end }\n")
    env.config([{"name": "s", "processor": "p.lua"}])
    env.create_stream("s", 2)
    holder = sqlite3.connect(env.dir / "leases.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    w = env.worker()
    time.sleep(1.5)
    assert w.alive() and not w.events("worker_started"), w.logs()[-2000:]
    holder.execute("ROLLBACK")
    holder.close()
    wait_for(lambda: w.events("shard_started"), what="the worker, once the file is free")
    assert not w.events("backend_open_failed")
    assert w.stop() == 0


def test_three_workers_converge_to_3_3_2_and_a_fourth_gets_shards_by_stealing(env):
    prepare(env, 8)
    prod = Producer(env, "s", batch=16, interval=0.05).start()
    ws = [env.worker(name=f"w{i}") for i in (1, 2, 3)]
    spawned = time.monotonic()
    ids = worker_ids(ws)
    assert len(ids) == 3, "three distinct default worker ids"
    # 3 taker intervals once the workers run (process start-up and the first
    # shard sync are the slack: 3 s)
    wait_for(lambda: load(env) == [2, 3, 3] and not pending_handoffs(env), timeout=3 * TAKER_S + 3.0,
             interval=0.02, what=f"3/3/2 (now {load(env)})")
    converged = time.monotonic() - spawned
    # and it stays there: no lease changes hands for 10 taker intervals
    snapshot = {k: v["leaseOwner"] for k, v in env.leases().items()}
    deadline = time.monotonic() + 10 * TAKER_S
    while time.monotonic() < deadline:
        now = {k: v["leaseOwner"] for k, v in env.leases().items()}
        assert now == snapshot, f"leases moved after convergence (ping-pong): {snapshot} -> {now}"
        time.sleep(0.05)
    # every worker knows what the table says it owns (a handoff is adopted at the next scan)
    for wid, w in ids.items():
        mine = {k for k, o in snapshot.items() if o == wid}
        taken = {e["lease"] for e in w.events("lease_taken")}
        assert mine <= taken, (w.name, mine, taken)

    w4 = env.worker(name="w4")
    ids.update(worker_ids([w4]))
    w4_id = next(k for k, v in ids.items() if v is w4)
    wait_for(lambda: load(env) == [2, 2, 2, 2], timeout=15, interval=0.05, what=f"2/2/2/2 (now {load(env)})")
    mine = wait_for(lambda: [k for k, v in env.leases().items() if v["leaseOwner"] == w4_id], timeout=5,
                    what="w4's leases")
    wait_for(lambda: {e["lease"] for e in w4.events("lease_taken") if e["stolen"] == "1"} >= set(mine), timeout=5,
             what=f"w4 logs lease_taken stolen=1 for {mine}")
    stolen = [e for e in w4.events("lease_taken") if e["stolen"] == "1"]
    assert len(stolen) >= 2 and not [e for e in w4.events("lease_taken") if e["stolen"] != "1"], \
        w4.events("lease_taken")
    # each victim gave the lease up: it was asked to hand it over (or lost it)
    victims = {e["lease"]: e["from"] for e in w4.events("lease_handoff_requested")}
    for e in stolen:
        assert victims.get(e["lease"]) in ids and victims[e["lease"]] != w4_id, (e, victims)
        victim = ids[victims[e["lease"]]]
        wait_for(lambda: [x for x in victim.events("lease_handed_off") + victim.events("shard_lease_lost")
                          if x.get("lease", x.get("shard")) == e["lease"]], timeout=10,
                 what=f"{victim.name} hands over {e['lease']}")

    time.sleep(1.0)
    produced = prod.stop()
    assert not prod.errors, prod.errors[:3]
    wait_all_processed(env, produced)
    for w in ws + [w4]:
        assert w.stop() == 0, w.logs()[-3000:]

    stints = read_stints(env.dir / "seen")
    assert_all_processed(stints, produced)
    # two owners of one shard at once only within the lease-expiry overlap
    overlaps = max_overlap(stints)
    assert not overlaps or overlaps[0][0] <= LEASE_S + 0.5, overlaps[:3]
    # within one stint, records go in sequence order
    for s in stints:
        seqs = [q for q, _, _ in s.records]
        assert seqs == sorted(seqs), s
    print(f"converged to 3/3/2 in {converged:.2f}s after spawning; max owner overlap "
          f"{overlaps[0][0] if overlaps else 0:.3f}s; stolen by w4: {len(stolen)}")


# ---- failover ---------------------------------------------------------------------------------------


def test_kill_9_shards_resume_elsewhere_within_lease_duration_and_only_after_the_last_checkpoint(env):
    # checkpoints coalesced per 500 ms: the dead worker leaves processed records past its last checkpoint
    prepare(env, 4, stream={"checkpoint_interval_ms": 500})
    prod, victim, w2, victim_id, shards = two_workers_at_2_2(env, timeout=15)  # both process for a while
    assert len(shards) == 2
    t_kill = time.monotonic()
    victim.kill()
    last_cp = {k: env.leases()[k]["checkpoint"] for k in shards}  # the dead worker wrote nothing after this

    stints, produced, delays = takeover_delays(env, prod, w2, victim_id, shards, t_kill,
                                               timeout=LEASE_S + TAKER_S + 10, what="the dead worker's shards resume",
                                               label="kill -9 takeover (kill -> first record by the survivor)")
    bound = LEASE_S + TAKER_S + 1.0
    assert max(delays.values()) <= bound, f"takeover took {delays} (bound {bound}s)"
    assert_all_processed(stints, produced)
    for sh in shards:
        cp = seq_rank(last_cp[sh])
        later = resumed_stints(stints, sh, victim_id, t_kill)
        assert later, sh
        # the survivor resumed from the dead worker's last checkpoint
        assert seq_rank(later[0].position) == cp, (later[0], last_cp[sh])
        # re-deliveries only after that checkpoint
        for s in later:
            early = [q for q, _, _ in s.records if q <= cp]
            assert not early, f"{sh}: {len(early)} records at or before the last checkpoint {last_cp[sh]} again"
        dead = {q for s in stints if s.shard == sh and s.worker == victim_id for q, _, _ in s.records}
        redelivered = {q for s in later for q, _, _ in s.records} & dead
        assert all(q > cp for q in redelivered)
        print(f"{sh}: re-delivered {len(redelivered)} records after checkpoint {last_cp[sh]}")


def test_sigterm_shards_resume_elsewhere_within_taker_interval_with_no_redelivery(env):
    prepare(env, 4)
    prod, w1, w2, victim_id, shards = two_workers_at_2_2(env, timeout=15)
    t_term = time.monotonic()
    assert w1.stop() == 0, w1.logs()[-3000:]
    released = env.leases()
    for sh in shards:
        assert released[sh]["leaseOwner"] != victim_id, f"{sh} not released: {released[sh]}"

    stints, produced, delays = takeover_delays(env, prod, w2, victim_id, shards, t_term, timeout=10,
                                               what="the stopped worker's shards resume",
                                               label="SIGTERM takeover (signal -> first record by the survivor)")
    assert max(delays.values()) <= TAKER_S + 1.0, f"takeover took {delays} (bound {TAKER_S + 1.0}s)"
    got = assert_all_processed(stints, produced)
    dups = {d: v for d, v in got.items() if len(v) > 1}
    assert not dups, f"{len(dups)} records re-delivered after a graceful stop, e.g. {list(dups.items())[:3]}"
    # shutdownRequested ran on each of the stopped worker's shards, none got leaseLost
    ends = [e for s in stints if s.worker == victim_id for e, _ in s.ends]
    assert ends.count("shutdownRequested") >= len(shards) and "leaseLost" not in ends, ends


def test_sigstop_past_the_lease_then_sigcont_gets_lease_lost_and_cannot_checkpoint(env):
    # one shard, slow batches: the paused worker is in the middle of one when it wakes up
    prepare(env, 1, stream={"max_records": 20})
    env.extra_env["SLOW_MS"] = "150"
    prod = Producer(env, "s", batch=5, interval=0.05).start()
    w1 = env.worker("-v", name="w1")
    ids = worker_ids([w1])
    (key,) = env.leases()
    wait_for(lambda: env.leases()[key]["leaseOwner"] in ids, timeout=10, what="w1 owns the shard")
    w2 = env.worker("-v", name="w2")
    ids.update(worker_ids([w2]))
    w1_id = next(k for k, v in ids.items() if v is w1)
    w2_id = next(k for k, v in ids.items() if v is w2)
    time.sleep(1.0)
    assert env.leases()[key]["leaseOwner"] == w1_id, "w2 has no reason to steal the only lease"
    mon = LeaseMonitor(env).start()
    w1.signal(signal.SIGSTOP)
    t_stop = time.monotonic()
    try:
        wait_for(lambda: env.leases()[key]["leaseOwner"] == w2_id, timeout=LEASE_S + TAKER_S + 5,
                 what="w2 takes the expired lease")
        # w2 moves the checkpoint on
        cp_taken = seq_rank(env.leases()[key]["checkpoint"])
        wait_for(lambda: seq_rank(env.leases()[key]["checkpoint"]) > cp_taken, timeout=10,
                 what="w2 checkpoints")
        time.sleep(max(0.0, t_stop + LEASE_S + 0.5 - time.monotonic()))
    finally:
        w1.signal(signal.SIGCONT)
    t_cont = time.monotonic()
    wait_for(lambda: w1.events("shard_lease_lost"), timeout=10, what="w1 gets leaseLost")
    time.sleep(1.5)  # w1's late batch completes; w2 keeps going
    row_after = env.leases()[key]
    produced = prod.stop()
    wait_all_processed(env, produced)
    mon.stop()
    assert w1.stop() == 0 and w2.stop() == 0

    lost = w1.events("lease_lost")
    assert lost and lost[0]["lease"] == key, w1.logs()[-3000:]
    assert row_after["leaseOwner"] == w2_id, row_after
    regressions = mon.checkpoint_regressions()
    assert not regressions, f"the checkpoint went backwards: {regressions[:3]}"
    # after the pause, no row was ever written with w1 as the owner
    back = [s for s in mon.samples if s[0] > t_stop + LEASE_S + TAKER_S + 1.0 and s[2] == w1_id]
    assert not back, f"w1 owned the lease again after it was taken: {back[:3]}"
    stints = read_stints(env.dir / "seen")
    w1_stints = [s for s in stints if s.worker == w1_id]
    # w1's processor heard leaseLost, and processed nothing after waking but the batch it was in
    assert any(e == "leaseLost" for s in w1_stints for e, _ in s.ends), w1_stints
    late = [t for s in w1_stints for _, t, _ in s.records if t > t_cont + 0.5]
    assert not late, f"w1 processed {len(late)} records after it lost the lease"
    # no checkpoint write from w1 reached the store after the pause: every checkpoint
    # in the table after the pause is at or before what w2 processed
    w2_max = max(q for s in stints if s.worker == w2_id for q, _, _ in s.records)
    after = [s for s in mon.samples if s[0] > t_cont]
    assert all(s[2] == w2_id for s in after), {s[2] for s in after}
    assert all(seq_rank(s[4]) <= w2_max for s in after)


# ---- bad rows ----------------------------------------------------------------------------------------


BAD_ROWS = [
    # leaseKey, leaseOwner, leaseCounter, checkpoint, parentShardId, childShardIds, expected error
    ("bad-no-counter", None, None, "TRIM_HORIZON", None, None, "leaseCounter"),
    ("bad-text-counter", None, "many", "TRIM_HORIZON", None, None, "leaseCounter"),
    ("bad-real-counter", None, 2.5, "TRIM_HORIZON", None, None, "leaseCounter"),
    ("bad-blob-owner", b"\x00\x01", 3, "TRIM_HORIZON", None, None, "leaseOwner"),
    ("bad-empty-owner", "", 3, "TRIM_HORIZON", None, None, "leaseOwner"),
    ("bad-no-checkpoint", None, 1, None, None, None, "checkpoint"),
    ("bad-checkpoint", None, 1, "yesterday", None, None, "checkpoint"),
    ("bad-parents-text", None, 1, "TRIM_HORIZON", "shardId-000000000000", None, "parentShardId"),
    ("bad-parents-numbers", None, 1, "TRIM_HORIZON", "[1, 2]", None, "parentShardId"),
    ("bad-parents-object", None, 1, "TRIM_HORIZON", '{"a": "b"}', None, "parentShardId"),
    ("bad-children", None, 1, "TRIM_HORIZON", None, "[null]", "childShardIds"),
]


def test_bad_lease_rows_are_reported_by_key_skipped_and_the_good_shards_go_on(env):
    prepare(env, 2)
    env.put("s", [f"a{i}" for i in range(50)])
    w = env.worker("--drain", name="w0")  # creates the table and the good leases
    assert w.wait(30) == 0, w.logs()
    con = sqlite3.connect(env.dir / "leases.db", timeout=10)
    with con:
        for key, owner, counter, cp, parents, children, _ in BAD_ROWS:
            con.execute('INSERT INTO "test"(leaseKey, leaseOwner, leaseCounter, checkpoint, parentShardId,'
                        ' childShardIds) VALUES(?,?,?,?,?,?)', (key, owner, counter, cp, parents, children))
        # a row without a key at all must not crash anyone either
        con.execute('INSERT INTO "test"(leaseKey, leaseCounter, checkpoint) VALUES(NULL, 1, "TRIM_HORIZON")')
    con.close()
    before = {k: dict(v) for k, v in env.leases().items() if k and k.startswith("bad-")}
    prod = Producer(env, "s", batch=10, interval=0.05).start()
    w1, w2 = env.worker(name="w1"), env.worker(name="w2")
    worker_ids([w1, w2])

    def reported(w):
        return {e["lease"]: e for e in w.events("lease_row_invalid")}
    wanted = {r[0] for r in BAD_ROWS}
    wait_for(lambda: wanted <= set(reported(w1)) and wanted <= set(reported(w2)), timeout=15,
             what="every bad row reported by both workers")
    time.sleep(1.5)  # several taker runs
    produced = prod.stop()
    wait_all_processed(env, ["a%d" % i for i in range(50)] + produced)
    assert w1.alive() and w2.alive(), "a bad row must never crash a worker"
    for key, *_, field in BAD_ROWS:
        ev = reported(w1)[key]
        assert field in ev["error"], (key, ev)
        assert ev["action"] == "skipped"
    # each reported once, not at every scan
    for w in (w1, w2):
        keys = [e["lease"] for e in w.events("lease_row_invalid")]
        assert len(keys) == len(set(keys)), f"{w.name} repeats invalid-row reports: {keys}"
    after = {k: dict(v) for k, v in env.leases().items() if k and k.startswith("bad-")}
    assert after == before, "bad rows were written to (taken, renewed or deleted)"
    st = env.status()
    states = {r["leaseKey"]: r for r in st}
    for key, *_, field in BAD_ROWS:
        assert states[key]["state"] == "invalid" and field in states[key]["error"], states[key]
    good = [r for r in st if r["state"] != "invalid"]
    assert len(good) == 2 and all(r["owner"] for r in good), good
    assert w1.stop() == 0 and w2.stop() == 0
    assert w1.events("worker_stopped") and w2.events("worker_stopped")


# ---- identity and status ---------------------------------------------------------------------------------


def test_worker_id_from_config_is_used_and_the_default_is_host_pid_random(env):
    env.write("p.lua", TIMED_PROCESSOR)
    env.config([{"name": "s", "processor": "p.lua"}], name="named.lua", worker_id="blue-7")
    env.config([{"name": "s", "processor": "p.lua"}])
    env.create_stream("s", 2)
    env.put("s", [f"r{i}" for i in range(20)])
    named = env.worker(config="named.lua", name="named")
    wait_for(lambda: set(owners(env)) == {"blue-7"} and len(owners(env)["blue-7"]) == 2, timeout=10,
             what="blue-7 owns both leases")
    assert named.events("worker_started")[0]["worker"] == "blue-7"
    wait_all_processed(env, [f"r{i}" for i in range(20)])
    assert {s.worker for s in read_stints(env.dir / "seen")} == {"blue-7"}
    assert named.stop() == 0
    a, b = env.worker(name="a"), env.worker(name="b")
    ids = worker_ids([a, b])
    host = socket.gethostname()
    for wid, w in ids.items():
        m = re.fullmatch(r"(.+):(\d+):([0-9a-f]{8})", wid)
        assert m, wid
        assert m.group(1) == host and int(m.group(2)) == w.pid, (wid, w.pid)
    assert len(ids) == 2
    wait_for(lambda: set(owners(env)) - {None} <= set(ids) and load(env) == [1, 1], timeout=10,
             what="the two default ids own one lease each")


def test_status_table_and_json_show_owner_checkpoint_counter_parents_state_and_records_behind(env):
    prepare(env, 2)
    # keys that land on each shard: shard 0 has the low half of the MD5 space
    env.put("s", [f"x{i}" for i in range(30)], partition_key="k-low")
    w = env.worker("--drain", name="w0")
    assert w.wait(30) == 0, w.logs()
    st = {r["shard"]: r for r in env.status()}
    assert set(st) == {"shardId-000000000000", "shardId-000000000001"}
    loaded = [r for r in st.values() if r["checkpoint"] != "TRIM_HORIZON"]
    (busy,) = loaded
    (idle,) = [r for r in st.values() if r is not busy]
    rows = env.leases()
    for r in st.values():
        assert r["stream"] == "s" and r["leaseKey"] == r["shard"]
        assert r["owner"] is None and r["state"] == "unowned" and r["parents"] == []
        assert r["counter"] == rows[r["leaseKey"]]["leaseCounter"] and r["counter"] > 0
        assert r["checkpoint"] == rows[r["leaseKey"]]["checkpoint"]
        assert r["recordsBehind"] == 0, r
    assert re.fullmatch(r"\d{20}", busy["checkpoint"])
    assert idle["checkpoint"] == "TRIM_HORIZON"
    # records behind the checkpoint, per shard
    env.put("s", [f"y{i}" for i in range(7)], partition_key="k-low")
    st = {r["shard"]: r for r in env.status()}
    assert st[busy["shard"]]["recordsBehind"] == 7 and st[idle["shard"]]["recordsBehind"] == 0
    # a running worker: owner, caught up ("idle": nothing to read or process now), counter moving
    live = env.worker(name="live")
    (wid,) = worker_ids([live])
    wait_for(lambda: all(r["owner"] == wid and r["state"] == "idle" and r.get("recordsBehind") == 0
                         for r in env.status()), timeout=10, what="status: idle at the live worker, caught up")
    c1 = {r["shard"]: r["counter"] for r in env.status()}
    time.sleep(LEASE_S / 3 * 2)
    c2 = {r["shard"]: r["counter"] for r in env.status()}
    assert all(c2[k] > c1[k] for k in c1), ("renewals move the counter", c1, c2)
    table = env.run("status").stdout.decode()
    lines = table.splitlines()
    header = lines[0].split()
    assert header == ["STREAM", "SHARD", "OWNER", "CHECKPOINT", "COUNTER", "PARENTS", "STATE", "BEHIND"], lines[0]
    assert len(lines) == 3, table
    by_shard = {l.split()[1]: l for l in lines[1:]}
    for r in env.status():
        line = by_shard[r["shard"]]
        cols = line.split()
        assert cols[0] == "s" and cols[2] == wid and cols[3] == r["checkpoint"], line
        assert int(cols[4]) >= r["counter"] - 2 and cols[5] == "-" and cols[6] == "idle" and cols[7] == "0", line
    assert live.stop() == 0
    json.loads(env.run("status", "--json").stdout)  # also valid without -c


def test_a_stolen_lease_names_its_previous_owner(env):
    # lease_taken carries previous_owner: after a steal (graceful or not), who had it
    prepare(env, 2)
    prod = Producer(env, "s", batch=4, interval=0.05).start()
    w1, w2, w1_id, _ = w2_joins_w1(env, timeout=10)
    stolen = wait_for(lambda: [e for e in w2.events("lease_taken") if e["stolen"] == "1"], timeout=10,
                      what="w2 steals one lease")
    prod.stop()
    assert load(env) == [1, 1]
    assert stolen[0]["previous_owner"] == w1_id, stolen[0]


def test_a_lease_table_without_the_newer_columns_is_used_as_it_is(env):
    # A table written before pendingOwner/shardrunInfo existed (an earlier shardrun,
    # or one laid out by hand with the KCL's columns) is read and continued.
    prepare(env, 2)
    con = sqlite3.connect(env.dir / "leases.db")
    with con:
        con.execute('CREATE TABLE "test"(leaseKey TEXT PRIMARY KEY, leaseOwner TEXT, leaseCounter INTEGER,'
                    ' checkpoint TEXT, checkpointSubSequenceNumber INTEGER DEFAULT 0,'
                    ' ownerSwitchesSinceCheckpoint INTEGER DEFAULT 0, parentShardId TEXT, childShardIds TEXT,'
                    ' startingHashKey TEXT, endingHashKey TEXT, streamName TEXT, shardId TEXT)')
    con.close()
    env.put("s", [f"r{i}" for i in range(40)])
    w = env.worker("--drain", name="w0")
    try:
        w.wait(8)
    except Exception:
        pass
    assert not w.events("lease_scan_failed"), w.events("lease_scan_failed")[:1]
    assert w.wait(1) == 0, w.logs()[-3000:]
    got = {d for s in read_stints(env.dir / "seen") for _, _, d in s.records}
    assert got == {f"r{i}" for i in range(40)}


def test_a_worker_stopped_while_its_handoff_request_is_pending_leaves_no_lease_in_its_name(env):
    # w1 owns both shards and runs slow batches; w2 joins and asks for one (a graceful
    # handoff, done at w1's next batch boundary); w2 is SIGTERMed before that. A
    # gracefully stopped worker must not end up owning a lease nobody renews: the
    # shard would then wait for the lease to expire instead of going on at once.
    prepare(env, 2, stream={"max_records": 5})
    env.extra_env["SLOW_MS"] = "1500"
    prod = Producer(env, "s", batch=4, interval=0.05).start()
    w1, w2, _, w2_id = w2_joins_w1(env, timeout=10)
    wait_for(lambda: w2.events("lease_handoff_requested"), timeout=10, what="w2 asks for a lease")
    assert w2.stop() == 0
    t_exit = time.monotonic()
    time.sleep(1.5 + 0.5)  # w1's batch in flight ends: the handoff (if still asked for) happens now
    rows = env.leases()
    prod.stop()
    stuck = {k: dict(v) for k, v in rows.items() if w2_id in (v["leaseOwner"], v.get("pendingOwner"))}
    assert not stuck, f"after w2 stopped ({time.monotonic() - t_exit:.1f}s ago) the table still names it: {stuck}"


SLOW_SHUTDOWN_PROCESSOR = r'''
local ffi = require "ffi"
pcall(ffi.cdef, "int usleep(unsigned int usec);")
local P = {}
local function note(what, shard)
  local f = assert(io.open("events.log", "a"))
  f:write(what, " ", shard.worker, " ", shard.id, "\n")
  f:close()
end
function P.processRecords(records, shard) return "checkpoint" end
function P.shutdownRequested(shard)
  note("shutdownRequested", shard)
  for i = 1, 20 do ffi.C.usleep(100000) end
  return "checkpoint"
end
function P.leaseLost(shard) note("leaseLost", shard) end
return P
'''


def test_a_lease_lost_during_shutdown_requested_is_told_to_the_processor(env):
    # SIGTERM: shutdownRequested runs (2 s); the worker is paused past its lease meanwhile
    # and a peer takes the shard. The processor's "checkpoint" from shutdownRequested
    # is refused (fencing), so it must hear leaseLost: otherwise it believes its
    # records are checkpointed while the peer processes them again.
    env.write("p.lua", SLOW_SHUTDOWN_PROCESSOR)
    env.config([{"name": "s", "processor": "p.lua"}])
    env.create_stream("s", 1)
    env.put("s", [f"r{i}" for i in range(10)])
    w1 = env.worker(name="w1")
    ids = worker_ids([w1])
    (key,) = wait_for(lambda: [k for k, v in env.leases().items() if v["leaseOwner"] in ids], timeout=10,
                      what="w1 owns the lease")
    w2 = env.worker(name="w2")
    ids.update(worker_ids([w2]))
    w2_id = next(k for k, v in ids.items() if v is w2)
    time.sleep(0.5)
    w1.signal(signal.SIGTERM)
    log = env.dir / "events.log"
    wait_for(lambda: log.exists() and "shutdownRequested" in log.read_text(), timeout=10, what="shutdownRequested")
    w1.signal(signal.SIGSTOP)
    try:
        wait_for(lambda: env.leases()[key]["leaseOwner"] == w2_id, timeout=LEASE_S + TAKER_S + 5,
                 what="w2 takes the expired lease")
    finally:
        w1.signal(signal.SIGCONT)
    w1.wait(20)
    assert w1.events("lease_lost"), w1.logs()[-2000:]
    assert env.leases()[key]["leaseOwner"] == w2_id
    lines = log.read_text().split("\n")
    assert any(l.startswith("leaseLost") and l.split()[1] in ids and l.split()[1] != w2_id for l in lines), \
        f"w1 lost the lease during shutdownRequested but its processor never got leaseLost: {lines}"
    w2.stop()


def test_a_stream_renamed_under_the_same_application_is_exit_2_naming_both_streams(env):
    """Issue 11 #12: the lease rows of stream `words` hold the same keys the
    shards of `words2` would use. Running `words2` under the same application
    is a configuration error at start, not a worker that silently processes
    nothing."""
    env.write("p.lua", TIMED_PROCESSOR)
    env.config([{"name": "words", "processor": "p.lua"}])
    env.create_stream("words", 2)
    env.put("words", ["a", "b", "c"])
    w = env.worker("--drain")
    assert w.wait(60) == 0, w.logs()[-3000:]
    env.config([{"name": "words2", "processor": "p.lua"}])
    env.create_stream("words2", 2)
    env.put("words2", ["d", "e"])
    w2 = env.worker("--drain", name="renamed")
    assert w2.wait(60) == 2, w2.logs()[-3000:]
    logs = w2.logs()
    err = [e for e in w2.events("worker_cannot_start")]
    assert err, logs[-3000:]
    msg = err[0]["error"]
    assert "words2" in msg and "stream words," in msg and "application test" in msg, msg
    assert "leases.db" in msg and "application name" in msg, msg
    assert not w2.events("worker_drained")
