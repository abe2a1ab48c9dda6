// The cameras page, on the `signal-cameras` plugin: as a camera (?camera=ID) it publishes getUserMedia into the
// camera's route; as the admin grid it lists the cameras (GET /api/signal-cameras) and plays one per tile on click.
// Signaling: join-room {cameraId, role}, offer/answer {cameraId, sdp}, ice-candidate, camera-status.
const params = new URLSearchParams(location.search);
const path = params.get('path') ?? '/cameras/socket.io/';
const api = params.get('api') ?? '/api/signal-cameras';
const state = document.getElementById('state');
const error = document.getElementById('error');
/** For tests: cameraId -> { pc, status } of this page's sessions. */
const sessions = new Map();
window.sluiceCameras = sessions;

function show(text, ok) {
  state.textContent = text;
  state.className = `pill ${ok === undefined ? '' : ok ? 'ok' : 'bad'}`;
}

function fail(e) {
  error.textContent = e.message ?? String(e);
  error.hidden = false;
}

const socket = io({ path });
socket.on('connect_error', (e) => { show('cannot connect', false); fail(e); });
socket.on('error', ({ message }) => fail(new Error(message)));
socket.on('answer', async ({ cameraId, sdp }) => {
  const s = sessions.get(String(cameraId));
  if (s) await s.pc.setRemoteDescription({ type: 'answer', sdp }).catch(fail);
});
socket.on('camera-status', ({ cameraId, status }) => {
  const s = sessions.get(String(cameraId));
  if (s) s.status = status;
  document.querySelectorAll(`[data-camera="${CSS.escape(String(cameraId))}"] .status`).forEach((el) => {
    el.textContent = status;
    el.className = `status state-${status === 'streaming' ? 'live' : status === 'online' ? 'waiting' : 'unavailable'}`;
  });
  if (cameraMode && String(cameraId) === cameraMode) show(status, status === 'streaming');
});

/** Offers `pc` for `cameraId` and trickles its candidates; the answer arrives as an `answer` event. */
async function negotiate(cameraId, pc) {
  pc.onicecandidate = ({ candidate }) => {
    if (candidate) socket.emit('ice-candidate', { cameraId, candidate: candidate.toJSON() });
  };
  await pc.setLocalDescription(await pc.createOffer());
  socket.emit('offer', { cameraId, sdp: pc.localDescription.sdp });
}

// Camera mode.
const cameraMode = params.get('camera');
let stream = null;

async function startCamera() {
  error.hidden = true;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: 1280, height: 720 }, audio: true });
    document.getElementById('preview').srcObject = stream;
    socket.emit('join-room', { cameraId: cameraMode, role: 'camera' });
    const pc = new RTCPeerConnection();
    for (const track of stream.getTracks()) {
      const t = pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
      // H.264 first: every viewer and recorder takes it.
      if (track.kind === 'video' && t.setCodecPreferences && RTCRtpSender.getCapabilities) {
        const codecs = RTCRtpSender.getCapabilities('video').codecs;
        const h264 = codecs.filter((c) => c.mimeType === 'video/H264' && /packetization-mode=1/.test(c.sdpFmtpLine || ''));
        if (h264.length) t.setCodecPreferences([...h264, ...codecs.filter((c) => !h264.includes(c))]);
      }
    }
    sessions.set(cameraMode, { pc, status: 'online' });
    await negotiate(cameraMode, pc);
    document.getElementById('start').hidden = true;
    document.getElementById('stop').hidden = false;
  } catch (e) {
    show('error', false);
    fail(e);
  }
}

function stopCamera() {
  sessions.get(cameraMode)?.pc.close();
  sessions.delete(cameraMode);
  socket.emit('leave-room');
  stream?.getTracks().forEach((t) => t.stop());
  document.getElementById('stop').hidden = true;
  document.getElementById('start').hidden = false;
}

// Grid mode.
function tile(cameraId) {
  const grid = document.getElementById('grid');
  let figure = grid.querySelector(`[data-camera="${CSS.escape(cameraId)}"]`);
  if (figure) return figure;
  figure = document.createElement('figure');
  figure.className = 'tile';
  figure.dataset.camera = cameraId;
  const video = Object.assign(document.createElement('video'), { autoplay: true, playsInline: true, muted: true });
  const play = Object.assign(document.createElement('button'), { className: 'play', textContent: '▶' });
  const caption = document.createElement('figcaption');
  caption.innerHTML = '<span class="name"></span><span class="status">…</span>';
  caption.querySelector('.name').textContent = cameraId;
  figure.append(video, play, caption);
  grid.append(figure);
  play.addEventListener('click', () => { play.hidden = true; watch(cameraId, video).catch(fail); });
  return figure;
}

async function watch(cameraId, video) {
  socket.emit('join-room', { cameraId, role: 'viewer' });
  const pc = new RTCPeerConnection();
  pc.addTransceiver('video', { direction: 'recvonly' });
  pc.addTransceiver('audio', { direction: 'recvonly' });
  const media = new MediaStream();
  pc.ontrack = (e) => { media.addTrack(e.track); video.srcObject = media; };
  sessions.set(cameraId, { pc, status: sessions.get(cameraId)?.status });
  await negotiate(cameraId, pc);
}

async function listCameras() {
  try {
    const { cameras } = await (await fetch(api)).json();
    for (const c of cameras) tile(c.cameraId);
  } catch (e) {
    fail(e);
  }
}

if (cameraMode) {
  document.getElementById('camera-mode').hidden = false;
  document.getElementById('title').textContent = `/ ${cameraMode}`;
  document.getElementById('start').addEventListener('click', startCamera);
  document.getElementById('stop').addEventListener('click', stopCamera);
  if (params.has('autostart')) startCamera();
} else {
  document.getElementById('grid-mode').hidden = false;
  document.getElementById('add').addEventListener('click', () => {
    const id = document.getElementById('camera-id').value.trim();
    if (id) tile(id);
  });
  socket.on('connect', () => { show('connected', true); listCameras(); });
  // ?play=ID starts playing that camera at once (a link from elsewhere, and the tests).
  for (const id of params.getAll('play')) {
    const figure = tile(id);
    figure.querySelector('.play').hidden = true;
    socket.on('connect', () => watch(id, figure.querySelector('video')).catch(fail));
  }
}
