// A small WHIP/WHEP client (RFC 9725): one POST with the complete offer, the answer back, DELETE to end.
// Used by the viewer and publisher pages; usable on its own:
//   const session = await whepPlay('/demo/whep', videoElement);  ...  await session.stop();

/** ICE servers the router advertises in its OPTIONS Link headers. */
export async function iceServers(endpoint) {
  try {
    const resp = await fetch(endpoint, { method: 'OPTIONS' });
    const links = (resp.headers.get('Link') || '').split(/,\s*(?=<)/).filter((l) => l.includes('rel="ice-server"'));
    return links.map((link) => {
      const url = link.match(/<([^>]+)>/)?.[1];
      const param = (name) => link.match(new RegExp(`${name}="([^"]*)"`))?.[1];
      const server = { urls: url };
      if (param('username')) server.username = param('username');
      if (param('credential')) server.credential = param('credential');
      return server;
    }).filter((s) => s.urls);
  } catch {
    return [];
  }
}

/** Resolves once ICE gathering is complete, or after `timeoutMs`: the router is ICE-lite and takes no trickle. */
function gathered(pc, timeoutMs = 2000) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { pc.removeEventListener('icegatheringstatechange', check); resolve(); };
    const check = () => { if (pc.iceGatheringState === 'complete') done(); };
    pc.addEventListener('icegatheringstatechange', check);
    setTimeout(done, timeoutMs);
  });
}

async function exchange(endpoint, pc, token) {
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  const headers = { 'Content-Type': 'application/sdp' };
  if (token) headers.Authorization = `Bearer ${token}`;
  // credentials: 'omit': a 401 offering Basic (for MediaMTX's clients) must not bring up the browser's own login
  // dialog here; the page passes its token itself.
  const resp = await fetch(endpoint, { method: 'POST', headers, body: pc.localDescription.sdp, credentials: 'omit' });
  if (resp.status !== 201) {
    let message = `${resp.status} ${resp.statusText}`;
    try { message = (await resp.json()).error.message; } catch { /* not JSON */ }
    pc.close();
    throw new Error(message);
  }
  const location = new URL(resp.headers.get('Location'), new URL(endpoint, location_base()));
  await pc.setRemoteDescription({ type: 'answer', sdp: await resp.text() });
  return {
    pc,
    location,
    async stop() {
      pc.close();
      // keepalive: the DELETE must survive the page unloading (pagehide).
      await fetch(location, { method: 'DELETE', keepalive: true }).catch(() => {});
    },
  };
}

function location_base() {
  return typeof window !== 'undefined' ? window.location.href : 'http://localhost/';
}

/** Plays a route: WHEP into `video`. */
export async function whepPlay(endpoint, video, { token } = {}) {
  const pc = new RTCPeerConnection({ iceServers: await iceServers(endpoint) });
  pc.addTransceiver('video', { direction: 'recvonly' });
  pc.addTransceiver('audio', { direction: 'recvonly' });
  const stream = new MediaStream();
  pc.ontrack = (e) => {
    stream.addTrack(e.track);
    video.srcObject = stream;
  };
  return exchange(endpoint, pc, token);
}

/** Publishes a MediaStream to a route over WHIP, preferring H.264 (every browser and reader decodes it) unless
 * `videoCodec` names another ('vp8'). */
export async function whipPublish(endpoint, stream, { token, videoCodec = 'h264' } = {}) {
  const pc = new RTCPeerConnection({ iceServers: await iceServers(endpoint) });
  for (const track of stream.getTracks()) {
    const transceiver = pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
    if (track.kind === 'video' && RTCRtpSender.getCapabilities) {
      const codecs = RTCRtpSender.getCapabilities('video').codecs;
      const wanted = codecs.filter((c) => c.mimeType.toLowerCase() === `video/${videoCodec}`
        && (videoCodec !== 'h264' || /packetization-mode=1/.test(c.sdpFmtpLine || '')));
      const rest = codecs.filter((c) => !wanted.includes(c));
      if (wanted.length && transceiver.setCodecPreferences) transceiver.setCodecPreferences([...wanted, ...rest]);
    }
  }
  return exchange(endpoint, pc, token);
}

/** Inbound or outbound video stats worth showing: frames, bytes, loss. */
export async function videoStats(pc) {
  const stats = await pc.getStats();
  const out = {};
  stats.forEach((s) => {
    if (s.kind !== 'video') return;
    if (s.type === 'inbound-rtp') Object.assign(out, { framesDecoded: s.framesDecoded, bytes: s.bytesReceived, packetsLost: s.packetsLost, width: s.frameWidth, height: s.frameHeight });
    if (s.type === 'outbound-rtp') Object.assign(out, { framesEncoded: s.framesEncoded, bytes: s.bytesSent, width: s.frameWidth, height: s.frameHeight });
  });
  return out;
}
