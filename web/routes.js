// The routes overview: polls the REST API and renders one row per route.
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
    const [routes, status] = await Promise.all([
      fetch('/v1/routes').then((r) => r.json()),
      fetch('/v1/status').then((r) => r.json()),
    ]);
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
        cell(live.state ?? 'ended', `state-${live.state}`),
        cell(live.source ?? ''),
        cell(r.config.to.join(', ')),
        cell((live.tracks ?? []).map((t) => `${t.codec} ${t.description}`).join('; ')),
        cell(String(live.reader_count ?? 0)),
        cell(kbps(live.bitrate_in_bps ?? 0)),
        cell(String(live.frames_dropped ?? 0)),
      );
      if (live.last_error) tr.title = live.last_error;
      return tr;
    }));
    configState.textContent = status.config_valid ? 'config ok' : 'config invalid';
    configState.className = `pill ${status.config_valid ? 'ok' : 'bad'}`;
    configError.hidden = status.config_valid;
    configError.textContent = status.config_error?.message ?? '';
  } catch (e) {
    configState.textContent = 'router unreachable';
    configState.className = 'pill bad';
  }
}

refresh();
setInterval(refresh, 2000);
