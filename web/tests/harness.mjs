// Shared by the browser tests: starts the real `sluice` binary on a temporary routes file and headless Chromium,
// and stops both however a test ends. Run inside the private network namespace router/tests/browser.rs makes:
// loopback plus a veth pair, since GStreamer's ICE (libnice) never gathers loopback candidates.
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import readline from 'node:readline';
import { chromium } from 'playwright-core';

export const SLUICE_BIN = process.env.SLUICE_BIN ?? new URL('../../target/debug/sluice', import.meta.url).pathname;

/** Follows a process's JSON log lines (one object a line; others kept as `{ raw }`). `waitLog(pred, timeoutMs,
 * what, since)` resolves on the first line matching among those from index `since` on, seen or still to come. */
export function followLog(stream, name) {
  const logs = [];
  const waiters = [];
  readline.createInterface({ input: stream }).on('line', (line) => {
    let entry;
    try { entry = JSON.parse(line); } catch { entry = { raw: line }; }
    logs.push(entry);
    if (process.env.SLUICE_TEST_VERBOSE) console.error(`${name}: ${line}`);
    for (const w of [...waiters]) {
      if (w.pred(entry)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(entry); }
    }
  });
  const waitLog = (pred, timeoutMs = 20000, what = 'log line', since = 0) => {
    const seen = logs.slice(since).find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const i = waiters.indexOf(w);
        if (i >= 0) waiters.splice(i, 1);
        reject(new Error(`timed out waiting for ${what}; ${name} log:\n${logs.slice(-30).map((l) => JSON.stringify(l)).join('\n')}`));
      }, timeoutMs);
      const w = { pred, resolve: (entry) => { clearTimeout(timer); resolve(entry); } };
      waiters.push(w);
    });
  };
  return { logs, waitLog };
}

/** A running router. `logs` collects its JSON log lines; `waitLog` resolves on the first line matching. */
export async function startRouter(routesToml) {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-test-'));
  const config = join(dir, 'routes.toml');
  writeFileSync(config, routesToml);
  const child = spawn(SLUICE_BIN, ['--log-format', 'json', 'run', config], {
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'info' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const { logs, waitLog } = followLog(child.stderr, 'sluice');
  const exited = new Promise((resolve) => child.on('exit', resolve));
  const up = await Promise.race([
    waitLog((l) => l.message?.includes('is up'), 20000, 'router startup'),
    exited.then((code) => { throw new Error(`sluice exited with ${code}: ${logs.map((l) => JSON.stringify(l)).join('\n')}`); }),
  ]);
  return {
    base: `http://${up.http}`,
    /** The HTTPS listener's address, when the file sets `https`. */
    https: up.https,
    rtmp: up.rtmp,
    rtsp: up.rtsp,
    /** The routes file the router runs on (rewrite it to reload). */
    config,
    logs,
    waitLog,
    /** Stops the router: SIGTERM by default, SIGKILL to play a crash. */
    async stop(signal = 'SIGTERM') {
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export const SERVER = `[server]
http = "127.0.0.1:0"
rtsp = "127.0.0.1:0"
rtmp = "127.0.0.1:0"
webrtc = { udp = "0.0.0.0:0", shards = 2 }
data_dir = "data"
`;

/** The three built-in signaling plugins mounted as the shipped routes.toml mounts them, with their routes: what
 * the signaling tests and pages run against. */
export const SIGNALING = `${SERVER}
[plugins.rooms]
source = "builtin:signal-rooms"
mount = "/socket.io/"
http = "/api/rooms"

[plugins.cameras]
source = "builtin:signal-cameras"
mount = "/cameras/socket.io/"
http = "/api/signal-cameras"
config = { route = "cam-{cameraId}" }

[plugins.live]
source = "builtin:signal-live"
mount = "/ws/live"
config = { route = "show" }

[[route]]
name = "cam-door"
from = "whip"
to = ["whep"]

[[route]]
name = "show"
from = "whip"
to = ["whep"]
`;

/** Headless Chromium; playwright gives every launch a fresh temporary profile. */
export async function startBrowser(extraArgs = []) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
      '--autoplay-policy=no-user-gesture-required', '--allow-loopback-in-peer-connection',
      '--disable-features=WebRtcHideLocalIpsWithMdns', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run', ...extraArgs,
    ],
  });
  return {
    browser,
    async stop() {
      await browser.close().catch(() => {});
    },
  };
}

/** The largest video stat `field` (framesDecoded, framesEncoded, ...) of the page's WebRTC session, or -1. */
export function videoStat(page, field) {
  return page.evaluate(async (f) => {
    const pc = window.sluiceSession?.pc;
    if (!pc) return -1;
    let value = -1;
    (await pc.getStats()).forEach((s) => { if (s.kind === 'video' && typeof s[f] === 'number') value = Math.max(value, s[f]); });
    return value;
  }, field);
}

/** Waits until the page's WebRTC session has decoded (or encoded) more than `n` video frames. Browsers offer
 * no event for this, so it samples getStats every 100 ms until the deadline. */
export async function waitFrames(page, field, n, timeoutMs = 10000) {
  const deadline = Date.now() + timeoutMs;
  let value = -1;
  while (Date.now() < deadline) {
    value = await videoStat(page, field);
    if (value > n) return value;
    await new Promise((r) => setTimeout(r, 100));
  }
  const status = await page.evaluate(() => [document.getElementById('state')?.textContent, document.getElementById('error')?.textContent]);
  throw new Error(`${field} reached ${value}, not more than ${n}, within ${timeoutMs} ms (page state: ${status})`);
}

/** The IP-camera stand-in (gst-rtsp-server, H.264 at rtsp://127.0.0.1:PORT/test) from router/tests/peers, on a
 * free port. */
export async function startCamera() {
  const port = await new Promise((resolve) => {
    const srv = net.createServer().listen(0, '127.0.0.1', () => { const p = srv.address().port; srv.close(() => resolve(p)); });
  });
  const script = new URL('../../router/tests/peers/rtsp_camera.py', import.meta.url).pathname;
  const child = spawn('/usr/bin/python3', [script, String(port), 'h264'], { stdio: ['ignore', 'pipe', 'ignore'] });
  await new Promise((resolve, reject) => {
    child.stdout.on('data', (d) => { if (String(d).includes('ready')) resolve(); });
    child.on('exit', (code) => reject(new Error(`camera exited with ${code}`)));
  });
  return { port, stop: () => child.kill() };
}
