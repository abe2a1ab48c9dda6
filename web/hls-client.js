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
 * message when it refuses; `onError` hears of a failure after that (the player has stopped). Returns
 * { kind, stop(), stats() }. */
export async function hlsPlay(url, video, { onError } = {}) {
  // The router's answer first: a refusal (no such route, `to` without "hls", credentials) reads better than a
  // player's generic network error. Its one variant is this viewer's media playlist (its session): the player
  // starts there, so the viewer is counted once.
  const index = await fetch(url);
  if (!index.ok) {
    let message = `${index.status} ${index.statusText}`;
    try { message = (await index.json()).error?.message ?? message; } catch { /* not JSON */ }
    throw new Error(`HLS: ${message}`);
  }
  const variant = (await index.text()).trim().split('\n').at(-1);
  const media = new URL(variant, new URL(url, location.href)).href;
  if (!window.MediaSource && !window.ManagedMediaSource && video.canPlayType('application/vnd.apple.mpegurl')) {
    video.srcObject = null;
    video.src = media;
    return { kind: 'native', stop() { video.removeAttribute('src'); video.load(); }, stats: () => ({}) };
  }
  const Hls = await loadHlsJs();
  if (!Hls.isSupported()) throw new Error('this browser can play neither WebRTC nor HLS');
  const hls = new Hls({ lowLatencyMode: true, backBufferLength: 30 });
  // Parts (EXT-X-PART) loaded, as opposed to whole segments: what low latency rests on.
  let parts = 0;
  hls.on(Hls.Events.FRAG_LOADED, (_, data) => { if (data.part) parts += 1; });
  video.srcObject = null;
  let started = false;
  await new Promise((resolve, reject) => {
    hls.on(Hls.Events.MANIFEST_PARSED, () => { started = true; resolve(); });
    hls.on(Hls.Events.ERROR, (_, data) => {
      if (!data.fatal) return;
      const e = new Error(`HLS: ${data.details}${data.response?.code ? ` (${data.response.code})` : ''}`);
      if (!started) { reject(e); return; }
      hls.destroy();
      onError?.(e);
    });
    hls.loadSource(media);
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
