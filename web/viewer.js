// The viewer page at /{route}: a play button (browsers allow autoplay only muted), connection state and stats.
// WebRTC (WHEP) first; where it fails (no WebRTC, UDP blocked, a route without "whep") it falls back to LL-HLS.
// `?hls` plays over HLS from the start.
import { whepPlay, videoStats } from '/webrtc-client.js';
import { hlsPlay } from '/hls-client.js';

// The route is the whole path; a name may have segments (`live/cam1`).
const route = decodeURIComponent(location.pathname.replace(/^\/+|\/+$/g, ''));
const video = document.getElementById('video');
const play = document.getElementById('play');
const state = document.getElementById('state');
const error = document.getElementById('error');
const statsEl = document.getElementById('stats');
document.getElementById('route').textContent = route;
document.title = `${route} · Sluice`;

let session = null;
let hlsSession = null;
let lastBytes = 0;
const params = new URLSearchParams(location.search);

function show(text, ok) {
  state.textContent = text;
  state.className = `pill ${ok === undefined ? '' : ok ? 'ok' : 'bad'}`;
}

// When the user asked to play and when the first frame showed: the time to first frame.
window.sluiceTimings = {};
video.addEventListener('loadeddata', () => { window.sluiceTimings.firstFrame ??= performance.now(); });

async function start() {
  window.sluiceTimings = { start: performance.now() };
  play.hidden = true;
  error.hidden = true;
  show('connecting');
  await session?.stop(); // a retry replaces the old session instead of leaking it on the server
  session = null;
  hlsSession?.stop();
  hlsSession = null;
  lastBytes = 0;
  if (params.has('hls') || typeof RTCPeerConnection === 'undefined') return startHls(null);
  try {
    // A token in the page's URL (/ROUTE?token=...) is sent as the WHEP request's Bearer token.
    const token = params.get('token') ?? undefined;
    const current = await whepPlay(`/${encodeURIComponent(route)}/whep`, video, { token });
    session = current;
    window.sluiceSession = current; // for tests and the curious: getStats() from the console
    current.pc.addEventListener('connectionstatechange', () => {
      if (session !== current) return;
      const s = current.pc.connectionState;
      show(s, s === 'connected' ? true : ['failed', 'closed', 'disconnected'].includes(s) ? false : undefined);
      if (s === 'failed') {
        current.stop();
        session = null;
        startHls(new Error('WebRTC connection failed'));
      }
    });
    video.muted = false;
    await video.play().catch(() => { video.muted = true; return video.play(); });
  } catch (e) {
    await startHls(e);
  }
}

// Plays over HLS; `why` is what made WebRTC fail (shown if HLS fails too).
async function startHls(why) {
  show('connecting (HLS)');
  try {
    const token = params.get('token');
    const url = `/${encodeURIComponent(route)}/index.m3u8${token ? `?token=${encodeURIComponent(token)}` : ''}`;
    hlsSession = await hlsPlay(url, video, {
      // Stopped after it started (the route ended, the session expired): say so and offer to play again.
      onError: (e) => {
        hlsSession = null;
        show('error', false);
        error.textContent = e.message;
        error.hidden = false;
        play.hidden = false;
        play.textContent = '↻ Retry';
      },
    });
    window.sluiceHls = hlsSession; // for tests and the curious
    show(`playing (HLS${why ? ': WebRTC failed' : ''})`, true);
    video.muted = false;
    await video.play().catch(() => { video.muted = true; return video.play(); });
  } catch (e) {
    show('error', false);
    error.textContent = why ? `${why.message}; ${e.message}` : e.message;
    error.hidden = false;
    play.hidden = false;
    play.textContent = '↻ Retry';
  }
}

async function refreshStats() {
  if (hlsSession) {
    const h = hlsSession.stats();
    statsEl.replaceChildren(...Object.entries({
      'played over': `HLS (${hlsSession.kind})`,
      resolution: video.videoWidth ? `${video.videoWidth}×${video.videoHeight}` : '–',
      latency: h.latency ? `${h.latency.toFixed(2)} s` : '–',
      'parts loaded': h.parts ?? '–',
      buffered: h.buffered ? `${h.buffered.toFixed(2)} s` : '–',
    }).flatMap(([k, v]) => {
      const dt = document.createElement('dt'); dt.textContent = k;
      const dd = document.createElement('dd'); dd.textContent = v;
      return [dt, dd];
    }));
    return;
  }
  if (!session) return;
  const s = await videoStats(session.pc);
  const kbps = Math.round(((s.bytes || 0) - lastBytes) * 8 / 1000);
  lastBytes = s.bytes || 0;
  statsEl.replaceChildren(...Object.entries({
    'frames decoded': s.framesDecoded ?? 0,
    resolution: s.width ? `${s.width}×${s.height}` : '–',
    bitrate: `${kbps} kbit/s`,
    'packets lost': s.packetsLost ?? 0,
  }).flatMap(([k, v]) => {
    const dt = document.createElement('dt'); dt.textContent = k;
    const dd = document.createElement('dd'); dd.textContent = v;
    return [dt, dd];
  }));
}

// The route's own state, so "connected" with no picture is explained: a route waiting for its publisher, an
// unavailable source and why, and warnings (B-frames, AAC audio) with what to do.
const routeState = document.getElementById('route-state');
const routeError = document.getElementById('route-error');
const warnings = document.getElementById('warnings');
async function refreshRoute() {
  const token = new URLSearchParams(location.search).get('token');
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  let view;
  try {
    const r = await fetch(`/v1/routes/${encodeURIComponent(route)}`, { headers });
    if (!r.ok) { routeState.hidden = true; return; } // the API may be guarded: the page still plays
    view = await r.json();
  } catch { return; }
  const st = view.live?.state ?? 'ended';
  routeState.hidden = false;
  routeState.textContent = `route: ${st}`;
  routeState.className = `pill ${st === 'live' ? 'ok' : st === 'waiting' ? '' : 'bad'}`;
  const err = view.live?.last_error;
  routeError.hidden = !err || st === 'live';
  routeError.textContent = err ? `${st === 'unavailable' ? 'unavailable' : 'last error'}: ${err}` : '';
  warnings.hidden = !view.warnings?.length;
  warnings.replaceChildren(...(view.warnings ?? []).map((w) => {
    const li = document.createElement('li'); li.textContent = `⚠ ${w}`; return li;
  }));
}

play.addEventListener('click', start);
refreshRoute();
setInterval(refreshRoute, 2000);
window.addEventListener('pagehide', () => { session?.stop(); hlsSession?.stop(); });
setInterval(refreshStats, 1000);
if (new URLSearchParams(location.search).has('autoplay')) start();
