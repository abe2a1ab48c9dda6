// The publisher page at /{route}/publish: camera and microphone to the route over WHIP.
import { whipPublish, videoStats } from '/webrtc-client.js';

// The route is the path before /publish; a name may have segments (`live/cam1`).
const route = decodeURIComponent(location.pathname.replace(/^\/+|\/+$/g, '').replace(/\/publish$/, ''));
const preview = document.getElementById('preview');
const startBtn = document.getElementById('start');
const stopBtn = document.getElementById('stop');
const state = document.getElementById('state');
const error = document.getElementById('error');
const statsEl = document.getElementById('stats');
document.getElementById('route').textContent = route;

let session = null;
let stream = null;

function show(text, ok) {
  state.textContent = text;
  state.className = `pill ${ok === undefined ? '' : ok ? 'ok' : 'bad'}`;
}

async function start() {
  error.hidden = true;
  startBtn.disabled = true;
  show('starting camera');
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: 1280, height: 720 }, audio: true });
    preview.srcObject = stream;
    show('connecting');
    const videoCodec = new URLSearchParams(location.search).get('codec') ?? 'h264';
    // A token in the page's URL (/ROUTE/publish?token=...) is sent as the WHIP request's Bearer token.
    const token = new URLSearchParams(location.search).get('token') ?? undefined;
    session = await whipPublish(`/${encodeURIComponent(route)}/whip`, stream, { videoCodec, token });
    window.sluiceSession = session;
    session.pc.addEventListener('connectionstatechange', () => {
      const s = session.pc.connectionState;
      show(s === 'connected' ? 'live' : s, s === 'connected' ? true : ['failed', 'closed'].includes(s) ? false : undefined);
    });
    startBtn.hidden = true;
    stopBtn.hidden = false;
  } catch (e) {
    show('error', false);
    error.textContent = e.message;
    error.hidden = false;
    stream?.getTracks().forEach((t) => t.stop());
  } finally {
    startBtn.disabled = false;
  }
}

async function stop() {
  await session?.stop();
  stream?.getTracks().forEach((t) => t.stop());
  session = null;
  show('stopped');
  stopBtn.hidden = true;
  startBtn.hidden = false;
}

async function refreshStats() {
  if (!session) return;
  const s = await videoStats(session.pc);
  statsEl.replaceChildren(...Object.entries({
    'frames encoded': s.framesEncoded ?? 0,
    resolution: s.width ? `${s.width}×${s.height}` : '–',
  }).flatMap(([k, v]) => {
    const dt = document.createElement('dt'); dt.textContent = k;
    const dd = document.createElement('dd'); dd.textContent = v;
    return [dt, dd];
  }));
}

startBtn.addEventListener('click', start);
stopBtn.addEventListener('click', stop);
window.addEventListener('pagehide', () => session?.stop());
setInterval(refreshStats, 1000);
if (new URLSearchParams(location.search).has('autostart')) start();
