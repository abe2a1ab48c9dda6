// sluice-edge against the real router and Chromium: the test source and a stdin H.264 stream pushed over WHIP and
// RTMP play in the browser; the edge reconnects by itself when the router is killed and started again; the
// aarch64 build runs under qemu-aarch64 and pushes too; `pull` records segments that ffprobe counts.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRouter, startBrowser, waitFrames, followLog } from './harness.mjs';

const EDGE_BIN = process.env.SLUICE_EDGE_BIN ?? new URL('../../target/debug/sluice-edge', import.meta.url).pathname;
const EDGE_AARCH64 = process.env.SLUICE_EDGE_AARCH64
  ?? new URL('../../target/aarch64-unknown-linux-gnu/debug/sluice-edge', import.meta.url).pathname;
const CLIP = new URL('../../router/assets/demo.h264', import.meta.url).pathname;

// Fixed ports (the test runs in its own network namespace): the restarted router must be where the edge left it.
const ROUTES = `[server]
http = "127.0.0.1:18890"
rtmp = "127.0.0.1:11936"
webrtc = { udp = "127.0.0.1:18190" }
data_dir = "data"

[[route]]
name = "edge"
from = "whip"
to = ["whep"]

[[route]]
name = "edge-rtmp"
from = "rtmp"
to = ["whep"]

[[route]]
name = "edge-stdin"
from = "whip"
to = ["whep"]

[[route]]
name = "edge-arm"
from = "whip"
to = ["whep"]

[[route]]
name = "edge-rtmp-test"
from = "rtmp"
to = ["whep", "rtmp"]

# The surveillance set-up: each account camera is a route made from this template, published with its key.
[accounts]
registration = "admin"
cameras = "cameras/*"

[[route]]
name = "cameras/*"
from = "publisher"
to = ["whep"]
auth = "accounts"
`;

/** Starts sluice-edge (or `program` with `args`, for qemu) with JSON logs; `waitLog` as the harness's (`since`
 * skips lines already seen, so a reconnect waits for the next "connected"). */
function startEdge(args, { program = EDGE_BIN, stdin = 'ignore' } = {}) {
  const child = spawn(program, args, { stdio: [stdin, 'ignore', 'pipe'], env: { ...process.env, RUST_LOG: 'info' } });
  const { logs, waitLog } = followLog(child.stderr, 'sluice-edge');
  // 'close', not 'exit': the last log lines are read by then.
  const exited = new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  return {
    child,
    logs,
    exited,
    waitLog(pred, { since = 0, timeoutMs = 30000, what = 'edge log line' } = {}) {
      return waitLog(pred, timeoutMs, what, since);
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      const status = await exited;
      clearTimeout(timer);
      return status;
    },
  };
}

const connected = (how) => (l) => l.message === `connected over ${how}`;

let router;
let chromium;
const edges = [];

before(async () => {
  router = await startRouter(ROUTES);
  chromium = await startBrowser();
});

after(async () => {
  for (const e of edges) await e.stop();
  await chromium?.stop();
  await router?.stop();
});

/** Opens the route's viewer page and waits until Chromium has decoded more than `n` frames. */
async function plays(route, n = 20) {
  const page = await chromium.browser.newPage();
  try {
    await page.goto(`${router.base}/${route}?autoplay`);
    return await waitFrames(page, 'framesDecoded', n, 20000);
  } finally {
    await page.close();
  }
}

test('the test source over WHIP plays in Chromium, and comes back by itself after the router is killed', async () => {
  const edge = startEdge(['--log-json', 'push', '--source', 'test', '--width', '320', '--height', '240',
    '--to', `${router.base}/edge/whip`]);
  edges.push(edge);
  await edge.waitLog(connected('WHIP'), { what: 'the WHIP connection' });
  assert.ok(await plays('edge') > 20);

  const before = edge.logs.length;
  await router.stop('SIGKILL');
  await edge.waitLog((l) => l.message?.startsWith('push failed'), { since: before, what: 'the edge noticing the router is gone' });
  router = await startRouter(ROUTES);
  await edge.waitLog(connected('WHIP'), { since: before, what: 'the edge reconnecting by itself' });
  assert.ok(await plays('edge') > 20, 'the viewer plays again');
  const stats = JSON.parse(execFileSync('curl', ['-s', `${router.base}/v1/routes/edge`]).toString());
  assert.equal(stats.live.source, 'whip');
});

test('the test source over RTMP plays in Chromium', async () => {
  const edge = startEdge(['--log-json', 'push', '--source', 'test', '--width', '320', '--height', '240',
    '--to', `rtmp://${router.rtmp}/edge-rtmp-test/key`]);
  edges.push(edge);
  await edge.waitLog(connected('RTMP'), { what: 'the RTMP connection' });
  assert.ok(await plays('edge-rtmp-test') > 20);
});

test('an H.264 stream on stdin over RTMP, and over WHIP, plays in Chromium', async () => {
  // The demo clip five times over: a 20-second Annex B stream, paced by the edge at 30 fps.
  const clip = readFileSync(CLIP);
  for (const [route, to, how] of [
    ['edge-rtmp', `rtmp://${router.rtmp}/edge-rtmp/key`, 'RTMP'],
    ['edge-stdin', `${router.base}/edge-stdin/whip`, 'WHIP'],
  ]) {
    const edge = startEdge(['--log-json', 'push', '--source', 'stdin', '--to', to], { stdin: 'pipe' });
    edges.push(edge);
    edge.child.stdin.on('error', () => {}); // the edge may stop first
    for (let i = 0; i < 5; i++) edge.child.stdin.write(clip);
    edge.child.stdin.end();
    await edge.waitLog(connected(how), { what: `the ${how} connection` });
    assert.ok(await plays(route) > 20, `${route} plays`);
  }
});

test("an account camera's Pi publishes with its stream key, and a wrong key is refused", async () => {
  const api = async (method, path, token, body) => {
    const headers = {};
    if (token) headers.authorization = `Bearer ${token}`;
    if (body) headers['content-type'] = 'application/json';
    const r = await fetch(`${router.base}${path}`, { method, headers, body: body ? JSON.stringify(body) : undefined });
    return [r.status, await r.json().catch(() => null)];
  };
  const [registered, owner] = await api('POST', '/api/auth/register', null,
    { username: 'owner', email: 'owner@example.com', password: 'correct horse' });
  assert.equal(registered, 201, JSON.stringify(owner));
  const [loggedIn, login] = await api('POST', '/api/auth/login', null, { username: 'owner', password: 'correct horse' });
  assert.equal(loggedIn, 200, JSON.stringify(login));
  const [created, camera] = await api('POST', '/api/cameras', login.token, { name: 'Garden' });
  assert.equal(created, 201, JSON.stringify(camera));
  const [, urls] = await api('GET', `/api/cameras/${camera.id}/stream`, login.token);

  const args = (key) => ['--log-json', 'push', '--source', 'test', '--width', '160', '--height', '96', '--to', urls.whip,
    '--token', key, '--stats-interval', '1s'];
  const wrong = startEdge(args('not-the-key'));
  edges.push(wrong);
  const refused = await wrong.waitLog((l) => l.message?.startsWith('push failed'), { what: 'the refusal' });
  assert.match(refused.message, /403 Forbidden.*stream key/);
  await wrong.stop();

  const edge = startEdge(args(camera.stream_key));
  edges.push(edge);
  await edge.waitLog(connected('WHIP'), { what: 'the camera connecting with its key' });
  await router.waitLog((l) => l.message === 'accounts: camera streaming' && l.camera === camera.id);
  // A stats line counting frames sent: the route has had frames for a second by then.
  await edge.waitLog((l) => l.message === 'stats' && l.sent > 0, { what: 'frames sent' });
  const [, shown] = await api('GET', `/api/cameras/${camera.id}`, login.token);
  assert.equal(shown.status, 'streaming', JSON.stringify(shown));
});

test('the aarch64 build runs under qemu-aarch64 and pushes the test source', async () => {
  assert.ok(existsSync(EDGE_AARCH64),
    `${EDGE_AARCH64} is missing: the test command (.ci/test) cross-builds it (cargo build -p sluice-edge --target aarch64-unknown-linux-gnu)`);
  const edge = startEdge(['-L', '/usr/aarch64-linux-gnu', EDGE_AARCH64, '--log-json', 'push', '--source', 'test',
    '--width', '320', '--height', '240', '--fps', '15', '--to', `${router.base}/edge-arm/whip`], { program: 'qemu-aarch64' });
  edges.push(edge);
  await edge.waitLog(connected('WHIP'), { what: 'the emulated edge connecting' });
  assert.ok(await plays('edge-arm', 10) > 10);
  const arch = execFileSync('file', ['-b', EDGE_AARCH64]).toString();
  assert.match(arch, /ARM aarch64/);
});

/** Runs `sluice-edge pull FROM` for 5 s in 2 s segments; checks that ffprobe decodes every video frame the puller
 * says it wrote, across the segments. */
async function pullAndCount(from) {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-edge-pull-'));
  try {
    const pull = startEdge(['--log-json', 'pull', from, '--record', dir, '--duration', '5s', '--segment-duration', '2s']);
    const status = await pull.exited;
    assert.equal(status.code, 0, pull.logs.map((l) => JSON.stringify(l)).join('\n'));
    const done = pull.logs.find((l) => l.message === 'recording finished');
    assert.ok(done && done.video_frames > 90, `frames written: ${pull.logs.map((l) => JSON.stringify(l)).join('\n')}`);
    const files = readdirSync(dir).filter((f) => f.endsWith('.mp4'));
    assert.ok(files.length >= 2, `2 s segments over 5 s: ${files}`);
    let frames = 0;
    for (const f of files) {
      const out = execFileSync('ffprobe', ['-v', 'error', '-count_frames', '-select_streams', 'v:0',
        '-show_entries', 'stream=codec_name,nb_read_frames', '-of', 'json', join(dir, f)]).toString();
      const stream = JSON.parse(out).streams[0];
      assert.equal(stream.codec_name, 'h264');
      frames += Number(stream.nb_read_frames);
    }
    assert.equal(frames, done.video_frames, 'ffprobe decodes every frame the puller wrote');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('pull over WHEP records MP4 segments that ffprobe reads with the frame count the edge wrote', async () => {
  await pullAndCount(`${router.base}/edge/whep`);
});

test('pull over RTMP does the same', async () => {
  await pullAndCount(`rtmp://${router.rtmp}/live/edge-rtmp-test`);
});
