// A MediaMTX user's move: `sluice import` converts their mediamtx.yml (a camera shown to anyone, the rest of the
// cameras behind a user from authInternalUsers, matched by a regex path), the router runs the converted file, and
// Chromium plays the cameras over WHEP, with HTTP Basic credentials where the user's app sends them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SLUICE_BIN, startRouter, startBrowser, startCamera, waitFrames, videoStat } from './harness.mjs';

const mediamtxYml = (cameraPort) => `
rtspAddress: 127.0.0.1:0
rtmpAddress: 127.0.0.1:0
webrtcAddress: 127.0.0.1:0
webrtcLocalUDPAddress: 0.0.0.0:0
hls: no
srt: no
authInternalUsers:
  - user: any
    pass:
    permissions:
      - action: read
        path: lobby
  - user: viewer
    pass: viewerpass
    permissions:
      - action: read
        path: '~^cams/'
paths:
  lobby:
    source: rtsp://127.0.0.1:${cameraPort}/test
    sourceOnDemand: yes
  '~^cams/([^/]+)$':
    source: rtsp://127.0.0.1:${cameraPort}/$G1
    sourceOnDemand: yes
`;

let camera;
let router;
let chrome;
let dir;
let converted;

before(async () => {
  camera = await startCamera();
  dir = mkdtempSync(join(tmpdir(), 'sluice-import-'));
  const yml = join(dir, 'mediamtx.yml');
  writeFileSync(yml, mediamtxYml(camera.port));
  converted = execFileSync(SLUICE_BIN, ['import', yml], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  router = await startRouter(converted);
  chrome = await startBrowser();
});

after(async () => {
  await chrome?.stop();
  await router?.stop();
  camera?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** A WHEP client as MediaMTX users' apps write it: fetch with the credentials the user typed in. Returns the
 * POST's status and challenge; on 201 the session is the page's `sluiceSession` (what videoStat reads). */
function whep(page, route, credentials) {
  return page.evaluate(async ({ url, credentials }) => {
    const pc = new RTCPeerConnection();
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((resolve) => {
      if (pc.iceGatheringState === 'complete') resolve();
      pc.addEventListener('icegatheringstatechange', () => { if (pc.iceGatheringState === 'complete') resolve(); });
      setTimeout(resolve, 2000); // the router is ICE-lite: what was gathered by then is enough
    });
    const headers = { 'Content-Type': 'application/sdp' };
    if (credentials) headers.Authorization = `Basic ${btoa(credentials)}`;
    // 'omit': a 401 with a Basic challenge would otherwise open the browser's login dialog.
    const res = await fetch(url, { method: 'POST', headers, body: pc.localDescription.sdp, credentials: 'omit' });
    if (res.status !== 201) { pc.close(); return { status: res.status, challenge: res.headers.get('WWW-Authenticate') }; }
    await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
    window.sluiceSession = { pc };
    return { status: 201 };
  }, { url: `${router.base}/${route}/whep`, credentials });
}

test('the converted file keeps the paths: a camera route and a template for the regex', () => {
  assert.match(converted, /name = "lobby"\nfrom = "rtsp:\/\/127\.0\.0\.1:\d+\/test"\non_demand = true/);
  assert.match(converted, /name = "cams\/\*"\nfrom = "rtsp:\/\/127\.0\.0\.1:\d+\/\$\{1\}"/);
  assert.ok(converted.includes('permissions = ["read:cams/*"]'), converted);
});

test('a camera path from the converted file plays in Chromium for anyone, as MediaMTX let it', async () => {
  const page = await chrome.browser.newPage();
  await page.goto(`${router.base}/lobby?autoplay`);
  await waitFrames(page, 'framesDecoded', 30, 15000);
  assert.equal(await videoStat(page, 'frameWidth'), 320);
  await page.close();
});

test('a guarded camera plays with the converted user sent as HTTP Basic, and not without', async () => {
  const page = await chrome.browser.newPage();
  await page.goto(`${router.base}/`);
  const anonymous = await whep(page, 'cams/test');
  assert.equal(anonymous.status, 401);
  assert.match(anonymous.challenge ?? '', /\bBasic realm="sluice"/, 'the browser or app is asked for a user and password');
  const wrong = await whep(page, 'cams/test', 'viewer:nope');
  assert.ok([401, 403].includes(wrong.status), `wrong password: ${wrong.status}`);
  const right = await whep(page, 'cams/test', 'viewer:viewerpass');
  assert.equal(right.status, 201);
  await waitFrames(page, 'framesDecoded', 30, 15000);
  assert.equal(await videoStat(page, 'frameWidth'), 320);
  await page.close();
});
