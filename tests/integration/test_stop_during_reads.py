"""Stopping while a read is still out: the shard closes when the read
answers (found while testing the AWS metrics under injected throttles)."""
import time

from aws_helpers import FaultProxy, proxied_kinesis_project
from conftest import read_seen, wait_for


def test_sigterm_while_a_kinesis_read_is_retrying_releases_and_exits_0(env, emulators):
    """A read still in its retries when SIGTERM comes answers after the shard
    stopped reading: the shard must still close, release and let the worker
    exit (it used to wait for shutdown_grace_ms, then exit 1 unreleased)."""
    from aws_helpers import KINESALITE_PORT, scan_leases
    mode = {"throttle": False}
    kp = FaultProxy(KINESALITE_PORT, "ProvisionedThroughputExceededException",
                    plan=lambda n: "throttle" if mode["throttle"] else "ok")
    try:
        _, app = proxied_kinesis_project(env, kp, 20, shutdown_grace_ms=10000)
        w = env.worker()
        wait_for(lambda: len(read_seen(env.dir / "seen")) == 20, timeout=60, what="every record")
        mode["throttle"] = True  # every read from now on is throttled and retried
        wait_for(lambda: kp.faults["throttle"] >= 4, what="reads in their retries")
        t0 = time.monotonic()
        assert w.stop(30) == 0, w.logs()[-2000:]
        assert time.monotonic() - t0 < 8  # not shutdown_grace_ms
        assert not w.events("shutdown_timeout")
        assert all(l.get("leaseOwner") is None for l in scan_leases(app).values()), scan_leases(app)
    finally:
        kp.close()
