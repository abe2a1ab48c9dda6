// The home page's route editor in Chromium (issue 29): a route added, changed and removed from the page is
// written into routes.toml with the admin's comments kept, and a change made against a file edited meanwhile
// is refused with the reason instead of overwriting it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { startRouter, startBrowser, SERVER } from './harness.mjs';

const routes = `${SERVER}
# The demo clip: keep this comment.
[[route]]
name = "demo"
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
});

const file = () => readFileSync(router.config, 'utf8');

test('routes are added, changed and removed from the home page, in routes.toml', async () => {
  const page = await chrome.browser.newPage();
  page.on('dialog', (dialog) => dialog.accept());
  await page.goto(`${router.base}/`);
  await page.locator('#routes tbody tr', { hasText: 'demo' }).waitFor();

  // Add.
  await page.locator('#route-editor summary').click();
  await page.fill('#route-form input[name="name"]', 'lobby');
  await page.fill('#route-form input[name="from"]', 'whip');
  await page.fill('#route-form input[name="to"]', 'whep, rtmp');
  await page.click('#route-form button[type="submit"]');
  const row = page.locator('#routes tbody tr', { hasText: 'lobby' });
  await row.waitFor();
  assert.ok(file().startsWith(routes), 'the file before the new route is untouched');
  assert.match(file(), /\[\[route\]\]\nname = "lobby"\nfrom = "whip"\nto = \["whep", "rtmp"\]\n$/);

  // Change: only the edited field is written.
  await row.getByRole('button', { name: 'Edit' }).click();
  assert.equal(await page.inputValue('#route-form input[name="from"]'), 'whip');
  await page.fill('#route-form input[name="max_readers"]', '7');
  await page.click('#route-form button[type="submit"]');
  await page.waitForFunction(async () => {
    const r = await (await fetch('/v1/routes/lobby')).json();
    return r.config.max_readers === 7;
  });
  assert.match(file(), /name = "lobby"\nfrom = "whip"\nto = \["whep", "rtmp"\]\nmax_readers = 7\n$/);

  // The file edited by hand while the form is open: the save is refused with the reason, the hand edit stays.
  await row.getByRole('button', { name: 'Edit' }).click();
  const byHand = file().replace('max_readers = 7', 'max_readers = 9 # by hand');
  writeFileSync(router.config, byHand);
  await page.fill('#route-form input[name="max_readers"]', '8');
  await page.click('#route-form button[type="submit"]');
  const error = page.locator('#route-form-error');
  await error.waitFor({ state: 'visible' });
  assert.match(await error.textContent(), /changed since it was read/);
  assert.equal(file(), byHand);
  await page.click('#route-cancel');

  // Remove: the 409 told the page the file's current version, so this change is made against the hand edit.
  await row.getByRole('button', { name: 'Delete' }).click();
  await row.waitFor({ state: 'detached' });
  assert.equal(file(), routes, 'the file is what it was before the route was added');
  await page.close();
});
