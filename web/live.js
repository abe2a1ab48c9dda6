// The live page, on the `signal-live` plugin (plain WebSocket, JSON messages): the broadcaster (?role=broadcaster)
// publishes its camera into the route, viewers read it; everyone chats, likes, and sees the viewer count.
const params = new URLSearchParams(location.search);
const role = params.get('role') === 'broadcaster' ? 'broadcaster' : 'viewer';
const wsPath = params.get('path') ?? '/ws/live';
const $ = (id) => document.getElementById(id);
const ui = { state: $('state'), live: $('live'), viewers: $('viewers'), likes: $('likes'), chat: $('chat'), error: $('error') };
/** For tests: what this page saw. */
const seen = { chat: [], viewerCount: 0, likes: 0, live: false, errors: [], pc: null };
window.sluiceLive = seen;

function show(text, ok) {
  ui.state.textContent = text;
  ui.state.className = `pill ${ok === undefined ? '' : ok ? 'ok' : 'bad'}`;
}

function fail(message) {
  seen.errors.push(message);
  ui.error.textContent = message;
  ui.error.hidden = false;
}

const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${wsPath}`);
const send = (m) => ws.send(JSON.stringify(m));
let stream = null;

async function offer() {
  const pc = new RTCPeerConnection();
  seen.pc = pc;
  if (role === 'broadcaster') {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: 1280, height: 720 }, audio: true });
    $('video').srcObject = stream;
    for (const track of stream.getTracks()) pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
  } else {
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    const media = new MediaStream();
    pc.ontrack = (e) => { media.addTrack(e.track); $('video').srcObject = media; };
  }
  pc.onicecandidate = ({ candidate }) => { if (candidate) send({ type: 'candidate', candidate: candidate.candidate }); };
  await pc.setLocalDescription(await pc.createOffer());
  send({ type: 'offer', sdp: pc.localDescription.sdp });
}

ws.addEventListener('open', () => {
  show('connected', true);
  send({ type: 'register', role, name: params.get('name') ?? undefined });
});
ws.addEventListener('close', (e) => show(`closed${e.reason ? `: ${e.reason}` : ''}`, false));
ws.addEventListener('message', async (event) => {
  const m = JSON.parse(event.data);
  switch (m.type) {
    case 'registered':
      if (role === 'viewer' || params.has('autostart')) offer().catch((e) => fail(e.message));
      break;
    case 'answer':
      await seen.pc?.setRemoteDescription({ type: 'answer', sdp: m.sdp }).catch((e) => fail(e.message));
      break;
    case 'stream_status':
      seen.live = m.live;
      ui.live.textContent = m.live ? 'live' : 'offline';
      ui.live.className = `pill ${m.live ? 'ok' : ''}`;
      // A viewer that joined before the show began asks again once it starts.
      if (m.live && role === 'viewer' && seen.pc?.connectionState !== 'connected') {
        seen.pc?.close();
        offer().catch((e) => fail(e.message));
      }
      break;
    case 'viewer_count':
      seen.viewerCount = m.count;
      ui.viewers.textContent = m.count;
      break;
    case 'stream_update':
      seen.likes = m.likes;
      ui.likes.textContent = m.likes;
      break;
    case 'chat': {
      seen.chat.push(m);
      const li = document.createElement('li');
      li.textContent = `${new Date(m.timestamp).toLocaleTimeString()} ${m.name}: ${m.text}`;
      ui.chat.prepend(li);
      break;
    }
    case 'error':
      fail(m.message);
      break;
    default:
  }
});

$('go').hidden = role !== 'broadcaster';
$('go').addEventListener('click', () => offer().catch((e) => fail(e.message)));
$('like').addEventListener('click', () => send({ type: 'like' }));
$('chat-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const text = $('chat-text').value.trim();
  if (text) send({ type: 'chat', text });
  $('chat-text').value = '';
});
