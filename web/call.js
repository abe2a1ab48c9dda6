// The call page: a full mesh of up to four browsers, signaled through the `signal-rooms` plugin over Socket.IO
// (join-room, peers, peer-joined, signal, peer-left). Each pair negotiates with "perfect negotiation": the peer
// with the lower id is polite and yields when both offer at once.
const params = new URLSearchParams(location.search);
const roomId = params.get('room') ?? 'lobby';
const path = params.get('path') ?? '/socket.io/';
const nameInput = document.getElementById('name');
const joinBtn = document.getElementById('join');
const leaveBtn = document.getElementById('leave');
const grid = document.getElementById('grid');
const state = document.getElementById('state');
const error = document.getElementById('error');
document.getElementById('room').textContent = roomId;
nameInput.value = params.get('name') ?? '';

let socket = null;
let stream = null;
let myId = null;
/** peerId -> { pc, tile, makingOffer, ignoreOffer, polite } */
const peers = new Map();
window.sluiceCall = { peers };

function show(text, ok) {
  state.textContent = text;
  state.className = `pill ${ok === undefined ? '' : ok ? 'ok' : 'bad'}`;
}

function fail(e) {
  error.textContent = e.message ?? String(e);
  error.hidden = false;
}

function peer(peerId, displayName) {
  if (peers.has(peerId)) return peers.get(peerId);
  const pc = new RTCPeerConnection();
  const tile = document.createElement('figure');
  tile.className = 'tile';
  tile.dataset.peer = peerId;
  const video = Object.assign(document.createElement('video'), { autoplay: true, playsInline: true, muted: true });
  const caption = document.createElement('figcaption');
  caption.textContent = displayName ?? `peer ${peerId}`;
  tile.append(video, caption);
  grid.append(tile);
  const p = {
    pc, tile, caption, makingOffer: false, ignoreOffer: false,
    // Read when an offer collides, by which time this page knows its own id (the join-room ack).
    get polite() { return Number(myId) < Number(peerId); },
  };
  peers.set(peerId, p);
  const send = (data) => socket.emit('signal', { to: peerId, data });
  for (const track of stream.getTracks()) pc.addTrack(track, stream);
  pc.ontrack = ({ streams }) => { video.srcObject = streams[0]; };
  pc.onicecandidate = ({ candidate }) => send({ candidate });
  // A pair whose connectivity checks failed (a candidate lost in a collision, a network change) tries again with
  // fresh credentials; the offer it makes goes through the same perfect negotiation.
  pc.onconnectionstatechange = () => { if (pc.connectionState === 'failed') pc.restartIce(); };
  pc.onnegotiationneeded = async () => {
    try {
      p.makingOffer = true;
      await pc.setLocalDescription();
      send({ description: pc.localDescription });
    } catch (e) {
      fail(e);
    } finally {
      p.makingOffer = false;
    }
  };
  return p;
}

/** Signals from one peer are handled one after another: a candidate must not overtake the description before it
 * (its `setRemoteDescription` is still running when the next event arrives). */
function onSignal(message) {
  const p = peer(message.from);
  p.queue = (p.queue ?? Promise.resolve()).then(() => handleSignal(p, message));
}

async function handleSignal(p, { from, data }) {
  const { pc } = p;
  try {
    if (data.description) {
      const collision = data.description.type === 'offer' && (p.makingOffer || pc.signalingState !== 'stable');
      p.ignoreOffer = !p.polite && collision;
      if (p.ignoreOffer) return;
      await pc.setRemoteDescription(data.description);
      if (data.description.type === 'offer') {
        await pc.setLocalDescription();
        socket.emit('signal', { to: from, data: { description: pc.localDescription } });
      }
    } else if (data.candidate) {
      try {
        await pc.addIceCandidate(data.candidate);
      } catch (e) {
        if (!p.ignoreOffer) throw e;
      }
    }
  } catch (e) {
    fail(e);
  }
}

function drop(peerId) {
  const p = peers.get(peerId);
  if (!p) return;
  p.pc.close();
  p.tile.remove();
  peers.delete(peerId);
}

async function join() {
  error.hidden = true;
  joinBtn.disabled = true;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240, frameRate: 15 }, audio: true });
    document.getElementById('local').srcObject = stream;
    socket = io({ path });
    socket.on('connect_error', (e) => { show('cannot connect', false); fail(e); });
    socket.on('error', ({ message }) => fail(new Error(message)));
    socket.on('room-full', ({ maxMembers }) => fail(new Error(`the room is full (${maxMembers} people)`)));
    socket.on('peer-joined', ({ peerId, displayName }) => { peer(peerId, displayName); });
    socket.on('peers', ({ peers: ids, displayNames }) => {
      // Every pair negotiates as soon as both sides know each other; collisions are settled by politeness.
      for (const id of ids) peer(id, displayNames?.[id]);
    });
    socket.on('signal', onSignal);
    socket.on('peer-left', ({ peerId }) => drop(peerId));
    socket.on('disconnect', () => { show('reconnecting'); for (const id of [...peers.keys()]) drop(id); });
    socket.on('connect', async () => {
      const ack = await socket.emitWithAck('join-room', { roomId, displayName: nameInput.value || undefined });
      if (!ack.ok) { show('refused', false); fail(new Error(ack.error)); return; }
      myId = ack.peerId;
      show(`in the room as ${myId}`, true);
    });
    joinBtn.hidden = true;
    leaveBtn.hidden = false;
  } catch (e) {
    show('error', false);
    fail(e);
  } finally {
    joinBtn.disabled = false;
  }
}

function leave() {
  socket?.emit('leave-room');
  socket?.disconnect();
  for (const id of [...peers.keys()]) drop(id);
  stream?.getTracks().forEach((t) => t.stop());
  show('left');
  leaveBtn.hidden = true;
  joinBtn.hidden = false;
}

joinBtn.addEventListener('click', join);
leaveBtn.addEventListener('click', leave);
if (params.has('autojoin')) join();
