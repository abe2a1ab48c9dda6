// The load generator of router/benches/signaling_load.rs: real socket.io-client and ws clients against a server
// (Sluice with its built-in signaling plugins, or the Node anchor), the server's CPU and memory read from /proc.
//   node signaling-load.mjs BASE PID relay ROOMS RATE SECONDS   rooms of 4; each client signals its neighbour RATE/s
//   node signaling-load.mjs BASE PID chat VIEWERS RATE SECONDS  one chatter, RATE messages/s, to every viewer
//   node signaling-load.mjs BASE PID idle CLIENTS               memory per idle Socket.IO connection
// Prints one JSON line.
import { readFileSync } from 'node:fs';
import { io } from 'socket.io-client';
import WebSocket from 'ws';

const [base, pidText, scenario, nText, rateText, secondsText] = process.argv.slice(2);
const pid = Number(pidText);
const n = Number(nText);
const rate = Number(rateText ?? 0);
const seconds = Number(secondsText ?? 0);
const TICK = 100; // clock ticks per second on Linux (CLK_TCK)

function cpuSeconds() {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICK;
}

function rssKb() {
  return Number(readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/)[1]);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function percentile(sorted, p) {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] : null;
}

function sioClient() {
  return new Promise((resolve, reject) => {
    const s = io(base, { transports: ['websocket'], forceNew: true, reconnection: false });
    s.once('connect', () => resolve(s));
    s.once('connect_error', reject);
  });
}

async function inBatches(count, make, batch = 50) {
  const out = [];
  for (let i = 0; i < count; i += batch) out.push(...await Promise.all(Array.from({ length: Math.min(batch, count - i) }, make)));
  return out;
}

async function relay() {
  const clients = await inBatches(n * 4, sioClient);
  const ids = [];
  for (let i = 0; i < clients.length; i++) {
    const ack = await clients[i].emitWithAck('join-room', { roomId: `r${Math.floor(i / 4)}`, displayName: `p${i}` });
    ids.push(ack.peerId);
  }
  let received = 0;
  let measuring = false;
  const latencies = [];
  for (const c of clients) {
    c.on('signal', ({ data }) => {
      if (!measuring) return;
      received++;
      if (received % 10 === 0) latencies.push(performance.now() - data.t);
    });
  }
  // Each client signals its neighbour in the room: RATE per second each, sent in 10 ms slices.
  const perSlice = (rate * clients.length) / 100;
  let debt = 0;
  let sent = 0;
  const timer = setInterval(() => {
    debt += perSlice;
    while (debt >= 1) {
      const i = sent % clients.length;
      const to = ids[Math.floor(i / 4) * 4 + ((i + 1) % 4)];
      clients[i].emit('signal', { to, data: { t: performance.now(), kind: 'candidate', candidate: 'candidate:1 1 udp 2122260223 192.0.2.1 54321 typ host' } });
      sent++;
      debt--;
    }
  }, 10);
  await sleep(2000);
  measuring = true;
  const cpu0 = cpuSeconds();
  const t0 = performance.now();
  await sleep(seconds * 1000);
  const wall = (performance.now() - t0) / 1000;
  const cpu = cpuSeconds() - cpu0;
  measuring = false;
  clearInterval(timer);
  const got = received;
  for (const c of clients) c.disconnect();
  latencies.sort((a, b) => a - b);
  return {
    scenario, clients: clients.length, offered_per_s: rate * clients.length, delivered_per_s: Math.round(got / wall),
    server_cores: +(cpu / wall).toFixed(3), per_core_s: cpu > 0 ? Math.round(got / cpu) : null,
    p50_ms: +percentile(latencies, 0.5)?.toFixed(2), p99_ms: +percentile(latencies, 0.99)?.toFixed(2),
  };
}

function wsClient() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${base.replace('http', 'ws')}/ws/live`);
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

async function chat() {
  const viewers = await inBatches(n, wsClient);
  let received = 0;
  let measuring = false;
  const latencies = [];
  for (const [i, ws] of viewers.entries()) {
    ws.on('message', (raw) => {
      if (!measuring) return;
      const m = JSON.parse(raw.toString());
      if (m.type !== 'chat') return;
      received++;
      latencies.push(performance.now() - Number(m.text));
    });
    ws.send(JSON.stringify({ type: 'register', role: 'viewer', name: `v${i}` }));
  }
  const chatter = viewers[0];
  await sleep(1000);
  measuring = true;
  const cpu0 = cpuSeconds();
  const t0 = performance.now();
  const timer = setInterval(() => chatter.send(JSON.stringify({ type: 'chat', text: String(performance.now()) })), 1000 / rate);
  await sleep(seconds * 1000);
  clearInterval(timer);
  await sleep(500); // the last messages in flight
  const wall = (performance.now() - t0) / 1000;
  const cpu = cpuSeconds() - cpu0;
  measuring = false;
  for (const ws of viewers) ws.close();
  latencies.sort((a, b) => a - b);
  return {
    scenario, viewers: n, chats_per_s: rate, delivered_per_s: Math.round(received / wall),
    server_cores: +(cpu / wall).toFixed(3), per_core_s: cpu > 0 ? Math.round(received / cpu) : null,
    p50_ms: +percentile(latencies, 0.5)?.toFixed(2), p99_ms: +percentile(latencies, 0.99)?.toFixed(2),
  };
}

async function idle() {
  await sleep(500);
  const before = rssKb();
  const clients = await inBatches(n, sioClient);
  await sleep(3000);
  const after = rssKb();
  for (const c of clients) c.disconnect();
  return { scenario, clients: n, rss_before_kb: before, rss_after_kb: after, kb_per_connection: +((after - before) / n).toFixed(2) };
}

const result = await ({ relay, chat, idle }[scenario] ?? (() => { throw new Error(`no scenario ${scenario}`); }))();
console.log(JSON.stringify(result));
process.exit(0);
