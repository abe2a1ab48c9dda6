// Recording seen from Chromium: a recorder plugin that traps does not disturb WHEP viewers of its route, and a
// recorded segment plays and seeks in a <video> tag (Chromium fetches it with Range requests).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRouter, startBrowser, waitFrames, videoStat, SERVER } from './harness.mjs';

const plugins = process.env.SLUICE_TEST_PLUGINS;
const dir = mkdtempSync(join(tmpdir(), 'sluice-rec-'));

const routes = `${SERVER.replace('data_dir = "data"', `data_dir = "${dir}/data"`)}
[plugins.trap]
source = "${plugins}/sluice_test_trap_sink.wasm"
config = { trap_after = 3 }
grants = { storage = { dir = "${dir}/trap" } }

[plugins.mp4]
source = "builtin:record-mp4"
config = { segment_duration = "3s", part_duration = "500ms" }
grants = { storage = { dir = "${dir}/rec" } }

[[route]]
name = "trapped"
from = "demo"
to = ["whep", "record:trap"]

[[route]]
name = "recorded"
from = "demo"
to = ["record:mp4"]
`;

let router;
let chrome;

before(async () => {
  assert.ok(plugins, 'SLUICE_TEST_PLUGINS names the test plugins directory (router/tests/browser.rs sets it)');
  router = await startRouter(routes);
  chrome = await startBrowser();
});

after(async () => {
  await chrome?.stop();
  await router?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('a recorder plugin that traps leaves WHEP viewers of the same route unaffected', async () => {
  const page = await chrome.browser.newPage();
  await page.goto(`${router.base}/trapped?autoplay`);
  await waitFrames(page, 'framesDecoded', 10, 10000);
  const failure = (l) => l.message === 'recorder failed; the route keeps flowing' && l.route === 'trapped';
  await router.waitLog(failure, 20000, 'the trap-sink recorder to fail');
  const atTrap = await videoStat(page, 'framesDecoded');
  // Two more seconds of video after the trap, with no freeze worth a keyframe request.
  await waitFrames(page, 'framesDecoded', atTrap + 60, 10000);
  const route = await (await fetch(`${router.base}/v1/routes/trapped`)).json();
  assert.ok(route.recordings[0].failures >= 1, JSON.stringify(route.recordings));
  assert.equal(route.live.source_starts, 1, 'the route was never restarted');
  const metrics = await (await fetch(`${router.base}/metrics`)).text();
  assert.match(metrics, /sluice_plugin_failures_total\{plugin="trap",kind="trap"\} [1-9]/);
  await page.close();
});

test('a recorded segment plays and seeks in a <video> tag', async () => {
  await router.waitLog((l) => l.message === 'recording indexed' && l.route === 'recorded', 20000, 'a committed segment');
  const list = await (await fetch(`${router.base}/v1/recordings?route=recorded`)).json();
  const first = list.recordings[0];
  assert.ok(first, JSON.stringify(list));
  const page = await chrome.browser.newPage();
  await page.goto(`${router.base}/`);
  const result = await page.evaluate(async (url) => {
    const v = document.createElement('video');
    v.muted = true;
    document.body.append(v);
    const once = (event) => new Promise((resolve, reject) => {
      v.addEventListener(event, resolve, { once: true });
      v.addEventListener('error', () => reject(new Error(`video error ${v.error?.code}: ${v.error?.message}`)), { once: true });
    });
    v.src = url;
    await once('loadedmetadata');
    const duration = v.duration;
    v.currentTime = duration - 1;
    await once('seeked');
    const seekedTo = v.currentTime;
    await v.play();
    await once('ended');
    return { duration, seekedTo, width: v.videoWidth, decoded: v.getVideoPlaybackQuality().totalVideoFrames };
  }, first.url);
  assert.equal(result.width, 640);
  assert.ok(Math.abs(result.duration - first.duration_ms / 1000) < 0.2, JSON.stringify(result));
  assert.ok(Math.abs(result.seekedTo - (result.duration - 1)) < 0.5, JSON.stringify(result));
  assert.ok(result.decoded > 0, JSON.stringify(result));
  await page.close();
});
