"""KPL aggregated records (the Kinesis Producer Library's format: magic,
protobuf AggregatedRecord, MD5 trailer), for the tests and the benchmarks
that put them."""
import hashlib


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(num, wire, payload):
    key = _varint((num << 3) | wire)
    return key + (_varint(len(payload)) + payload if wire == 2 else _varint(payload))


def kpl_aggregate(user_records):
    """A KPL aggregated record of [(partition key, data str)]: magic, protobuf
    AggregatedRecord, MD5 trailer."""
    keys = sorted({k for k, _ in user_records})
    msg = b"".join(_field(1, 2, k.encode()) for k in keys)
    for k, data in user_records:
        rec = _field(1, 0, keys.index(k)) + _field(3, 2, data.encode())
        msg += _field(3, 2, rec)
    return b"\xf3\x89\x9a\xc2" + msg + hashlib.md5(msg).digest()
