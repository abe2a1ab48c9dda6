// Plays a route over (LL-)HLS: natively where the browser can (Safari), else with hls.js (vendor/hls.light.min.js,
// loaded on first use). The viewer page falls back to this where WebRTC fails.

let loading = null;

/** hls.js, loaded once. */
function loadHlsJs() {
  loading ??= new Promise((resolve, reject) => {
    if (window.Hls) return resolve(window.Hls);
    const s = document.createElement('script');
    s.src = '/vendor/hls.light.min.js';
    s.onload = () => (window.Hls ? resolve(window.Hls) : reject(new Error('hls.js did not load')));
    s.onerror = () => reject(new Error('could not load /vendor/hls.light.min.js'));
    document.head.append(s);
  });
  return loading;
}

/** Plays `url` (a route's index.m3u8) in `video`. Resolves once the playlist loaded, rejects with the server's
 * message when it refuses. Returns { kind, stop(), stats() }. */
export async function hlsPlay(url, video) {
  // The router's answer first: a refusal (no such route, `to` without "hls", credentials) reads better than a
  // player's generic network error.
  const probe = await fetch(url);
  if (!probe.ok) {
    let message = `${probe.status} ${probe.statusText}`;
    try { message = (await probe.json()).error?.message ?? message; } catch { /* not JSON */ }
    throw new Error(`HLS: ${message}`);
  }
  await probe.text();
  if (!window.MediaSource && !window.ManagedMediaSource && video.canPlayType('application/vnd.apple.mpegurl')) {
    video.srcObject = null;
    video.src = url;
    return { kind: 'native', stop() { video.removeAttribute('src'); video.load(); }, stats: () => ({}) };
  }
  const Hls = await loadHlsJs();
  if (!Hls.isSupported()) throw new Error('this browser can play neither WebRTC nor HLS');
  const hls = new Hls({ lowLatencyMode: true, backBufferLength: 30 });
  // Parts (EXT-X-PART) loaded, as opposed to whole segments: what low latency rests on.
  let parts = 0;
  hls.on(Hls.Events.FRAG_LOADED, (_, data) => { if (data.part) parts += 1; });
  video.srcObject = null;
  await new Promise((resolve, reject) => {
    hls.on(Hls.Events.MANIFEST_PARSED, resolve);
    hls.on(Hls.Events.ERROR, (_, data) => { if (data.fatal) reject(new Error(`HLS: ${data.details}`)); });
    hls.loadSource(url);
    hls.attachMedia(video);
  });
  return {
    kind: 'hls.js',
    hls,
    stop() { hls.destroy(); },
    stats: () => ({
      latency: hls.latency,
      parts,
      buffered: video.buffered.length ? video.buffered.end(video.buffered.length - 1) - video.currentTime : 0,
    }),
  };
}
