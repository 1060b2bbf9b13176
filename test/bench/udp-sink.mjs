#!/usr/bin/env node
// A UDP sink for the benchmarks, run as its own process so that counting costs the measured
// process nothing: counts datagrams and bytes, prints {"event":"ready","port":P} once bound and
// {"event":"result",...} on SIGTERM. Usage: node udp-sink.mjs [--addr 127.0.0.1] [--port 0]
import dgram from 'node:dgram';

const args = process.argv.slice(2);
const opt = (k, d) => {
  const i = args.indexOf(`--${k}`);
  return i >= 0 ? args[i + 1] : d;
};
const addr = opt('addr', '127.0.0.1');
let packets = 0;
let bytes = 0;
const sock = dgram.createSocket({ type: addr.includes(':') ? 'udp6' : 'udp4', recvBufferSize: 32 * 1024 * 1024 });
sock.on('message', (m) => {
  packets += 1;
  bytes += m.length;
});
sock.bind(Number(opt('port', '0')), addr, () => {
  process.stdout.write(`${JSON.stringify({ event: 'ready', port: sock.address().port, recvBuffer: sock.getRecvBufferSize() })}\n`);
});
const done = () => {
  process.stdout.write(`${JSON.stringify({ event: 'result', packets, bytes })}\n`, () => process.exit(0));
};
process.on('SIGTERM', done);
process.on('SIGINT', done);
// SIGUSR2: print the running count without stopping.
process.on('SIGUSR2', () => process.stdout.write(`${JSON.stringify({ event: 'count', packets, bytes })}\n`));
