// My cameras in Chromium (issue 29): a person registers, logs in, adds a camera, publishes into it from the
// phone publisher page with the camera's key, and plays it on the My cameras page; the session shows up.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRouter, startBrowser, waitFrames, SERVER } from './harness.mjs';

const dir = mkdtempSync(join(tmpdir(), 'sluice-accounts-ui-'));
const routes = `${SERVER.replace('data_dir = "data"', `data_dir = "${dir}/data"`)}
[accounts]
registration = "admin"
cameras = "cameras/*"

[[route]]
name = "cameras/*"
from = "publisher"
to = ["whep"]
auth = "accounts"
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

test('register, log in, add a camera, publish with its key from the phone page, play it', async () => {
  const page = await chrome.browser.newPage();
  page.on('dialog', (dialog) => dialog.accept());
  await page.goto(`${router.base}/account.html`);
  await page.fill('#register input[name="username"]', 'ana');
  await page.fill('#register input[name="email"]', 'ana@example.com');
  await page.fill('#register input[name="password"]', 'correct horse');
  await page.click('#register button[type="submit"]');
  await page.locator('#who', { hasText: 'ana (admin)' }).waitFor();

  // The admin adds a person from the page; the admin stays logged in as the admin.
  await page.fill('#add-person input[name="username"]', 'ben');
  await page.fill('#add-person input[name="email"]', 'ben@example.com');
  await page.fill('#add-person input[name="password"]', 'battery staple');
  await page.click('#add-person button[type="submit"]');
  await page.locator('#person-added', { hasText: 'added ben' }).waitFor();
  await page.locator('#who', { hasText: 'ana (admin)' }).waitFor();
  const ben = await fetch(`${router.base}/api/auth/login`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'ben', password: 'battery staple' }),
  });
  assert.equal(ben.status, 200);

  await page.fill('#add-camera input[name="name"]', 'Phone');
  await page.click('#add-camera button[type="submit"]');
  const card = page.locator('.camera', { hasText: 'Phone' });
  await card.locator('.pill', { hasText: 'offline' }).waitFor();
  const token = await page.evaluate(() => localStorage.getItem('sluice-token'));
  const [camera] = await (await fetch(`${router.base}/api/cameras`, { headers: { authorization: `Bearer ${token}` } })).json();
  assert.equal(camera.route, `cameras/${camera.id}`);
  assert.equal(await card.locator('code').first().textContent(), camera.stream_key);

  // The phone: the page the card links to publishes over WHIP with the camera's key.
  const href = await card.getByRole('link', { name: 'Publish from this device' }).getAttribute('href');
  assert.equal(href, `/cameras/${camera.id}/publish?token=${camera.stream_key}`);
  const phone = await chrome.browser.newPage();
  await phone.goto(`${router.base}${href}&autostart`);
  await waitFrames(phone, 'framesEncoded', 10, 15000);
  await router.waitLog((l) => l.message === 'accounts: camera streaming' && l.camera === camera.id, 15000, 'the session');
  await card.locator('.pill', { hasText: 'streaming' }).waitFor({ timeout: 10000 });

  // Played on the My cameras page with the login.
  await card.getByRole('button', { name: 'Play' }).click();
  await page.waitForFunction((id) => {
    const video = document.querySelector(`[data-camera="${id}"] video`);
    return video && video.videoWidth > 0 && video.currentTime > 0.5;
  }, camera.id, { timeout: 15000 });

  // The session, listed under the card.
  await card.locator('summary', { hasText: 'Sessions' }).click();
  await card.locator('.sessions li', { hasText: 'active' }).waitFor();

  // Without the login nobody plays it, even knowing the route.
  const anonymous = await fetch(`${router.base}/cameras/${camera.id}/whep`, {
    method: 'POST', headers: { 'content-type': 'application/sdp' }, body: 'v=0\r\n',
  });
  assert.equal(anonymous.status, 401);
  await phone.close();
  await page.close();
});
