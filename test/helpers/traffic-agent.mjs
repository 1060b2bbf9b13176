#!/usr/bin/env node
// Traffic agent run inside a network namespace by test/helpers/traffic.ts
// (`ip netns exec <ns> node traffic-agent.mjs <mode> --key value ...`).
// Plain JavaScript so it runs without tsx. Output: JSON lines on stdout,
// {"event":"ready",...} once listening/bound, then one {"event":"result",...}.
//
//   server --proto udp|tcp --addr A --port P [--count N] [--timeout MS] [--seq 1]
//       UDP: exit after N datagrams; TCP: exit after N connections closed (0 = until timeout/SIGTERM).
//       --seq 1 (UDP): read each datagram's sequence number, count the missing and duplicated ones.
//   client --proto udp|tcp --addr A --port P [--sport S] [--bind A] [--count N] [--size B]
//          [--interval MS] [--duration MS] [--timeout MS] [--seq 1]
//       UDP: N datagrams of B bytes (--seq 1: numbered 0, 1, ... in their first 4 bytes,
//       big-endian). TCP: one connection, N writes of B bytes (or one write every MS for
//       --duration), then a clean close.
//   flood --addr A --port P [--flows F] [--sport-base S] [--size B] [--duration MS] [--bind A]
//       F UDP sockets (one flow each) sending B-byte datagrams as fast as possible.
import dgram from 'node:dgram';
import net from 'node:net';

function parseArgs(argv) {
  const [mode, ...rest] = argv;
  const opts = {};
  for (let i = 0; i < rest.length; i += 2) {
    const k = rest[i];
    if (!k?.startsWith('--')) throw new Error(`bad argument ${k}`);
    opts[k.slice(2)] = rest[i + 1];
  }
  return { mode, opts };
}

const num = (v, d) => (v === undefined ? d : Number(v));
const out = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);
const family = (addr) => (net.isIPv6(addr) ? 'udp6' : 'udp4');
const unmap = (a) => (a?.startsWith('::ffff:') ? a.slice(7) : a);

function finish(result, code = 0) {
  out({ event: 'result', ...result });
  // Let stdout drain before exiting.
  process.stdout.write('', () => process.exit(code));
}

function peersTable() {
  const peers = new Map();
  return {
    add(address, port, bytes) {
      const key = `${unmap(address)}|${port}`;
      const p = peers.get(key) ?? { address: unmap(address), port, packets: 0, bytes: 0 };
      p.packets += 1;
      p.bytes += bytes;
      peers.set(key, p);
    },
    list: () => [...peers.values()],
  };
}

function server({ proto, addr, port, count, timeout, seq }) {
  const want = num(count, 0);
  const peers = peersTable();
  const stats = { proto, address: addr, port: Number(port), packets: 0, bytes: 0, connections: 0 };
  const seen = seq === '1' ? new Set() : undefined;
  let duplicates = 0;
  const sequence = () => {
    if (!seen) return {};
    const max = seen.size ? Math.max(...seen) : -1;
    return { seq: { distinct: seen.size, duplicates, max, missing: max + 1 - seen.size } };
  };
  const done = () => finish({ ...stats, peers: peers.list(), ...sequence() });
  setTimeout(done, num(timeout, 30_000));
  process.on('SIGTERM', done);
  process.on('SIGINT', done);
  if (proto === 'udp') {
    const sock = dgram.createSocket({ type: family(addr), ipv6Only: net.isIPv6(addr) });
    sock.on('message', (msg, rinfo) => {
      stats.packets += 1;
      stats.bytes += msg.length;
      peers.add(rinfo.address, rinfo.port, msg.length);
      if (seen && msg.length >= 4) {
        const n = msg.readUInt32BE(0);
        if (seen.has(n)) duplicates += 1;
        else seen.add(n);
      }
      if (want > 0 && stats.packets >= want) done();
    });
    sock.on('error', (e) => finish({ ...stats, error: String(e) }, 1));
    sock.bind(Number(port), addr, () => out({ event: 'ready', ...sock.address() }));
  } else if (proto === 'tcp') {
    const srv = net.createServer((conn) => {
      const ra = conn.remoteAddress;
      const rp = conn.remotePort;
      conn.on('data', (d) => {
        stats.packets += 1;
        stats.bytes += d.length;
        peers.add(ra, rp, d.length);
      });
      conn.on('error', () => {});
      conn.on('close', () => {
        stats.connections += 1;
        if (want > 0 && stats.connections >= want) done();
      });
    });
    srv.on('error', (e) => finish({ ...stats, error: String(e) }, 1));
    srv.listen({ port: Number(port), host: addr, ipv6Only: net.isIPv6(addr) }, () => out({ event: 'ready', ...srv.address() }));
  } else {
    throw new Error(`unknown proto ${proto}`);
  }
}

function client({ proto, addr, port, sport, bind, count, size, interval, duration, timeout, seq }) {
  const n = num(count, 1);
  const bytes = num(size, 64);
  const every = num(interval, 0);
  const forMs = num(duration, 0);
  const payload = Buffer.alloc(bytes, 0x61);
  const stats = { proto, address: addr, port: Number(port), packets: 0, bytes: 0 };
  setTimeout(() => finish({ ...stats, error: 'timeout' }, 1), num(timeout, 60_000)).unref();
  let start = Date.now(); // reset once bound/connected: --duration counts from there
  const more = () => (forMs > 0 ? Date.now() - start < forMs : stats.packets < n);
  const pause = (ms) => new Promise((r) => (ms > 0 ? setTimeout(r, ms) : setImmediate(r)));

  if (proto === 'udp') {
    const sock = dgram.createSocket({ type: family(addr) });
    sock.on('error', (e) => finish({ ...stats, error: String(e) }, 1));
    const go = async () => {
      const local = sock.address();
      out({ event: 'ready', localAddress: local.address, localPort: local.port });
      start = Date.now();
      while (more()) {
        // a copy per datagram when numbered: send() may still hold the previous buffer
        const data = seq === '1' ? Buffer.from(payload) : payload;
        if (seq === '1') data.writeUInt32BE(stats.packets, 0);
        await new Promise((res, rej) => sock.send(data, (e) => (e ? rej(e) : res())));
        stats.packets += 1;
        stats.bytes += bytes;
        if (more()) await pause(every);
      }
      sock.close();
      finish({ ...stats, localAddress: local.address, localPort: local.port });
    };
    sock.bind({ port: num(sport, 0), address: bind }, () => {
      sock.connect(Number(port), addr, () => {
        go().catch((e) => finish({ ...stats, error: String(e) }, 1));
      });
    });
  } else if (proto === 'tcp') {
    const opts = { port: Number(port), host: addr, noDelay: true };
    if (sport !== undefined) opts.localPort = Number(sport);
    if (bind !== undefined) opts.localAddress = bind;
    const conn = net.connect(opts);
    conn.on('error', (e) => finish({ ...stats, error: String(e) }, 1));
    conn.on('connect', async () => {
      const local = { localAddress: unmap(conn.localAddress), localPort: conn.localPort };
      out({ event: 'ready', ...local });
      start = Date.now();
      try {
        while (more()) {
          await new Promise((res, rej) => conn.write(payload, (e) => (e ? rej(e) : res())));
          stats.packets += 1;
          stats.bytes += bytes;
          if (more()) await pause(every);
        }
      } catch (e) {
        finish({ ...stats, ...local, error: String(e) }, 1);
        return;
      }
      conn.end();
      conn.on('close', () => finish({ ...stats, ...local }));
    });
  } else {
    throw new Error(`unknown proto ${proto}`);
  }
}

async function flood({ addr, port, flows, size, duration, bind, 'sport-base': sportBase }) {
  const f = num(flows, 4);
  const base = num(sportBase, 0);
  const payload = Buffer.alloc(num(size, 64), 0x62);
  const forMs = num(duration, 1000);
  const inflight = 64;
  const socks = await Promise.all(
    Array.from({ length: f }, (_, i) => new Promise((res, rej) => {
      const s = dgram.createSocket({ type: family(addr) });
      s.once('error', rej);
      s.bind({ port: base > 0 ? base + i : 0, address: bind }, () => s.connect(Number(port), addr, () => res(s)));
    })),
  );
  const ports = socks.map((s) => s.address().port);
  out({ event: 'ready', ports });
  let sent = 0;
  let errors = 0;
  const start = process.hrtime.bigint();
  const deadline = start + BigInt(forMs) * 1_000_000n;
  await Promise.all(socks.map((s) => new Promise((resolve) => {
    let pending = 0;
    let stopped = false;
    const pump = () => {
      while (!stopped && pending < inflight) {
        if (process.hrtime.bigint() >= deadline) {
          stopped = true;
          break;
        }
        pending += 1;
        s.send(payload, (e) => {
          pending -= 1;
          if (e) errors += 1;
          else sent += 1;
          if (!stopped) pump();
          else if (pending === 0) resolve();
        });
      }
      if (stopped && pending === 0) resolve();
    };
    pump();
  })));
  const elapsedMs = Number(process.hrtime.bigint() - start) / 1e6;
  for (const s of socks) s.close();
  finish({ proto: 'udp', address: addr, port: Number(port), flows: f, ports, sent, errors, bytes: sent * payload.length, elapsedMs });
}

const { mode, opts } = parseArgs(process.argv.slice(2));
if (mode === 'server') server(opts);
else if (mode === 'client') client(opts);
else if (mode === 'flood') flood(opts).catch((e) => finish({ error: String(e) }, 1));
else {
  process.stderr.write(`usage: traffic-agent.mjs server|client|flood --key value ...\n`);
  process.exit(2);
}
