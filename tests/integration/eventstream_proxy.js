// eventstream_proxy.js: an HTTP/1.1 proxy on 127.0.0.1 in front of kinesis-mock's plain
// port, for the fan-out tests. Every call is passed through; the event
// streams of SubscribeToShard are cut into their frames (the prelude says
// each frame's length) and, as the plan says, ended early or broken:
//
//   node eventstream_proxy.js UPSTREAM_PORT '{"end_after_ms": 2500, "faults": {"2": "crc"}}'
//
//   end_after_ms   each subscription ends cleanly at the first frame boundary
//                  after this long (kinesis-mock's own end is 5 minutes)
//   faults         subscription number (1-based, counting those that got an
//                  event, not the refused) -> what happens to its second frame: "crc" flips a bit of the message CRC, "truncate"
//                  sends half of it and ends the body, "unknown" first sends a
//                  well-formed event of a type nobody knows
//   overflow       subscription number -> N bytes: its empty events are
//                  dropped; the first event of at least N bytes is written
//                  but for its last bytes, which go out in one write with the
//                  next event that has records (so the client gets both in
//                  one read: the big event completes with another behind it).
//                  Or -> {"bytes": N, "hold_ms": M}: the same, but from that
//                  next event with records on, every event (empty ones too)
//                  is held for M ms, then all go out with the tail in one write
//
// Prints "listening PORT" once ready; one line per subscription and fault on
// stdout. Node's own modules only; binds 127.0.0.1 only.
'use strict';
const http = require('http');

const upstreamPort = Number(process.argv[2]);
const plan = JSON.parse(process.argv[3] || '{}');
let subscriptions = 0;

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function header(name, value) {
  const n = Buffer.from(name), v = Buffer.from(value);
  const h = Buffer.alloc(1 + n.length + 1 + 2 + v.length);
  h[0] = n.length;
  n.copy(h, 1);
  h[1 + n.length] = 7; // string
  h.writeUInt16BE(v.length, 2 + n.length);
  v.copy(h, 4 + n.length);
  return h;
}

// A well-formed event-stream message.
function message(headers, payload) {
  const hb = Buffer.concat(headers.map(([k, v]) => header(k, v)));
  const total = 12 + hb.length + payload.length + 4;
  const m = Buffer.alloc(total);
  m.writeUInt32BE(total, 0);
  m.writeUInt32BE(hb.length, 4);
  m.writeUInt32BE(crc32(m.subarray(0, 8)), 8);
  hb.copy(m, 12);
  payload.copy(m, 12 + hb.length);
  m.writeUInt32BE(crc32(m.subarray(0, total - 4)), total - 4);
  return m;
}

// The headers of a frame say it is an exception (ResourceInUseException...).
function isException(frame) {
  return frame.subarray(12, 12 + frame.readUInt32BE(4)).includes(Buffer.from('exception'));
}

// A SubscribeToShardEvent frame whose Records are not empty.
function hasRecords(frame) {
  const hlen = frame.readUInt32BE(4);
  try {
    const records = JSON.parse(frame.subarray(12 + hlen, frame.length - 4).toString()).Records;
    return Array.isArray(records) && records.length > 0;
  } catch (e) {
    return true; // not an event's JSON: passed on as it is
  }
}

function subscription(res, up, upRes) {
  // numbered once its first frame is an event: refused subscriptions do not count
  let n = 0, fault;
  const started = Date.now();
  let pending = Buffer.alloc(0), frames = 0, over = false, overflowAt = 0, holdMs = 0, tail = null, held = null;
  const finish = () => {
    over = true;
    up.destroy(); // the mock notices at its next write and lets the shard go
    res.end();
  };
  upRes.on('data', (chunk) => {
    if (over) return;
    pending = Buffer.concat([pending, chunk]);
    while (!over && pending.length >= 12) {
      const total = pending.readUInt32BE(0);
      if (pending.length < total) break;
      let frame = pending.subarray(0, total);
      pending = pending.subarray(total);
      frames++;
      if (frames === 1 && !isException(frame)) {
        n = ++subscriptions;
        fault = (plan.faults || {})[String(n)];
        const o = (plan.overflow || {})[String(n)] || 0;
        overflowAt = typeof o === 'object' ? o.bytes : o;
        holdMs = typeof o === 'object' ? o.hold_ms || 0 : 0;
        console.log(`subscription ${n} fault=${fault || '-'}`);
      }
      if (plan.end_after_ms && Date.now() - started >= plan.end_after_ms) {
        console.log(`subscription ${n} ended after ${frames - 1} frames`);
        finish();
        return;
      }
      if (frames === 2 && fault === 'crc') {
        frame = Buffer.from(frame);
        frame[frame.length - 1] ^= 0x01;
        console.log(`subscription ${n} crc broken`);
      } else if (frames === 2 && fault === 'truncate') {
        res.write(frame.subarray(0, frame.length >> 1));
        console.log(`subscription ${n} truncated`);
        finish();
        return;
      } else if (frames === 2 && fault === 'unknown') {
        res.write(message([[':message-type', 'event'], [':event-type', 'SomethingNew'],
                           [':content-type', 'application/json']], Buffer.from('{"hello":1}')));
        console.log(`subscription ${n} unknown event sent`);
      }
      if (held) { // holding everything until the timer writes it out
        held.push(Buffer.from(frame));
        continue;
      }
      if (overflowAt && frames >= 2) {
        if (!isException(frame) && !hasRecords(frame)) continue; // an empty event: dropped
        if (!tail && frame.length >= overflowAt) {
          tail = Buffer.from(frame.subarray(frame.length - 64));
          res.write(frame.subarray(0, frame.length - 64));
          console.log(`subscription ${n} held the tail of a ${frame.length}-byte event`);
          continue;
        }
        if (tail && holdMs) {
          held = [tail, Buffer.from(frame)];
          console.log(`subscription ${n} holding a ${frame.length}-byte event and what follows for ${holdMs} ms`);
          setTimeout(() => {
            if (!over) res.write(Buffer.concat(held));
            console.log(`subscription ${n} overflow: the tail went out with ${held.length - 1} events`);
            held = null;
          }, holdMs);
          tail = null;
          overflowAt = 0;
          continue;
        }
        if (tail) {
          res.write(Buffer.concat([tail, frame]));
          console.log(`subscription ${n} overflow: the tail went out with a ${frame.length}-byte event`);
          tail = null;
          overflowAt = 0;
          continue;
        }
      }
      res.write(frame);
    }
  });
  upRes.on('end', () => { if (!over) res.end(); });
  upRes.on('error', () => { if (!over) res.destroy(); });
  res.on('close', () => up.destroy());
}

const server = http.createServer((req, res) => {
  const body = [];
  req.on('data', (c) => body.push(c));
  req.on('end', () => {
    const headers = Object.assign({}, req.headers);
    delete headers.connection;
    const up = http.request({host: '127.0.0.1', port: upstreamPort, method: req.method, path: req.url, headers});
    up.on('response', (upRes) => {
      const h = Object.assign({}, upRes.headers);
      delete h['content-length'];
      delete h['transfer-encoding'];
      delete h.connection;
      res.writeHead(upRes.statusCode, h);
      if (/SubscribeToShard/.test(req.headers['x-amz-target'] || '') && upRes.statusCode === 200) {
        subscription(res, up, upRes);
      } else {
        upRes.pipe(res);
      }
    });
    up.on('error', () => res.destroy());
    up.end(Buffer.concat(body));
  });
});
server.listen(0, '127.0.0.1', () => console.log(`listening ${server.address().port}`));
process.on('SIGTERM', () => process.exit(0));
