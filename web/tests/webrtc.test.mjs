// WHIP and WHEP against real Chromium (and GStreamer webrtcbin as a publisher), on one UDP port.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { startRouter, startBrowser, startCamera, waitFrames, videoStat, SERVER } from './harness.mjs';

const routes = (cameraPort) => `${SERVER}
[[route]]
name = "ipcam"
from = "rtsp://127.0.0.1:${cameraPort}/test"
to = ["whep"]

[[route]]
name = "demo"
from = "demo"
to = ["whep"]

[[route]]
name = "cam"
from = "whip"
to = ["whep"]

[[route]]
name = "gst"
from = "whip"
to = ["whep"]

[[route]]
name = "obs"
from = "rtmp"
to = ["whep", "rtmp"]

[[route]]
name = "rtsp-in"
from = "rtsp"
to = ["whep", "rtsp"]

[[route]]
name = "vp8"
from = "whip"
to = ["whep"]

[[route]]
name = "private"
from = "demo"
to = ["rtsp"]
`;

let router;
let chrome;
let camera;

before(async () => {
  camera = await startCamera();
  router = await startRouter(routes(camera.port));
  chrome = await startBrowser();
});

after(async () => {
  await chrome?.stop();
  await router?.stop();
  camera?.stop();
});

/** An SDP offer made by Chromium, for status-code tests that need a real one. */
async function browserOffer(kind) {
  const page = await chrome.browser.newPage();
  await page.goto(`${router.base}/`); // getUserMedia needs a secure context; http://127.0.0.1 is one
  const sdp = await page.evaluate(async (k) => {
    const pc = new RTCPeerConnection();
    if (k === 'recv' || k === 'recv-vp8') {
      const video = pc.addTransceiver('video', { direction: 'recvonly' });
      pc.addTransceiver('audio', { direction: 'recvonly' });
      if (k === 'recv-vp8') video.setCodecPreferences(RTCRtpReceiver.getCapabilities('video').codecs.filter((c) => c.mimeType === 'video/VP8'));
    }
    else { const s = await navigator.mediaDevices.getUserMedia({ video: true, audio: true }); s.getTracks().forEach((t) => pc.addTrack(t, s)); }
    await pc.setLocalDescription(await pc.createOffer());
    return pc.localDescription.sdp;
  }, kind);
  await page.close();
  return sdp;
}

test('the demo route plays in Chromium over WHEP', async () => {
  const page = await chrome.browser.newPage();
  await page.goto(`${router.base}/demo?autoplay`);
  await waitFrames(page, 'framesDecoded', 0, 10000);
  await waitFrames(page, 'framesDecoded', 60, 10000);
  const t = await page.evaluate(() => window.sluiceTimings);
  const firstFrameMs = Math.round(t.firstFrame - t.start);
  assert.equal(await videoStat(page, 'frameWidth'), 640);
  assert.equal(await videoStat(page, 'frameHeight'), 360);
  const playing = await page.evaluate(() => { const v = document.getElementById('video'); return !v.paused && v.videoWidth; });
  assert.equal(playing, 640, 'the video element plays the stream');
  console.log(`demo: first frame shown ${firstFrameMs} ms after play (WHEP offer, ICE, DTLS, GOP cache)`);
  await page.close();
});

test('the home page grid plays a route inline', async () => {
  const page = await chrome.browser.newPage();
  await page.goto(`${router.base}/`);
  await page.click('figure.tile[data-route="demo"] button.play');
  await page.waitForFunction(() => document.querySelector('figure.tile[data-route="demo"] video').videoWidth === 640, null, { timeout: 10000 });
  const tiles = await page.$$eval('figure.tile', (els) => els.map((e) => e.dataset.route));
  assert.ok(!tiles.includes('private'), 'routes without whep are not offered to browsers');
  await page.close();
});

test('an RTSP camera pulled by the router plays in Chromium over WHEP', async () => {
  const page = await chrome.browser.newPage();
  await page.goto(`${router.base}/ipcam?autoplay`);
  await waitFrames(page, 'framesDecoded', 60, 15000);
  assert.equal(await videoStat(page, 'frameWidth'), 320);
  await page.close();
});

/** The viewer page's inbound audio: samples and level heard; and how far ahead of the picture the sound plays.
 * The router sends each track's RTP time as its source time (90 kHz video, 48 kHz Opus, same origin), so the source
 * time each track is playing now is its last played RTP time plus the time since; the browser aligns the two by
 * the sender reports, which hold only when the transcoded audio kept its timing. */
function inbound(page) {
  return page.evaluate(async () => {
    const out = {};
    (await window.sluiceSession.pc.getStats()).forEach((s) => { if (s.type === 'inbound-rtp') out[s.kind] = s; });
    const playing = {};
    for (const r of window.sluiceSession.pc.getReceivers()) {
      const s = r.getSynchronizationSources()[0];
      if (s) playing[r.track.kind] = s.rtpTimestamp / (r.track.kind === 'audio' ? 48 : 90) - s.timestamp;
    }
    return {
      samples: out.audio?.totalSamplesReceived ?? 0,
      level: out.audio?.audioLevel ?? 0,
      skewMs: playing.audio !== undefined && playing.video !== undefined ? playing.audio - playing.video : undefined,
    };
  });
}

test('ffmpeg publishes H.264 + AAC over RTMP: Chromium over WHEP plays the video and hears the AAC as Opus, in step', async () => {
  // 44.1 kHz, as OBS and many cameras send: the transcoder resamples to Opus's 48 kHz.
  const ffmpeg = spawn('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-re', '-f', 'lavfi', '-i', 'testsrc=size=640x360:rate=30',
    '-f', 'lavfi', '-i', 'sine=frequency=1000:sample_rate=44100', '-t', '30', '-c:v', 'libx264', '-preset', 'veryfast',
    '-tune', 'zerolatency', '-pix_fmt', 'yuv420p', '-g', '30', '-c:a', 'aac', '-f', 'flv', `rtmp://${router.rtmp}/obs/key`],
  { stdio: 'ignore' });
  try {
    await router.waitLog((l) => l.message === 'RTMP publisher connected' && l.route === 'obs');
    const page = await chrome.browser.newPage();
    await page.goto(`${router.base}/obs?autoplay`);
    await waitFrames(page, 'framesDecoded', 60, 15000);
    assert.equal(await videoStat(page, 'frameWidth'), 640);
    await router.waitLog((l) => l.message === 'transcoding AAC to Opus for WebRTC viewers' && l.route === 'obs');
    // Samples keep arriving and carry the tone (a 1/8-scale sine: audioLevel ~0.1); after a few seconds (sender
    // reports for both tracks) the sound plays near the picture it was published with. Measured here: 100-140 ms
    // behind, steady (the same with the audio dated by its arrival), which includes headless Chromium's audio
    // output buffering; the bound catches a transcoder that loses its timing (seconds off).
    let first;
    let last;
    const skews = [];
    const deadline = Date.now() + 15000;
    while (Date.now() < deadline) {
      last = await inbound(page);
      first ??= last;
      if (last.skewMs !== undefined && last.samples > first.samples + 48000 * 3) skews.push(last.skewMs);
      if (skews.length >= 15 && last.level > 0.02) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.ok(last.samples > first.samples + 48000, `audio samples keep coming: ${JSON.stringify([first, last])}`);
    assert.ok(last.level > 0.02, `the tone is heard: ${JSON.stringify(last)}`);
    // Chromium converges on its sync over seconds (under load from ~250 ms): judge the latest samples.
    const latest = skews.slice(-5).sort((a, b) => a - b);
    const skew = latest[Math.floor(latest.length / 2)];
    console.log(`AAC -> Opus: audio plays ${(-skew).toFixed(0)} ms behind the video (median of the last ${latest.length})`);
    assert.ok(skews.length >= 5 && Math.abs(skew) < 250, `audio and video in step: ${JSON.stringify(skews)}`);
    // The route still says AAC (RTMP players and recordings get it as published), with nothing to warn about.
    const route = await (await fetch(`${router.base}/v1/routes/obs`)).json();
    assert.deepEqual(route.live.tracks.map((t) => t.codec).sort(), ['aac', 'h264']);
    assert.ok(!route.warnings.some((w) => w.includes('AAC')), JSON.stringify(route.warnings));
    await page.close();
  } finally {
    ffmpeg.kill();
  }
});

test('ffmpeg publishes H.264 + AAC over RTSP and Chromium plays the video over WHEP', async () => {
  const ffmpeg = spawn('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-re', '-f', 'lavfi', '-i', 'testsrc=size=480x270:rate=30',
    '-f', 'lavfi', '-i', 'sine=frequency=1000:sample_rate=48000', '-t', '30', '-c:v', 'libx264', '-preset', 'veryfast',
    '-tune', 'zerolatency', '-pix_fmt', 'yuv420p', '-g', '30', '-c:a', 'aac', '-f', 'rtsp', '-rtsp_transport', 'tcp',
    `rtsp://${router.rtsp}/rtsp-in`],
  { stdio: 'ignore' });
  try {
    await router.waitLog((l) => l.message === 'RTSP publisher connected' && l.route === 'rtsp-in');
    const page = await chrome.browser.newPage();
    await page.goto(`${router.base}/rtsp-in?autoplay`);
    await waitFrames(page, 'framesDecoded', 60, 15000);
    assert.equal(await videoStat(page, 'frameWidth'), 480);
    await page.close();
  } finally {
    ffmpeg.kill();
  }
});

test('Chromium publishes over WHIP and a second Chromium plays it over WHEP', async () => {
  const publisher = await chrome.browser.newPage();
  await publisher.goto(`${router.base}/cam/publish?autostart`);
  await waitFrames(publisher, 'framesEncoded', 10, 10000);
  await router.waitLog((l) => l.message === 'publisher attached' && l.route === 'cam');
  const viewerContext = await chrome.browser.newContext();
  const viewer = await viewerContext.newPage();
  await viewer.goto(`${router.base}/cam?autoplay`);
  await waitFrames(viewer, 'framesDecoded', 60, 10000);
  // Opus from the publisher's (fake) microphone reaches the viewer too.
  const audioPackets = await viewer.evaluate(async () => {
    let n = 0;
    (await window.sluiceSession.pc.getStats()).forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'audio') n = s.packetsReceived; });
    return n;
  });
  assert.ok(audioPackets > 0, 'audio packets received');
  const routes = await (await fetch(`${router.base}/v1/routes/cam`)).json();
  assert.equal(routes.live.state, 'live');
  assert.deepEqual(routes.live.tracks.map((t) => t.codec).sort(), ['h264', 'opus']);
  assert.ok(routes.live.tracks.some((t) => t.codec === 'h264'), JSON.stringify(routes.live.tracks));
  const roles = routes.webrtc_sessions.filter((s) => s.connected).map((s) => s.role).sort();
  assert.deepEqual(roles, ['publisher', 'viewer']);
  assert.ok(routes.webrtc_sessions.find((s) => s.role === 'viewer').bytes_sent > 0);
  assert.equal(routes.live.reader_count, 1, 'the viewer counts as a reader of the route');
  const metrics = await (await fetch(`${router.base}/metrics`)).text();
  assert.match(metrics, /sluice_webrtc_sessions\{role="publisher"\} 1/);
  assert.match(metrics, /sluice_webrtc_session_packets_sent_total\{route="cam",session="[0-9a-f]{8}",role="viewer"\} [1-9]/);

  // A second publisher for the same route is refused.
  const offer = await browserOffer('send');
  const busy = await fetch(`${router.base}/cam/whip`, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: offer });
  assert.equal(busy.status, 409);
  assert.equal((await busy.json()).error.code, 'publisher_exists');

  // (e) a viewer that goes away without DELETE (the request never arrives) is cleaned up by the router.
  await viewerContext.route('**/cam/whep/*', (r) => r.abort());
  await viewerContext.close();
  const ended = await router.waitLog((l) => l.message === 'WebRTC session ended' && l.route === 'cam' && l.role === 'Viewer', 40000, 'vanished viewer cleanup');
  assert.equal(ended.why, 'peer gone');
  await publisher.close();
  await router.waitLog((l) => l.message === 'publisher left; waiting for the next one' && l.route === 'cam', 40000, 'publisher cleanup');
});

test('GStreamer webrtcbin publishes H.264 over WHIP and Chromium plays it', async () => {
  const gst = spawn('/usr/bin/python3', [new URL('./gst_whip_publish.py', import.meta.url).pathname, `${router.base}/gst/whip`, '30'],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  gst.stdout.on('data', (d) => { output += d; });
  gst.stderr.on('data', (d) => { output += d; });
  const exited = new Promise((resolve) => gst.on('exit', resolve));
  try {
    await router.waitLog((l) => l.message === 'WebRTC peer connected' && l.route === 'gst' && l.role === 'Publisher', 20000, 'GStreamer connecting');
    const page = await chrome.browser.newPage();
    await page.goto(`${router.base}/gst?autoplay`);
    await waitFrames(page, 'framesDecoded', 60, 10000);
    assert.equal(await videoStat(page, 'frameWidth'), 640);
    await page.close();
    assert.match(output, /published to http/, output);
  } finally {
    gst.kill('SIGINT');
    await exited;
  }
});

test('VP8 from a browser passes through to a WHEP viewer', async () => {
  const publisher = await chrome.browser.newPage();
  await publisher.goto(`${router.base}/vp8/publish?autostart&codec=vp8`);
  await waitFrames(publisher, 'framesEncoded', 10, 10000);
  const viewer = await chrome.browser.newPage();
  await viewer.goto(`${router.base}/vp8?autoplay`);
  await waitFrames(viewer, 'framesDecoded', 60, 10000);
  const codec = await viewer.evaluate(async () => {
    const stats = await window.sluiceSession.pc.getStats();
    let id;
    stats.forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') id = s.codecId; });
    return stats.get(id)?.mimeType;
  });
  assert.equal(codec, 'video/VP8');
  await viewer.close();
  await publisher.close();
});

test('documented status codes for bad requests', async () => {
  const post = (path, body, type = 'application/sdp') =>
    fetch(`${router.base}${path}`, { method: 'POST', headers: { 'Content-Type': type }, body });
  const recvOffer = await browserOffer('recv');

  let r = await post('/demo/whep', 'this is not sdp');
  assert.equal(r.status, 400);
  assert.match((await r.json()).error.message, /SDP offer is not valid/);

  // A viewer that cannot decode the route's H.264 gets a clear refusal, not a black screen.
  r = await post('/demo/whep', await browserOffer('recv-vp8'));
  assert.equal(r.status, 406);
  assert.match((await r.json()).error.message, /route sends H\.264 video and the offer does not accept it/);

  r = await post('/nope/whep', recvOffer);
  assert.equal(r.status, 404);

  r = await post('/private/whep', recvOffer);
  assert.equal(r.status, 403);

  r = await post('/demo/whip', recvOffer);
  assert.equal(r.status, 403);

  r = await post('/demo/whep', recvOffer, 'application/json');
  assert.equal(r.status, 415);

  r = await post('/demo/whep', 'v=0\r\n' + 'a=x\r\n'.repeat(20000));
  assert.equal(r.status, 413);

  r = await fetch(`${router.base}/demo/whep`);
  assert.equal(r.status, 405);

  r = await fetch(`${router.base}/demo/whep`, { method: 'OPTIONS' });
  assert.equal(r.status, 204);
  assert.equal(r.headers.get('access-control-allow-origin'), '*');

  r = await fetch(`${router.base}/demo/whep/0123456789abcdef`, { method: 'DELETE' });
  assert.equal(r.status, 404);

  // A valid offer: 201 with Location and ETag; DELETE ends it.
  r = await post('/demo/whep', recvOffer);
  assert.equal(r.status, 201);
  assert.equal(r.headers.get('content-type'), 'application/sdp');
  const location = r.headers.get('location');
  assert.match(location, /^\/demo\/whep\/[0-9a-f]{32}$/);
  assert.ok(r.headers.get('etag'));
  const patch = (path, body, type = 'application/trickle-ice-sdpfrag') =>
    fetch(`${router.base}${path}`, { method: 'PATCH', headers: { 'Content-Type': type }, body });
  r = await patch(location, 'a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n');
  assert.equal(r.status, 204);
  assert.equal((await patch(location, 'a=candidate:garbage\r\n')).status, 400);
  const wrongTag = await fetch(`${router.base}${location}`, {
    method: 'PATCH', headers: { 'Content-Type': 'application/trickle-ice-sdpfrag', 'If-Match': '"not-this-one"' },
    body: 'a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n',
  });
  assert.equal(wrongTag.status, 412);
  assert.equal((await patch(location, 'a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdef012345\r\n')).status, 422);
  assert.equal((await patch(location, 'a=candidate:1 1 udp 1 127.0.0.1 9 typ host', 'text/plain')).status, 415);
  assert.equal((await patch('/demo/whep/00000000000000000000000000000000', 'a=candidate:1 1 udp 1 127.0.0.1 9 typ host')).status, 404);
  assert.equal((await patch(location.replace('/demo/', '/cam/'), 'a=candidate:1 1 udp 1 127.0.0.1 9 typ host')).status, 404, 'a session belongs to its route');
  const many = Array.from({ length: 25 }, (_, i) => `a=candidate:${i} 1 udp 1 127.0.0.${i + 1} 9 typ host`).join('\r\n');
  assert.equal((await patch(location, many)).status, 400, 'remote candidates are capped');
  r = await fetch(`${router.base}${location}`, { method: 'DELETE' });
  assert.equal(r.status, 200);
});
