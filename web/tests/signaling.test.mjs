// Signaling through the built-in plugins with the real clients apps use: the npm socket.io-client (default
// transports: long-polling then the upgrade to WebSocket; and WebSocket only) and a plain WebSocket client (ws).
import { test, before, after } from 'node:test';
import { writeFileSync } from 'node:fs';
import assert from 'node:assert/strict';
import { io } from 'socket.io-client';
import WebSocket from 'ws';
import { startRouter, startBrowser, waitFrames, videoStat, SERVER, SIGNALING as routes } from './harness.mjs';


let router;
const open = [];

before(async () => {
  router = await startRouter(routes);
});

after(async () => {
  for (const c of open) c.close?.();
  await router?.stop();
});

/** What a client received, in order: `record(item)` adds one; `until(pred, what)` resolves once `pred()` holds
 * (checked on every arrival; clients have no other event to wait on). */
function recorder() {
  const seen = [];
  const waiters = [];
  const record = (item) => {
    seen.push(item);
    for (const w of [...waiters]) if (w.pred()) { waiters.splice(waiters.indexOf(w), 1); w.resolve(); }
  };
  const until = (pred, what, ms = 5000) => pred() ? Promise.resolve() : new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}; seen ${JSON.stringify(seen)}`)), ms);
    waiters.push({ pred, resolve: () => { clearTimeout(timer); resolve(); } });
  });
  return { seen, record, until };
}

/** A socket.io client that records every event it receives, in order. */
function client(transports, path = '/socket.io/') {
  const socket = io(router.base, { transports, path, forceNew: true, reconnection: false });
  const { seen, record, until } = recorder();
  socket.onAny((name, ...args) => record([name, ...args]));
  open.push(socket);
  return { socket, seen, until, count: (n, what) => until(() => seen.length >= n, what) };
}

const connected = (socket) => new Promise((resolve, reject) => {
  if (socket.connected) return resolve();
  socket.once('connect', resolve);
  socket.once('connect_error', reject);
});

for (const transports of [['polling', 'websocket'], ['websocket']]) {
  test(`four clients in a room see peers, peer-joined, signal and peer-left (${transports.join(' then ')})`, async () => {
    const room = `call-${transports.length}`;
    const clients = [0, 1, 2, 3].map(() => client(transports));
    await Promise.all(clients.map((c) => connected(c.socket)));
    const ids = [];
    for (const [i, c] of clients.entries()) {
      const ack = await c.socket.emitWithAck('join-room', { roomId: room, displayName: `p${i}` });
      assert.equal(ack.ok, true);
      ids.push(ack.peerId);
      await c.count(1, 'peers');
      assert.deepEqual(c.seen[0], ['peers', { peers: ids.slice(0, i), displayNames: Object.fromEntries(ids.slice(0, i).map((id, j) => [id, `p${j}`])) }]);
    }
    // Everyone heard each later joiner, in order.
    for (const [i, c] of clients.entries()) {
      await c.count(1 + (3 - i), 'peer-joined events');
      assert.deepEqual(c.seen.slice(1), ids.slice(i + 1).map((id, j) => ['peer-joined', { peerId: id, displayName: `p${i + 1 + j}` }]));
    }
    if (transports.length === 2) {
      // The default client upgrades from long-polling to WebSocket.
      await new Promise((resolve) => (clients[0].socket.io.engine.transport.name === 'websocket' ? resolve() : clients[0].socket.io.engine.once('upgrade', resolve)));
    }
    clients[0].socket.emit('signal', { to: ids[1], data: { type: 'offer', sdp: 'v=0' } });
    await clients[1].until(() => clients[1].seen.some(([n]) => n === 'signal'), 'signal');
    assert.deepEqual(clients[1].seen.at(-1), ['signal', { from: ids[0], data: { type: 'offer', sdp: 'v=0' } }]);
    clients[3].socket.disconnect();
    for (const c of clients.slice(0, 3)) {
      await c.until(() => c.seen.some(([n]) => n === 'peer-left'), 'peer-left');
      assert.deepEqual(c.seen.at(-1), ['peer-left', { peerId: ids[3] }]);
    }
    // Nothing else arrived: the sequence was exactly this.
    assert.equal(clients[2].seen.length, 1 + 1 + 1);
    for (const c of clients) c.socket.disconnect();
  });
}

test('rooms over REST, with a member limit', async () => {
  const created = await fetch(`${router.base}/api/rooms`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ id: 'pair', maxMembers: 2 }) });
  assert.equal(created.status, 201);
  const clients = [0, 1, 2].map(() => client(['websocket']));
  await Promise.all(clients.map((c) => connected(c.socket)));
  for (const c of clients.slice(0, 2)) assert.equal((await c.socket.emitWithAck('join-room', { roomId: 'pair' })).ok, true);
  const third = await clients[2].socket.emitWithAck('join-room', { roomId: 'pair' });
  assert.deepEqual(third, { ok: false, error: 'the room is full' });
  const shown = await (await fetch(`${router.base}/api/rooms/pair`)).json();
  assert.equal(shown.members.length, 2);
  const list = await (await fetch(`${router.base}/api/rooms`)).json();
  assert.ok(list.rooms.some((r) => r.id === 'pair' && r.memberCount === 2));
  assert.equal((await fetch(`${router.base}/api/rooms/pair`, { method: 'DELETE' })).status, 200);
  await clients[0].until(() => clients[0].seen.some(([n]) => n === 'room-closed'), 'room-closed');
  assert.equal((await fetch(`${router.base}/api/rooms/pair`)).status, 404);
  for (const c of clients) c.socket.disconnect();
});

/** A plain WebSocket client of the live plugin that records every message. */
async function liveClient() {
  const ws = new WebSocket(`${router.base.replace('http', 'ws')}/ws/live`);
  open.push(ws);
  const { seen, record, until } = recorder();
  ws.on('message', (data) => record(JSON.parse(data.toString())));
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  return { ws, seen, until, send: (m) => ws.send(JSON.stringify(m)) };
}

test('live: a broadcaster and three viewers get chat, likes and the viewer count; a second broadcaster is refused', async () => {
  const host = await liveClient();
  host.send({ type: 'register', role: 'broadcaster', name: 'shop' });
  await host.until(() => host.seen.some((m) => m.type === 'registered'), 'registered');
  const viewers = [];
  for (let i = 0; i < 3; i++) {
    const v = await liveClient();
    v.send({ type: 'register', role: 'viewer', name: `v${i}` });
    viewers.push(v);
    await host.until(() => host.seen.some((m) => m.type === 'viewer_count' && m.count === i + 1), `viewer_count ${i + 1}`);
  }
  const counts = host.seen.filter((m) => m.type === 'viewer_count').map((m) => m.count);
  assert.deepEqual(counts, [0, 1, 2, 3]);
  viewers[0].send({ type: 'chat', text: 'is it waterproof?' });
  for (const c of [host, ...viewers]) {
    await c.until(() => c.seen.some((m) => m.type === 'chat'), 'chat');
    const chat = c.seen.find((m) => m.type === 'chat');
    assert.equal(chat.name, 'v0');
    assert.equal(chat.text, 'is it waterproof?');
    assert.equal(typeof chat.timestamp, 'number');
  }
  viewers[1].send({ type: 'like' });
  viewers[2].send({ type: 'like' });
  await host.until(() => host.seen.some((m) => m.type === 'stream_update' && m.likes === 2), 'two likes');
  viewers[1].send({ type: 'like' });
  await host.until(() => host.seen.filter((m) => m.type === 'stream_update').at(-1).likes === 1, 'a like taken back');
  const rival = await liveClient();
  rival.send({ type: 'register', role: 'broadcaster' });
  await rival.until(() => rival.seen.some((m) => m.type === 'error'), 'refusal');
  assert.match(rival.seen.find((m) => m.type === 'error').message, /another broadcast is live/);
  viewers[2].ws.close();
  await host.until(() => host.seen.filter((m) => m.type === 'viewer_count').at(-1).count === 2, 'a viewer left');
  for (const c of [host, rival, ...viewers]) c.ws.close();
});

test('bad input gets an error or a clean disconnect, and other clients carry on', async () => {
  const bystander = client(['websocket']);
  await connected(bystander.socket);
  // Unknown events and malformed arguments are answered with an error event.
  bystander.socket.emit('no-such-event', 1);
  await bystander.until(() => bystander.seen.some(([n]) => n === 'error'), 'error event');

  // Garbage on the Engine.IO WebSocket closes only that connection.
  const raw = new WebSocket(`${router.base.replace('http', 'ws')}/socket.io/?EIO=4&transport=websocket`);
  open.push(raw);
  await new Promise((resolve, reject) => { raw.once('open', resolve); raw.once('error', reject); });
  raw.send('\u0000\u0001 not an engine.io packet {{{');
  await new Promise((resolve) => raw.once('close', resolve));

  // A message past the size limit ends its sender.
  const big = client(['websocket']);
  await connected(big.socket);
  const gone = new Promise((resolve) => big.socket.once('disconnect', resolve));
  big.socket.emit('join-room', { roomId: 'x', displayName: 'y'.repeat(300 * 1024) });
  await gone;

  // A flood ends its sender too.
  const flood = client(['websocket']);
  await connected(flood.socket);
  const flooded = new Promise((resolve) => flood.socket.once('disconnect', resolve));
  for (let i = 0; i < 2000; i++) flood.socket.emit('leave-room');
  await flooded;

  // Plain WebSocket: binary frames are refused with a close.
  const ws = await liveClient();
  const closed = new Promise((resolve) => ws.ws.once('close', (code) => resolve(code)));
  ws.ws.send(Buffer.from([1, 2, 3]));
  assert.equal(await closed, 1003);

  // The bystander still works, and is counted.
  const ack = await bystander.socket.timeout(5000).emitWithAck('join-room', { roomId: 'still-here' });
  assert.equal(ack.ok, true);
  const metrics = await (await fetch(`${router.base}/metrics`)).text();
  assert.match(metrics, /sluice_signaling_clients\{plugin="rooms",mount="\/socket.io\/"\} [1-9]/);
  bystander.socket.disconnect();
});

test('the Socket.IO browser client is served under the mount, as Node serves it, and is the pinned package', async () => {
  const { readFileSync } = await import('node:fs');
  const served = await fetch(`${router.base}/socket.io/socket.io.js`);
  assert.equal(served.status, 200);
  assert.match(served.headers.get('content-type'), /javascript/);
  const pinned = readFileSync(new URL('../node_modules/socket.io-client/dist/socket.io.min.js', import.meta.url));
  const vendored = readFileSync(new URL('../vendor/socket.io.min.js', import.meta.url));
  assert.ok(pinned.equals(vendored), 'web/vendor/socket.io.min.js differs from the socket.io-client web/package.json pins');
  assert.ok(Buffer.from(await served.arrayBuffer()).equals(vendored));
});

test('a signaling plugin that traps or hangs is restarted: its clients reconnect, other routes keep playing', async () => {
  const plugins = process.env.SLUICE_TEST_PLUGINS;
  assert.ok(plugins, 'SLUICE_TEST_PLUGINS names the test plugins directory (router/tests/browser.rs sets it)');
  const trapRouter = await startRouter(`${SERVER}
[plugins.trap]
source = "${plugins}/sluice_test_trap_signal.wasm"
mount = "/socket.io/"
limits = { call_timeout = "100ms" }

[[route]]
name = "demo"
from = "demo"
to = ["whep"]
`);
  const chrome = await startBrowser();
  try {
    // A WHEP viewer of another route, to prove media keeps flowing while the plugin fails.
    const viewer = await chrome.browser.newPage();
    await viewer.goto(`${trapRouter.base}/demo?autoplay`);
    await waitFrames(viewer, 'framesDecoded', 10, 15000);
    const socket = io(trapRouter.base, { transports: ['websocket'], forceNew: true, reconnectionDelay: 100, reconnectionDelayMax: 200 });
    open.push(socket);
    await connected(socket);
    assert.equal(await socket.emitWithAck('count'), 1);
    assert.equal(await socket.emitWithAck('count'), 2);
    for (const misbehaviour of ['boom', 'spin']) {
      const back = new Promise((resolve) => socket.io.once('reconnect', resolve));
      socket.emit(misbehaviour);
      await back;
      await connected(socket);
      // A fresh instance: its count starts again.
      assert.equal(await socket.emitWithAck('count'), 1, `after ${misbehaviour}`);
    }
    const before = await videoStat(viewer, 'framesDecoded');
    await waitFrames(viewer, 'framesDecoded', before + 30, 10000);
    const metrics = await (await fetch(`${trapRouter.base}/metrics`)).text();
    assert.match(metrics, /sluice_plugin_failures_total\{plugin="trap",kind="trap"\} 1/);
    assert.match(metrics, /sluice_plugin_failures_total\{plugin="trap",kind="timeout"\} 1/);
    socket.disconnect();
  } finally {
    await chrome.stop();
    await trapRouter.stop();
  }
});

test('a reload that changes a signaling plugin moves its clients to the new version; an unchanged one keeps them', async () => {
  const withLimit = (n) => routes.replace('source = "builtin:signal-rooms"', `source = "builtin:signal-rooms"\nconfig = { max_members = ${n} }`);
  const mounts = (plugin) => router.logs.filter((m) => m.message === 'signaling mounted' && m.plugin === plugin).length;
  const socket = io(router.base, { transports: ['websocket'], forceNew: true, reconnectionDelay: 100, reconnectionDelayMax: 200 });
  open.push(socket);
  await connected(socket);
  const live = client(['websocket'], '/cameras/socket.io/');
  await connected(live.socket);
  const [roomsMounts, camerasMounts] = [mounts('rooms'), mounts('cameras')];
  const back = new Promise((resolve) => socket.io.once('reconnect', resolve));
  writeFileSync(router.config, withLimit(2));
  await router.waitLog(() => mounts('rooms') > roomsMounts, 20000, 'the rooms plugin remounted');
  await back;
  await connected(socket);
  // The new version's limit is in force: a third member is refused.
  const room = 'after-reload';
  const others = [client(['websocket']), client(['websocket'])];
  await Promise.all(others.map((c) => connected(c.socket)));
  assert.equal((await socket.emitWithAck('join-room', { roomId: room })).ok, true);
  assert.equal((await others[0].socket.emitWithAck('join-room', { roomId: room })).ok, true);
  assert.deepEqual(await others[1].socket.emitWithAck('join-room', { roomId: room }), { ok: false, error: 'the room is full' });
  // The cameras plugin did not change: its client stayed connected, its mount was not redone.
  assert.equal(live.socket.connected, true);
  assert.equal(mounts('cameras'), camerasMounts);
  for (const c of [socket, live.socket, ...others.map((o) => o.socket)]) c.disconnect();
});

test('a mount behind an auth plugin: clients need a token, the plugin learns who they are, sessions keep the route auth', async () => {
  const { execFileSync } = await import('node:child_process');
  const { SLUICE_BIN } = await import('./harness.mjs');
  const guarded = await startRouter(`${SERVER}
[plugins.jwt]
source = "builtin:auth-jwt"
config = { secret = "signaling-test-secret" }

[plugins.cameras]
source = "builtin:signal-cameras"
mount = "/socket.io/"
auth = "jwt"
config = { route = "cam-{cameraId}" }

[plugins.rooms]
source = "builtin:signal-rooms"
mount = "/rooms/socket.io/"
auth = "jwt"

[[route]]
name = "cam-door"
from = "whip"
to = ["whep"]
auth = "jwt"

[[route]]
name = "cam-gate"
from = "whip"
to = ["whep"]
auth = "jwt"
`);
  const token = (...allow) => execFileSync(SLUICE_BIN, ['token', '--config', guarded.config, '--sub', 'ana', ...allow.flatMap((a) => ['--allow', a])]).toString().trim();
  const connect = (options, path = '/socket.io/') => {
    const s = io(guarded.base, { transports: ['websocket'], forceNew: true, reconnection: false, path, ...options });
    open.push(s);
    return s;
  };
  try {
    // No token: refused at connect, with the reason.
    const anonymous = connect({});
    const refusal = await new Promise((resolve) => anonymous.once('connect_error', resolve));
    assert.match(refusal.message, /credentials required/);

    // A camera whose token may publish: its offer is admitted by the route's auth and reaches negotiation (the
    // SDP here is not a real offer, so negotiation is what fails).
    const camera = connect({ auth: { token: token('read:*', 'publish:cam-door') } });
    await connected(camera);
    const cameraErrors = [];
    camera.on('error', (e) => cameraErrors.push(e.message));
    camera.emit('join-room', { cameraId: 'door', role: 'camera' });
    camera.emit('offer', { cameraId: 'door', sdp: 'v=0\r\n' });
    await new Promise((resolve) => { const t = setInterval(() => { if (cameraErrors.length) { clearInterval(t); resolve(); } }, 20); });
    assert.doesNotMatch(cameraErrors[0], /access denied|credentials/, cameraErrors[0]);

    // A token that may only read: publishing is refused by the route's auth, in the app's own error event.
    const reader = connect({ query: { token: token('read:*') } });
    await connected(reader);
    const readerErrors = [];
    reader.on('error', (e) => readerErrors.push(e.message));
    reader.emit('join-room', { cameraId: 'gate', role: 'camera' });
    reader.emit('offer', { cameraId: 'gate', sdp: 'v=0\r\n' });
    await new Promise((resolve) => { const t = setInterval(() => { if (readerErrors.length) { clearInterval(t); resolve(); } }, 20); });
    assert.match(readerErrors[0], /access denied/);

    // The rooms plugin names a member without a displayName by who the auth plugin says it is.
    const a = connect({ auth: { token: token('read:*') } }, '/rooms/socket.io/');
    const b = connect({ auth: { token: token('read:*') } }, '/rooms/socket.io/');
    await Promise.all([connected(a), connected(b)]);
    await a.emitWithAck('join-room', { roomId: 'r' });
    const joined = new Promise((resolve) => a.once('peer-joined', resolve));
    await b.emitWithAck('join-room', { roomId: 'r' });
    assert.equal((await joined).displayName, 'ana');
    for (const s of [camera, reader, a, b]) s.disconnect();
  } finally {
    await guarded.stop();
  }
});
