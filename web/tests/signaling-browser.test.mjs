// The signaling pages in headless Chromium: a phone camera publishing through `signal-cameras` to two viewers, a
// four-way mesh call through `signal-rooms`, and a live show through `signal-live`. Media is real WebRTC.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRouter, startBrowser, SIGNALING as routes } from './harness.mjs';


let router;
let chrome;

before(async () => {
  router = await startRouter(routes);
  chrome = await startBrowser();
});

after(async () => {
  await chrome?.stop();
  await router?.stop();
});

/** Samples `probe` (evaluated in the page) every 100 ms until `ok(value)`; browsers have no event for frame counts. */
async function poll(page, probe, ok, what, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  let value;
  while (Date.now() < deadline) {
    value = await page.evaluate(probe);
    if (ok(value)) return value;
    await new Promise((r) => setTimeout(r, 100));
  }
  const err = await page.evaluate(() => document.getElementById('error')?.textContent);
  throw new Error(`${what}: last ${JSON.stringify(value)} (page error: ${err})`);
}

test('a camera publishes through signal-cameras; two viewers play it while camera-status follows', async () => {
  const camera = await chrome.browser.newPage();
  await camera.goto(`${router.base}/cameras.html?camera=door&autostart`);
  await poll(camera, async () => {
    const s = window.sluiceCameras?.get('door');
    if (!s) return -1;
    let n = -1;
    (await s.pc.getStats()).forEach((x) => { if (x.kind === 'video' && x.type === 'outbound-rtp') n = x.framesEncoded; });
    return n;
  }, (n) => n > 10, 'the camera encodes');
  const viewers = [];
  for (let i = 0; i < 2; i++) {
    const v = await chrome.browser.newPage();
    await v.goto(`${router.base}/cameras.html?play=door`);
    viewers.push(v);
  }
  for (const v of viewers) {
    await poll(v, async () => {
      const s = window.sluiceCameras?.get('door');
      if (!s) return -1;
      let n = -1;
      (await s.pc.getStats()).forEach((x) => { if (x.kind === 'video' && x.type === 'inbound-rtp') n = x.framesDecoded; });
      return n;
    }, (n) => n > 10, 'a viewer decodes the camera');
    await poll(v, () => window.sluiceCameras.get('door').status, (s) => s === 'streaming', 'camera-status streaming');
  }
  const listed = await (await fetch(`${router.base}/api/signal-cameras`)).json();
  assert.deepEqual(listed.cameras.map((c) => [c.cameraId, c.status, c.viewers]), [['door', 'streaming', 2]]);
  await camera.close();
  for (const v of viewers) {
    await poll(v, () => window.sluiceCameras.get('door').status, (s) => s === 'offline', 'camera-status offline');
    await v.close();
  }
});

test('four tabs in a mesh call each decode the three others', async () => {
  const pages = [];
  for (let i = 0; i < 4; i++) {
    const page = await chrome.browser.newPage();
    await page.goto(`${router.base}/call.html?room=mesh&autojoin&name=p${i}`);
    pages.push(page);
  }
  for (const page of pages) {
    // Each remote peer's decoded frames, with the connection's states for the message when it fails. Twelve
    // connections coming up at once take 15-20 s on a quiet 2-core machine (six pairs, each offering both ways);
    // a loaded test run took longer than 30 s, so the bound is a minute.
    await poll(page, async () => {
      const remotes = [];
      for (const [id, p] of window.sluiceCall.peers) {
        let frames = -1;
        (await p.pc.getStats()).forEach((x) => { if (x.kind === 'video' && x.type === 'inbound-rtp') frames = x.framesDecoded; });
        remotes.push({ id, frames, connection: p.pc.connectionState, signaling: p.pc.signalingState });
      }
      return remotes;
    }, (remotes) => remotes.length === 3 && remotes.every((r) => r.frames > 5), 'three remote videos decoded', 60000);
  }
  await pages[3].close();
  await poll(pages[0], () => window.sluiceCall.peers.size, (n) => n === 2, 'peer-left drops the tile');
  for (const page of pages.slice(0, 3)) await page.close();
});

test('the live page: a broadcaster, three viewers, chat, likes, the viewer count; a second broadcaster is refused', async () => {
  const host = await chrome.browser.newPage();
  await host.goto(`${router.base}/live.html?role=broadcaster&autostart&name=shop`);
  await poll(host, () => window.sluiceLive.live, (live) => live === true, 'the show is live');
  const viewers = [];
  for (let i = 0; i < 3; i++) {
    const v = await chrome.browser.newPage();
    await v.goto(`${router.base}/live.html?name=v${i}`);
    viewers.push(v);
  }
  for (const v of viewers) {
    await poll(v, async () => {
      const pc = window.sluiceLive.pc;
      let n = -1;
      if (pc) (await pc.getStats()).forEach((x) => { if (x.kind === 'video' && x.type === 'inbound-rtp') n = x.framesDecoded; });
      return n;
    }, (n) => n > 10, 'a viewer decodes the show');
  }
  await poll(host, () => window.sluiceLive.viewerCount, (n) => n === 3, 'three viewers counted');
  await viewers[0].fill('#chat-text', 'does it come in blue?');
  await viewers[0].click('#chat-form button');
  for (const p of [host, ...viewers]) {
    const chat = await poll(p, () => window.sluiceLive.chat, (c) => c.length === 1, 'chat fan-out');
    assert.equal(chat[0].name, 'v0');
    assert.equal(chat[0].text, 'does it come in blue?');
  }
  await viewers[1].click('#like');
  await viewers[2].click('#like');
  await poll(host, () => window.sluiceLive.likes, (n) => n === 2, 'two likes');
  const rival = await chrome.browser.newPage();
  await rival.goto(`${router.base}/live.html?role=broadcaster`);
  const errors = await poll(rival, () => window.sluiceLive.errors, (e) => e.length > 0, 'the second broadcaster refused');
  assert.match(errors[0], /another broadcast is live/);
  for (const p of [rival, ...viewers, host]) await p.close();
});
