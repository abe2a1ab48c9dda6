// WebRTC shards with real Chromium: peers are spread over the router's shard threads (two here), all on one UDP
// port, and each plays whichever shard it landed on. The str0m side with many viewers and the forwarding
// counters is router/tests/webrtc_shards.rs; every other browser test runs with two shards too (harness SERVER).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRouter, startBrowser, waitFrames, videoStat, SERVER } from './harness.mjs';

let router;
let chrome;

before(async () => {
  router = await startRouter(`${SERVER}
[[route]]
name = "demo"
from = "demo"
to = ["whep"]
`);
  chrome = await startBrowser();
});

after(async () => {
  await chrome?.stop();
  await router?.stop();
});

async function metric(name) {
  const text = await (await fetch(`${router.base}/metrics`)).text();
  return Object.fromEntries(text.split('\n').filter((l) => l.startsWith(`sluice_${name}{`))
    .map((l) => [l.match(/shard="(\d+)"/)[1], Number(l.split(' ').pop())]));
}

test('two viewers land on different shards and both play', async () => {
  const pages = [];
  for (let i = 0; i < 2; i += 1) {
    const page = await chrome.browser.newPage();
    await page.goto(`${router.base}/demo?autoplay`);
    pages.push(page);
  }
  for (const page of pages) await waitFrames(page, 'framesDecoded', 60, 15000);

  const route = await (await fetch(`${router.base}/v1/routes/demo`)).json();
  const viewers = route.webrtc_sessions.filter((s) => s.role === 'viewer');
  assert.equal(viewers.length, 2);
  assert.deepEqual(viewers.map((s) => s.shard).sort(), [0, 1], 'one viewer per shard');
  for (const s of viewers) {
    assert.ok(s.connected, `session ${s.id} connected`);
    assert.ok(s.bytes_sent > 100_000, `session ${s.id} on shard ${s.shard} was sent the stream (${s.bytes_sent} bytes)`);
  }
  assert.deepEqual(await metric('webrtc_shard_sessions'), { 0: 1, 1: 1 });

  // A viewer leaving its shard does not disturb the other shard's.
  await pages[0].close();
  const decoded = await videoStat(pages[1], 'framesDecoded');
  await waitFrames(pages[1], 'framesDecoded', decoded + 30, 10000);
  const after = await (await fetch(`${router.base}/v1/routes/demo`)).json();
  assert.equal(after.webrtc_sessions.filter((s) => s.role === 'viewer').length, 1, 'the closed page ended its session');
  await pages[1].close();
});
