"""The environment of every process the tests and benchmarks start: the
caller's, without its AWS settings and proxies (so nothing started here can
use real credentials or reach past 127.0.0.1), with the EC2 metadata lookup
off. One definition, so tests and benchmarks cannot drift apart."""
import os


def child_env(*extra):
    """The caller's environment, cleaned; then each dict of `extra` on top, in order."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and not k.lower().endswith("_proxy")}
    e.update(AWS_EC2_METADATA_DISABLED="true", NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    for x in extra:
        e.update(x)
    return e
