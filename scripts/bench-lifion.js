#!/usr/bin/env node
// bench-lifion.js: drain a pre-filled Kinesis stream with lifion-kinesis (the
// peer shardrun is compared with in `make bench`), no-op handler, and print one
// JSON line with what it saw.
//
//   node scripts/bench-lifion.js STREAM N
//
// Environment: KINESIS_ENDPOINT (default http://127.0.0.1:4567), DYNAMODB_ENDPOINT
// (default http://127.0.0.1:4568), LIFION_GROUP (consumer group and state table
// suffix; default derived from STREAM), BENCH_TIMEOUT_S (default 600),
// NODE_PATH or .deps/node/node_modules for lifion-kinesis 1.3.3.
//
// Only loopback endpoints are accepted, and every outgoing socket is checked:
// a connection to anything but 127.0.0.1 / ::1 / localhost aborts the process
// (so neither the instance metadata service nor a real AWS endpoint is reached
// whatever the SDK decides). Credentials come from the dummy AWS_ACCESS_KEY_ID /
// AWS_SECRET_ACCESS_KEY the caller sets and are passed explicitly.
//
// Setup: polling consumer (useEnhancedFanOut: false), TRIM_HORIZON, automatic
// checkpoints after every GetRecords batch (useAutoCheckpoints: true, the default),
// automatic shard assignment through its DynamoDB state table (the default, one
// consumer so it leases all shards), GetRecords limit 10000 (its default and the
// Kinesis maximum), pollDelay 0 (poll again at once; default 250 ms would only slow
// the drain, not change CPU per record). The handler counts records, nothing else.
// The process exits (process.exit) as soon as N records were seen; it does not
// call stopConsumer, whose shutdown is not part of the measurement.
'use strict';

const net = require('net');
const path = require('path');

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost', '::ffff:127.0.0.1']);

function refuse(what) {
  process.stderr.write(`bench-lifion: refusing non-loopback connection to ${what}\n`);
  process.exit(3);
}

// Guard every TCP connection this process makes.
const origConnect = net.Socket.prototype.connect;
net.Socket.prototype.connect = function guardedConnect(...args) {
  let opts = args[0];
  if (Array.isArray(opts)) [opts] = opts; // internal normalized form: [options, cb]
  let host;
  if (opts && typeof opts === 'object') {
    if (opts.path) return origConnect.apply(this, args); // unix socket
    host = opts.host || 'localhost';
  } else {
    host = typeof args[1] === 'string' ? args[1] : 'localhost';
  }
  if (!LOOPBACK.has(String(host).replace(/^\[|\]$/g, ''))) refuse(host);
  return origConnect.apply(this, args);
};

function loopbackUrl(url) {
  const u = new URL(url);
  if (!LOOPBACK.has(u.hostname.replace(/^\[|\]$/g, ''))) refuse(url);
  return url;
}

const [streamName, nArg] = process.argv.slice(2);
const N = Number(nArg);
if (!streamName || !(N > 0)) {
  process.stderr.write('usage: node scripts/bench-lifion.js STREAM N\n');
  process.exit(2);
}
const kinesisEndpoint = loopbackUrl(process.env.KINESIS_ENDPOINT || 'http://127.0.0.1:4567');
const dynamoEndpoint = loopbackUrl(process.env.DYNAMODB_ENDPOINT || 'http://127.0.0.1:4568');
const group = process.env.LIFION_GROUP || `bench-lifion-${streamName}`;
const timeoutS = Number(process.env.BENCH_TIMEOUT_S || 600);
const leaseIntervalMs = Number(process.env.LIFION_LEASE_INTERVAL_MS || 20000);
const accessKeyId = process.env.AWS_ACCESS_KEY_ID;
const secretAccessKey = process.env.AWS_SECRET_ACCESS_KEY;
if (!accessKeyId || !secretAccessKey || process.env.AWS_EC2_METADATA_DISABLED !== 'true') {
  process.stderr.write('bench-lifion: set dummy AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY and AWS_EC2_METADATA_DISABLED=true\n');
  process.exit(2);
}

const t0 = process.hrtime.bigint();
const cpu0 = process.cpuUsage();
let Kinesis;
try {
  Kinesis = require('lifion-kinesis');
} catch (e) {
  Kinesis = require(path.resolve(__dirname, '../.deps/node/node_modules/lifion-kinesis'));
}
const version = (() => {
  try {
    return require(path.join(path.dirname(require.resolve('lifion-kinesis')), '../package.json')).version;
  } catch (e) {
    return require(path.resolve(__dirname, '../.deps/node/node_modules/lifion-kinesis/package.json')).version;
  }
})();

const errors = [];
const logger = {
  debug: process.env.LIFION_DEBUG ? (...a) => process.stderr.write(`${Date.now() % 100000} lifion debug: ${a.map(String).join(' ')}\n`) : () => {},
  warn: (...a) => process.stderr.write(`lifion warn: ${a.map(String).join(' ')}\n`),
  error: (...a) => {
    errors.push(a.map(String).join(' '));
    process.stderr.write(`lifion error: ${a.map(String).join(' ')}\n`);
  }
};

const awsCommon = { region: 'us-east-1', accessKeyId, secretAccessKey, maxRetries: 3 };
const kinesis = new Kinesis({
  ...awsCommon,
  endpoint: kinesisEndpoint,
  streamName,
  consumerGroup: group,
  createStreamIfNeeded: false,
  dynamoDb: { ...awsCommon, endpoint: dynamoEndpoint, tableName: `lifion-state-${group}` },
  initialPositionInStream: 'TRIM_HORIZON',
  useEnhancedFanOut: false,
  useAutoCheckpoints: true,
  useAutoShardAssignment: true,
  limit: 10000,
  pollDelay: 0,
  leaseAcquisitionInterval: leaseIntervalMs,
  statsInterval: 3600 * 1000,
  logger
});

let count = 0;
let batches = 0;
let firstAt = null;
let tReady = null;
let cpuReady = null;
const perShard = {};

function report(ok, why) {
  const now = process.hrtime.bigint();
  const cpu = process.cpuUsage(cpu0);
  const consumeCpu = cpuReady ? process.cpuUsage(cpuReady) : null;
  const ru = process.resourceUsage();
  const out = {
    ok,
    why: why || null,
    version,
    records: count,
    expected: N,
    batches,
    shards: perShard,
    table_ms: tReady === null ? null : Number(tReady - t0) / 1e6,
    first_record_ms: firstAt === null ? null : Number(firstAt - t0) / 1e6,
    total_ms: Number(now - t0) / 1e6,
    cpu_us: cpu.user + cpu.system,
    // from just before startConsumer (modules loaded, state table ready) to the N-th record
    consume_ms: tReady === null ? null : Number(now - tReady) / 1e6,
    consume_cpu_us: consumeCpu ? consumeCpu.user + consumeCpu.system : null,
    maxrss_kb: ru.maxRSS,
    errors: errors.slice(0, 5)
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
  process.exit(ok ? 0 : 1);
}

kinesis.on('data', ({ records, shardId }) => {
  if (firstAt === null) {
    firstAt = process.hrtime.bigint();
  }
  batches += 1;
  count += records.length;
  perShard[shardId] = (perShard[shardId] || 0) + records.length;
  if (count >= N) report(count === N, count === N ? null : `saw ${count} records, expected ${N}`);
});
kinesis.on('error', (err) => {
  errors.push(String(err && err.stack ? err.stack.split('\n')[0] : err));
});

setTimeout(() => report(false, `timed out after ${timeoutS} s with ${count} of ${N} records`), timeoutS * 1000).unref();
// keep the loop alive until the timeout even if lifion has nothing scheduled
const keepAlive = setInterval(() => {}, 1 << 30);

// lifion creates its state table itself when it is missing, but then waits with the AWS SDK's
// `tableExists` waiter, which polls every 20 s: 20 s of idle startup that would say nothing about
// the consumer. So the table (lifion's own schema, table.js) is created here first and polled
// every 50 ms; lifion then finds it active.
async function ensureStateTable() {
  const { DynamoDB } = require(require.resolve('aws-sdk', { paths: [require.resolve('lifion-kinesis')] }));
  const ddb = new DynamoDB({ ...awsCommon, endpoint: dynamoEndpoint });
  const TableName = `lifion-state-${group}`;
  try {
    await ddb
      .createTable({
        TableName,
        BillingMode: 'PAY_PER_REQUEST',
        AttributeDefinitions: [
          { AttributeName: 'consumerGroup', AttributeType: 'S' },
          { AttributeName: 'streamName', AttributeType: 'S' }
        ],
        KeySchema: [
          { AttributeName: 'consumerGroup', KeyType: 'HASH' },
          { AttributeName: 'streamName', KeyType: 'RANGE' }
        ]
      })
      .promise();
  } catch (err) {
    if (err.code !== 'ResourceInUseException') throw err;
  }
  for (let i = 0; i < 600; i += 1) {
    const { Table } = await ddb.describeTable({ TableName }).promise();
    if (Table.TableStatus === 'ACTIVE') return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`state table ${TableName} did not become active`);
}

ensureStateTable()
  .then(() => {
    tReady = process.hrtime.bigint();
    cpuReady = process.cpuUsage();
    return kinesis.startConsumer();
  })
  .catch((err) => {
  clearInterval(keepAlive);
  report(false, `startConsumer failed: ${err && err.message ? err.message : err}`);
});
