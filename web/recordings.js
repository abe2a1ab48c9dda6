// Recording on the home page: start and stop it per route (POST /v1/routes/NAME/record), and the recorded
// segments (GET /v1/recordings), each playable in the page's player — the file URL serves HTTP Range, so the
// <video> seeks — or downloadable.

/** The Recording cell of a route's row: what records it now, and a button to start or stop recording. */
export function recordCell(route, changed) {
  const td = document.createElement('td');
  const active = (route.recordings ?? []).filter((r) => r.state !== 'stopped');
  const state = document.createElement('span');
  state.className = active.length ? 'rec-on' : '';
  state.textContent = active.map((r) => `● ${r.plugin} ${r.state}`).join(', ');
  const failing = active.find((r) => r.last_error);
  if (failing) state.title = failing.last_error;
  const button = document.createElement('button');
  button.className = 'rec-toggle';
  button.textContent = active.length ? 'Stop' : 'Record';
  button.title = active.length ? `Stop recording ${route.name}` : `Record ${route.name}`;
  button.addEventListener('click', async () => {
    button.disabled = true;
    // Stopping names each plugin that records; starting lets the router pick the route's or the only sink plugin.
    const bodies = active.length
      ? active.map((r) => ({ action: 'stop', plugin: r.plugin }))
      : [{ action: 'start' }];
    try {
      for (const body of bodies) {
        const res = await fetch(`/v1/routes/${encodeURIComponent(route.name)}/record`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
        if (!res.ok) {
          const err = await res.json().catch(() => ({}));
          throw new Error(err.error?.message ?? `HTTP ${res.status}`);
        }
      }
      changed();
    } catch (e) {
      state.className = 'error';
      state.textContent = e.message;
      button.disabled = false;
    }
  });
  td.append(button, ' ', state);
  return td;
}

const tbody = document.querySelector('#recordings tbody');
const note = document.getElementById('recordings-note');
const player = document.getElementById('recording-player');
const playing = document.getElementById('recording-playing');
/** The newest this many segments of the last day are listed (the index answers oldest first, 10,000 at most). */
const SHOWN = 100;
const LISTED_SPAN_MS = 24 * 3600 * 1000;

function cell(text) {
  const td = document.createElement('td');
  td.textContent = text;
  return td;
}

function duration(ms) {
  const s = Math.round(ms / 1000);
  const h = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(h ? 2 : 1, '0');
  const ss = String(s % 60).padStart(2, '0');
  return h ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

function size(bytes) {
  return bytes >= 1e9 ? `${(bytes / 1e9).toFixed(2)} GB` : `${(bytes / 1e6).toFixed(1)} MB`;
}

function play(rec) {
  player.hidden = false;
  player.src = rec.url;
  playing.textContent = `${rec.route}, ${new Date(rec.start).toLocaleString()}`;
  player.play().catch(() => {});
}

function row(rec) {
  const tr = document.createElement('tr');
  tr.dataset.id = rec.id;
  const actions = document.createElement('td');
  const button = document.createElement('button');
  button.className = 'rec-play';
  button.textContent = '▶';
  button.title = 'Play here';
  button.addEventListener('click', () => play(rec));
  const download = document.createElement('a');
  download.href = rec.url;
  download.download = `${rec.route}-${rec.start.replaceAll(':', '-')}.mp4`;
  download.textContent = 'Download';
  actions.append(button, ' ', download);
  tr.append(
    cell(rec.route),
    cell(new Date(rec.start).toLocaleString()),
    cell(duration(rec.duration_ms)),
    cell(size(rec.size)),
    cell(rec.codecs),
    actions,
  );
  return tr;
}

async function refresh() {
  try {
    const from = Math.floor((Date.now() - LISTED_SPAN_MS) / 1000);
    const res = await fetch(`/v1/recordings?from=${from}`);
    if (res.status === 401 || res.status === 403) {
      note.hidden = false;
      note.textContent = 'Listing every route\'s recordings is an API call: this router\'s api_auth asks for credentials.';
      return;
    }
    const { recordings } = await res.json();
    const newest = recordings.sort((a, b) => b.start_ms - a.start_ms).slice(0, SHOWN);
    tbody.replaceChildren(...newest.map(row));
    note.hidden = recordings.length > 0;
    note.textContent = 'Nothing recorded in the last day: press Record on a route above (it needs a sink plugin such as builtin:record-mp4 in routes.toml), or add "record:PLUGIN" to its `to`.';
  } catch {
    // The routes table reports an unreachable router.
  }
}

refresh();
setInterval(refresh, 5000);
