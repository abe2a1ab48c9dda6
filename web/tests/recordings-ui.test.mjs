// The home page's recording controls in Chromium: a route is recorded and stopped from its row in the routes
// table, and a recorded segment plays in the page's player from the recordings list.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRouter, startBrowser, SERVER } from './harness.mjs';

const dir = mkdtempSync(join(tmpdir(), 'sluice-rec-ui-'));

const routes = `${SERVER.replace('data_dir = "data"', `data_dir = "${dir}/data"`)}
[plugins.mp4]
source = "builtin:record-mp4"
config = { segment_duration = "3s", part_duration = "500ms" }
grants = { storage = { dir = "${dir}/rec" } }

[[route]]
name = "recorded"
from = "demo"
to = ["record:mp4"]

[[route]]
name = "studio"
from = "demo"
to = ["whep"]
`;

let router;
let chrome;

before(async () => {
  router = await startRouter(routes);
  chrome = await startBrowser();
});

after(async () => {
  await chrome?.stop();
  await router?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** The route's recordings that are not stopped, from the API. */
async function activeRecordings(name) {
  const route = await (await fetch(`${router.base}/v1/routes/${name}`)).json();
  return route.recordings.filter((r) => r.state !== 'stopped');
}

test('a recorded segment from the list plays in the home page player', async () => {
  await router.waitLog((l) => l.message === 'recording indexed' && l.route === 'recorded', 20000, 'a committed segment');
  const page = await chrome.browser.newPage();
  await page.goto(`${router.base}/`);
  const listed = page.locator('#recordings tbody tr', { hasText: 'recorded' }).first();
  await listed.waitFor({ timeout: 10000 });
  // The list refreshes while new segments come: hold on to one row by its id.
  const id = await listed.getAttribute('data-id');
  const row = page.locator(`#recordings tbody tr[data-id="${id}"]`);
  const { recordings } = await (await fetch(`${router.base}/v1/recordings?route=recorded`)).json();
  const rec = recordings.find((r) => String(r.id) === id);
  assert.ok(rec, `row ${id} is one of ${JSON.stringify(recordings)}`);
  assert.equal(await row.locator('a').getAttribute('href'), rec.url, 'the download link is the file');
  await row.locator('.rec-play').click();
  const played = await page.evaluate(async () => {
    const v = document.getElementById('recording-player');
    // Wait for the picture to move past the start: the file loaded, decoded and plays.
    const deadline = Date.now() + 10000;
    while (Date.now() < deadline && !(v.currentTime > 0.5 && v.readyState >= 2)) {
      await new Promise((resolve) => {
        v.addEventListener('timeupdate', resolve, { once: true });
        setTimeout(resolve, deadline - Date.now());
      });
    }
    return { hidden: v.hidden, time: v.currentTime, width: v.videoWidth, duration: v.duration, src: v.src };
  });
  assert.equal(played.hidden, false);
  assert.ok(played.time > 0.5, JSON.stringify(played));
  assert.equal(played.width, 640);
  assert.ok(Math.abs(played.duration - rec.duration_ms / 1000) < 0.2, JSON.stringify(played));
  assert.ok(played.src.endsWith(rec.url), JSON.stringify(played));
  await page.close();
});

test('a route is recorded and stopped from its row in the routes table', async () => {
  const page = await chrome.browser.newPage();
  await page.goto(`${router.base}/`);
  const row = page.locator('#routes tbody tr', { hasText: 'studio' });
  const toggle = row.locator('.rec-toggle');
  await toggle.waitFor({ timeout: 10000 });
  assert.equal(await toggle.textContent(), 'Record');
  assert.deepEqual(await activeRecordings('studio'), []);
  await toggle.click();
  // The row shows the recording once the router runs it, and the button turns into Stop.
  await row.locator('.rec-on', { hasText: 'mp4' }).waitFor({ timeout: 10000 });
  await page.waitForFunction(() => {
    const r = [...document.querySelectorAll('#routes tbody tr')].find((tr) => tr.textContent.includes('studio'));
    return r?.querySelector('.rec-toggle')?.textContent === 'Stop';
  }, null, { timeout: 10000 });
  const active = await activeRecordings('studio');
  assert.equal(active.length, 1, JSON.stringify(active));
  assert.equal(active[0].plugin, 'mp4');
  assert.equal(active[0].started_by_api, true);
  // Two seconds of frames in (the demo's keyframes are 1 s apart, so a segment is open), stopping commits the
  // segment, and it is indexed. The router reports frames recorded, not segments opened: polled.
  const deadline = Date.now() + 15000;
  for (;;) {
    const [recording] = await activeRecordings('studio');
    assert.ok(recording, 'the recording runs');
    if (recording.frames >= 60) break;
    assert.ok(Date.now() < deadline, 'the recording got 60 frames in time');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  await toggle.click();
  await router.waitLog((l) => l.message === 'recording indexed' && l.route === 'studio', 20000, 'the stopped recording indexed');
  assert.deepEqual(await activeRecordings('studio'), []);
  await page.waitForFunction(() => {
    const r = [...document.querySelectorAll('#routes tbody tr')].find((tr) => tr.textContent.includes('studio'));
    return r?.querySelector('.rec-toggle')?.textContent === 'Record';
  }, null, { timeout: 10000 });
  await page.close();
});
