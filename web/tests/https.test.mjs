// HTTPS on the LAN: a phone's browser gives a page the camera only in a secure context. The router makes a
// self-signed certificate for every interface address; Chromium, trusting it by the fingerprint the router logs
// (as a phone user checks it), opens the publisher page on the namespace's non-loopback address and publishes,
// and a second Chromium plays it. Needs the veth pair router/tests/browser.rs creates (10.99.0.1).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { networkInterfaces } from 'node:os';
import { startRouter, startBrowser, waitFrames } from './harness.mjs';

const LAN = '10.99.0.1';
const lanPresent = Object.values(networkInterfaces()).flat().some((i) => i?.address === LAN);

const routes = `[server]
http = "127.0.0.1:0"
https = "0.0.0.0:0"
https_redirect = true
rtsp = "127.0.0.1:0"
rtmp = "127.0.0.1:0"
webrtc = { udp = "0.0.0.0:0" }
data_dir = "data"

[[route]]
name = "phone"
from = "whip"
to = ["whep"]
`;

let router;
let trusting;
let untrusting;
let fingerprint;

before(async () => {
  router = await startRouter(routes);
  const line = await router.waitLog((l) => l.message?.startsWith('HTTPS listening'));
  fingerprint = line;
  trusting = await startBrowser([`--ignore-certificate-errors-spki-list=${line.spki_sha256}`]);
  untrusting = await startBrowser();
});

after(async () => {
  await trusting?.stop();
  await untrusting?.stop();
  await router?.stop();
});

const httpsPort = () => router.https.split(':').pop();

test('a browser that checked the fingerprint publishes its camera over https:// on a LAN address, and another plays it',
  { skip: !lanPresent && 'no 10.99.0.1 here: run through router/tests/browser.rs' }, async () => {
    const base = `https://${LAN}:${httpsPort()}`;
    const publisher = await trusting.browser.newPage();
    await publisher.goto(`${base}/phone/publish?autostart`);
    assert.equal(await publisher.evaluate(() => window.isSecureContext), true, 'the page may use the camera');
    await waitFrames(publisher, 'framesEncoded', 10, 10000);
    await router.waitLog((l) => l.message === 'publisher attached' && l.route === 'phone');
    const viewer = await (await trusting.browser.newContext()).newPage();
    await viewer.goto(`${base}/phone?autoplay`);
    await waitFrames(viewer, 'framesDecoded', 30, 10000);
    const status = await viewer.evaluate(async () => (await fetch('/v1/status')).json());
    assert.equal(status.tls.fingerprint.sha256, fingerprint.sha256, 'the UI shows what the browser was shown');
    assert.equal(status.tls.self_signed, true);
    const home = await trusting.browser.newPage();
    await home.goto(`${base}/`);
    await home.waitForFunction((fp) => document.getElementById('tls-fingerprint').textContent === fp, fingerprint.sha256);
    assert.equal(await home.isVisible('#tls'), true, 'the home page shows it');
    await home.close();
    await publisher.close();
  });

test('a browser that did not accept the certificate is stopped by it', async () => {
  const page = await untrusting.browser.newPage();
  const opened = await page.goto(`https://127.0.0.1:${httpsPort()}/`).then(() => 'opened', (e) => String(e));
  assert.match(opened, /ERR_CERT_AUTHORITY_INVALID/);
  await page.close();
});

test('plain HTTP sends browsers to HTTPS, but not monitors', async () => {
  const redirected = await fetch(`${router.base}/phone/whep?x=1`, { method: 'POST', redirect: 'manual' });
  assert.equal(redirected.status, 308);
  assert.equal(redirected.headers.get('location'), `https://127.0.0.1:${httpsPort()}/phone/whep?x=1`);
  assert.equal((await fetch(`${router.base}/healthz`)).status, 200);
});
