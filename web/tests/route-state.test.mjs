// The route's own state on the viewer page and the home page's tiles: a page that says "connected" with no picture
// must also say why (issue 18): the route waits for its publisher, or carries what WebRTC cannot play.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRouter, startBrowser, SERVER } from './harness.mjs';

const dir = mkdtempSync(join(tmpdir(), 'sluice-state-'));
const routes = `${SERVER}
[plugins.mp4]
source = "builtin:record-mp4"
grants = { storage = { dir = "${dir}/rec" } }

[[route]]
name = "inbox"
from = "whip"
to = ["whep", "rtsp", "record:mp4"]
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

test('the viewer page shows the route waiting and its warnings', async () => {
  const page = await chrome.browser.newPage();
  await page.goto(`${router.base}/inbox`);
  const state = page.locator('#route-state');
  await state.filter({ hasText: 'route: waiting' }).waitFor({ timeout: 10000 });
  const warnings = page.locator('#warnings li');
  await warnings.first().waitFor({ timeout: 10000 });
  assert.match(await warnings.first().textContent(), /recording with "mp4" starts at the route's first keyframe: the route has no media yet/);
  await page.close();
});

test('a grid tile shows its route state, with a warning mark', async () => {
  const page = await chrome.browser.newPage();
  await page.goto(`${router.base}/`);
  const tile = page.locator('figure.tile[data-route="inbox"] .tile-state');
  await tile.filter({ hasText: 'waiting' }).waitFor({ timeout: 10000 });
  assert.match(await tile.textContent(), /^⚠ waiting/);
  assert.match(await tile.getAttribute('title'), /recording with "mp4" starts at the route's first keyframe: the route has no media yet/);
  await page.close();
});
