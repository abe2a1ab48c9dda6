// LL-HLS against real players: hls.js in Chromium (the viewer page's fallback where WebRTC is not offered),
// ffprobe, and the playlist checked against the LL-HLS rules (parts within the part target, a preload hint, a
// blocking reload answered as soon as the part it waits for is made).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { SERVER, startRouter, startBrowser, waitFrames } from './harness.mjs';

let router;
let chrome;

before(async () => {
  router = await startRouter(`${SERVER}
# HLS only: the viewer page's WHEP offer is refused and it falls back to HLS.
[[route]]
name = "demo"
from = "demo"
to = ["hls"]

# A browser camera, watched over HLS: WebRTC publishers send keyframes only when asked, and segments start on them.
[[route]]
name = "phone"
from = "whip"
to = ["hls"]

[[route]]
name = "webrtc-only"
from = "demo"
to = ["whep"]
`);
  chrome = await startBrowser();
});

after(async () => {
  await chrome?.stop();
  await router?.stop();
});

/** The media playlist URL of a new viewer session, from the multivariant playlist. */
async function mediaPlaylistUrl(route) {
  const res = await fetch(`${router.base}/${route}/index.m3u8`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'application/vnd.apple.mpegurl');
  assert.equal(res.headers.get('access-control-allow-origin'), '*');
  const text = await res.text();
  assert.match(text, /#EXT-X-STREAM-INF:BANDWIDTH=\d+,CODECS="avc1\.[0-9a-f]{6}",RESOLUTION=640x360/);
  return new URL(text.trim().split('\n').at(-1), `${router.base}/${route}/`).href;
}

test('hls.js in Chromium plays the route at low latency where the page cannot use WebRTC', { timeout: 60000 }, async (t) => {
  const page = await chrome.browser.newPage();
  const console = [];
  page.on('console', (m) => console.push(m.text()));
  page.on('pageerror', (e) => console.push(String(e)));
  try {
    await page.goto(`${router.base}/demo?autoplay`);
    await page.waitForFunction(() => window.sluiceHls && document.getElementById('video').currentTime > 3, null,
      { timeout: 30000, polling: 200 }).catch(async (e) => {
      const state = await page.evaluate(() => [document.getElementById('state').textContent,
        document.getElementById('error').textContent, document.getElementById('video').currentTime]);
      throw new Error(`${e.message}; page: ${JSON.stringify(state)}; console: ${console.join(' | ')}`);
    });
    const played = await page.evaluate(() => {
      const v = document.getElementById('video');
      return { kind: window.sluiceHls.kind, width: v.videoWidth, height: v.videoHeight, latency: window.sluiceHls.hls.latency,
        state: document.getElementById('state').textContent, partsLoaded: window.sluiceHls.stats().parts,
        partsListed: window.sluiceHls.hls.levels[0]?.details?.partList?.length ?? 0 };
    });
    t.diagnostic(`hls.js: ${JSON.stringify(played)}`);
    assert.equal(played.kind, 'hls.js');
    assert.deepEqual([played.width, played.height], [640, 360]);
    assert.match(played.state, /HLS: WebRTC failed/);
    // Low latency: hls.js sees the parts and loads them (three seconds of playing is fifteen parts) rather than
    // waiting for whole segments, each once (a player that reloads parts in a loop loads hundreds).
    assert.ok(played.partsListed > 0 && played.partsLoaded >= 10 && played.partsLoaded <= 40,
      `hls.js loads parts: ${JSON.stringify(played)}`);
    // About a second behind on a quiet machine (PART-HOLD-BACK 0.6 s plus a part); hls.js adds a second to its
    // target after a stall, which a loaded machine may cause. Plain HLS sits three segments (3 s) back.
    assert.ok(played.latency > 0 && played.latency < 2.5, `latency ${played.latency} s`);
  } finally {
    await page.close();
  }
});

test('ffprobe reads the playlist: H.264 640x360', { timeout: 30000 }, async () => {
  const out = execFileSync('ffprobe', ['-v', 'error', '-show_entries', 'stream=codec_name,width,height', '-of', 'csv=p=0',
    `${router.base}/demo/index.m3u8`], { encoding: 'utf8', timeout: 25000 });
  assert.match(out, /^h264,640,360$/m);
});

test('the LL-HLS playlist validates and a blocking reload is answered when its part is made', { timeout: 30000 }, async () => {
  const url = await mediaPlaylistUrl('demo');
  const playlist = await (await fetch(url)).text();
  const tag = (name) => playlist.split('\n').filter((l) => l.startsWith(name));
  assert.deepEqual(tag('#EXT-X-PART-INF'), ['#EXT-X-PART-INF:PART-TARGET=0.200']);
  assert.deepEqual(tag('#EXT-X-SERVER-CONTROL'), ['#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.600']);
  const target = Number(tag('#EXT-X-TARGETDURATION:')[0].split(':')[1]);
  for (const l of tag('#EXTINF:')) assert.ok(Math.round(parseFloat(l.slice(8))) <= target, l);
  const parts = tag('#EXT-X-PART:');
  assert.ok(parts.length >= 5, playlist);
  for (const p of parts) assert.ok(parseFloat(p.match(/DURATION=([\d.]+)/)[1]) <= 0.2, p);
  // Every segment begins with an independent part; the map comes before the first segment.
  assert.ok(playlist.indexOf('#EXT-X-MAP:URI="init1.mp4?session=') < playlist.indexOf('#EXT-X-PART:'));
  const hint = tag('#EXT-X-PRELOAD-HINT')[0]?.match(/URI="part(\d+)\.(\d+)\.mp4/);
  assert.ok(hint, playlist);
  const [msn, part] = [Number(hint[1]), Number(hint[2])];

  // The hinted part is not listed yet: the reload is held until it is, within about a part's duration.
  const session = new URL(url).searchParams.get('session');
  const started = performance.now();
  const held = await fetch(`${url}&_HLS_msn=${msn}&_HLS_part=${part}`);
  const waited = performance.now() - started;
  assert.equal(held.status, 200);
  const after = await held.text();
  assert.ok(after.includes(`part${msn}.${part}.mp4?session=${session}`) || after.includes(`seg${msn}.mp4`), after);
  assert.ok(waited < 200 + 300, `held ${waited.toFixed(0)} ms for a 200 ms part`);

  // The part itself: moof + mdat, served from memory.
  const bytes = new Uint8Array(await (await fetch(`${router.base}/demo/part${msn}.${part}.mp4?session=${session}`)).arrayBuffer());
  assert.equal(new TextDecoder().decode(bytes.slice(4, 8)), 'moof');
  // A request far ahead of the playlist is refused at once (RFC 8216bis 6.2.5.2); a file without a session too.
  assert.equal((await fetch(`${url}&_HLS_msn=${msn + 50}`)).status, 400);
  assert.equal((await fetch(`${router.base}/demo/part${msn}.${part}.mp4`)).status, 403);
  // A route whose `to` has no "hls" is not served over HLS.
  assert.equal((await fetch(`${router.base}/webrtc-only/index.m3u8`)).status, 403);
});

test('the vendored hls.js is the pinned package\'s light build, and the router serves it', async () => {
  const pinned = readFileSync(new URL('../node_modules/hls.js/dist/hls.light.min.js', import.meta.url));
  const vendored = readFileSync(new URL('../vendor/hls.light.min.js', import.meta.url));
  assert.ok(pinned.equals(vendored), 'web/vendor/hls.light.min.js differs from the hls.js web/package.json pins');
  const served = Buffer.from(await (await fetch(`${router.base}/vendor/hls.light.min.js`)).arrayBuffer());
  assert.ok(served.equals(vendored));
});

test('a browser camera published over WHIP plays over HLS', { timeout: 60000 }, async () => {
  const publisher = await chrome.browser.newPage();
  const viewer = await chrome.browser.newPage();
  try {
    await publisher.goto(`${router.base}/phone/publish?autostart`);
    await waitFrames(publisher, 'framesEncoded', 10, 10000);
    await viewer.goto(`${router.base}/phone?hls`);
    await viewer.click('#play');
    await viewer.waitForFunction(() => window.sluiceHls && document.getElementById('video').currentTime > 2, null,
      { timeout: 40000, polling: 200 }).catch(async (e) => {
      const state = await viewer.evaluate(() => [document.getElementById('state').textContent,
        document.getElementById('error').textContent]);
      throw new Error(`${e.message}; page: ${JSON.stringify(state)}`);
    });
    const size = await viewer.evaluate(() => [document.getElementById('video').videoWidth, window.sluiceHls.kind]);
    assert.ok(size[0] > 0 && size[1] === 'hls.js', JSON.stringify(size));
  } finally {
    await publisher.close();
    await viewer.close();
  }
});
