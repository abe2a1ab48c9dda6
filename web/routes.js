// The home page: a grid of playable routes (click to play inline over WHEP, or HLS for routes that offer only
// that) and the routes table, both from
// the REST API; recording (start/stop, the recorded segments) is in recordings.js, adding and changing routes in
// route-editor.js.
import { whepPlay } from '/webrtc-client.js';
import { hlsPlay } from '/hls-client.js';
import { recordCell } from '/recordings.js';
import { beginRead, editCell, noteRoutes } from '/route-editor.js';

const grid = document.getElementById('grid');
/** Tiles by route name, kept across refreshes so a playing tile keeps playing. */
const tiles = new Map();

function tile(route, over) {
  const el = document.createElement('figure');
  el.className = 'tile';
  el.dataset.route = route;
  const video = document.createElement('video');
  video.muted = true;
  video.playsInline = true;
  video.autoplay = true;
  const caption = document.createElement('figcaption');
  const link = document.createElement('a');
  link.href = `/${encodeURIComponent(route)}`;
  link.textContent = route;
  const state = document.createElement('span');
  state.className = 'tile-state';
  caption.append(link, state);
  const play = document.createElement('button');
  play.className = 'play';
  play.textContent = '▶';
  play.title = `Play ${route}`;
  play.addEventListener('click', async () => {
    play.hidden = true;
    try {
      const path = `/${encodeURIComponent(route)}`;
      el.session = over === 'whep' ? await whepPlay(`${path}/whep`, video) : await hlsPlay(`${path}/index.m3u8`, video);
    } catch (e) {
      play.hidden = false;
      state.textContent = e.message;
    }
  });
  el.append(video, play, caption);
  el.stateEl = state;
  return el;
}

/** A route's state as the grid and the table show it: a ⚠ when it has warnings, the error while not live. */
function stateText(r) {
  const st = r.live?.state ?? 'ended';
  const err = st !== 'live' ? r.live?.last_error : null;
  return `${(r.warnings ?? []).length ? '⚠ ' : ''}${st}${err ? `: ${err}` : ''}`;
}

function renderGrid(routes) {
  const over = (r) => (r.config.to.includes('whep') ? 'whep' : r.config.to.includes('hls') ? 'hls' : null);
  const playable = routes.filter(over);
  for (const r of playable) {
    if (!tiles.has(r.name)) tiles.set(r.name, tile(r.name, over(r)));
    const t = tiles.get(r.name);
    // The route's state stays visible while a tile plays: "connected" with no picture is then explained.
    t.stateEl.textContent = stateText(r);
    t.stateEl.title = (r.warnings ?? []).join('\n');
    t.stateEl.className = `tile-state state-${r.live?.state ?? 'ended'}`;
  }
  for (const [name, t] of tiles) {
    if (!playable.some((r) => r.name === name)) {
      t.session?.stop();
      tiles.delete(name);
    }
  }
  grid.replaceChildren(...playable.map((r) => tiles.get(r.name)));
}
window.addEventListener('pagehide', () => tiles.forEach((t) => t.session?.stop()));
const tbody = document.querySelector('#routes tbody');
const configState = document.getElementById('config-state');
const configError = document.getElementById('config-error');

function cell(text, className) {
  const td = document.createElement('td');
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function kbps(bps) {
  return bps >= 1e6 ? `${(bps / 1e6).toFixed(1)} Mbit/s` : `${Math.round(bps / 1e3)} kbit/s`;
}

async function refresh() {
  try {
    const read = beginRead();
    const [routes, status] = await Promise.all([
      fetch('/v1/routes').then((r) => {
        noteRoutes(read, r.headers.get('etag'), refresh);
        return r.json();
      }),
      fetch('/v1/status').then((r) => r.json()),
    ]);
    renderGrid(routes);
    tbody.replaceChildren(...routes.map((r) => {
      const tr = document.createElement('tr');
      const live = r.live ?? {};
      const name = document.createElement('td');
      const link = document.createElement('a');
      link.href = `/${encodeURIComponent(r.name)}`;
      link.textContent = r.name;
      name.append(link);
      tr.append(
        name,
        cell(stateText(r), `state-${live.state}`),
        cell(live.source ?? ''),
        cell(r.config.to.join(', ')),
        cell((live.tracks ?? []).map((t) => `${t.codec} ${t.description}`).join('; ')),
        cell(String(live.reader_count ?? 0)),
        cell(kbps(live.bitrate_in_bps ?? 0)),
        cell(String(live.frames_dropped ?? 0)),
        recordCell(r, refresh),
        editCell(r),
      );
      tr.title = [live.last_error, ...(r.warnings ?? [])].filter(Boolean).join('\n');
      return tr;
    }));
    configState.textContent = status.config_valid ? 'config ok' : 'config invalid';
    configState.className = `pill ${status.config_valid ? 'ok' : 'bad'}`;
    configError.hidden = status.config_valid;
    configError.textContent = status.config_error?.message ?? '';
    document.getElementById('tls').hidden = !status.tls;
    document.getElementById('tls-fingerprint').textContent = status.tls?.fingerprint.sha256 ?? '';
  } catch (e) {
    configState.textContent = 'router unreachable';
    configState.className = 'pill bad';
  }
}

refresh();
setInterval(refresh, 2000);
