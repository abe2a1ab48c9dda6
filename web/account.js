// My cameras (account.html): log in or register, then add, rename and delete cameras, copy their key and URLs,
// see their live status and sessions, play them (WHEP with the login) and publish from this device (WHIP with the
// camera's key). Everything goes through /api/auth and /api/cameras; the login is kept in localStorage.
import { whepPlay } from '/webrtc-client.js';

const $ = (id) => document.getElementById(id);
const errorBox = $('error');
let token = localStorage.getItem('sluice-token');
/** Playing tiles by camera id, kept across refreshes. */
const players = new Map();

function showError(e) {
  errorBox.textContent = e ? e.message ?? String(e) : '';
  errorBox.hidden = !e;
}

/** Calls the accounts API; throws with the router's message. A login that expired signs out. */
async function api(method, path, body) {
  const headers = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const reply = res.status === 204 ? null : await res.json().catch(() => null);
  if (res.status === 401 && token && path !== '/api/auth/login') signOut();
  if (!res.ok) {
    const e = new Error(reply?.error?.message ?? `the router answered ${res.status}`);
    e.status = res.status;
    e.code = reply?.error?.code;
    throw e;
  }
  return reply;
}

function signOut() {
  token = null;
  localStorage.removeItem('sluice-token');
  players.forEach((p) => p.session?.stop());
  players.clear();
  render();
}

async function logIn(username, password) {
  const { token: t, user } = await api('POST', '/api/auth/login', { username, password });
  token = t;
  localStorage.setItem('sluice-token', t);
  $('who').textContent = user.admin ? `${user.username} (admin)` : user.username;
  await render();
}

$('login').addEventListener('submit', async (event) => {
  event.preventDefault();
  const data = new FormData(event.target);
  try {
    showError(null);
    await logIn(data.get('username'), data.get('password'));
  } catch (e) {
    showError(e);
  }
});

$('register').addEventListener('submit', async (event) => {
  event.preventDefault();
  const data = Object.fromEntries(new FormData(event.target));
  try {
    showError(null);
    await api('POST', '/api/auth/register', data);
    await logIn(data.username, data.password);
  } catch (e) {
    showError(e);
  }
});

$('logout').addEventListener('click', signOut);

// Admins add people (with registration = "admin" nobody else can): the new account, not a login as it.
$('add-person').addEventListener('submit', async (event) => {
  event.preventDefault();
  const data = Object.fromEntries(new FormData(event.target));
  try {
    showError(null);
    const { user } = await api('POST', '/api/auth/register', data);
    event.target.reset();
    $('person-added').textContent = `added ${user.username}`;
  } catch (e) {
    showError(e);
  }
});

$('add-camera').addEventListener('submit', async (event) => {
  event.preventDefault();
  const data = Object.fromEntries(new FormData(event.target));
  if (!data.resolution) delete data.resolution;
  try {
    showError(null);
    await api('POST', '/api/cameras', data);
    event.target.reset();
    await refresh();
  } catch (e) {
    showError(e);
  }
});

function button(text, onClick, title) {
  const b = document.createElement('button');
  b.textContent = text;
  if (title) b.title = title;
  b.addEventListener('click', async () => {
    try {
      showError(null);
      await onClick();
    } catch (e) {
      showError(e);
    }
  });
  return b;
}

/** A row of the camera's details: a name, a value shown as code, and a Copy button. */
function detail(dl, name, value) {
  if (!value) return;
  const dt = document.createElement('dt');
  dt.textContent = name;
  const dd = document.createElement('dd');
  const code = document.createElement('code');
  code.textContent = value;
  dd.append(code);
  const copy = document.createElement('dd');
  copy.append(button('Copy', () => navigator.clipboard.writeText(value), `Copy the ${name}`));
  dl.append(dt, dd, copy);
}

function player(camera) {
  let p = players.get(camera.id);
  if (!p) {
    const figure = document.createElement('figure');
    figure.className = 'tile';
    const video = document.createElement('video');
    video.muted = true;
    video.playsInline = true;
    video.autoplay = true;
    figure.append(video);
    p = { figure, video, session: null };
    players.set(camera.id, p);
  }
  return p;
}

function card(camera, urls) {
  const el = document.createElement('article');
  el.className = 'camera';
  el.dataset.camera = camera.id;
  const title = document.createElement('h3');
  const name = document.createElement('span');
  name.textContent = camera.name;
  const status = document.createElement('span');
  status.className = `pill ${camera.status}`;
  status.textContent = camera.status;
  title.append(name, status);
  const dl = document.createElement('dl');
  detail(dl, 'stream key', camera.stream_key);
  detail(dl, 'RTMP URL', urls.rtmp);
  detail(dl, 'WHIP URL', urls.whip);
  detail(dl, 'WHEP URL', urls.whep);
  detail(dl, 'RTSP URL', urls.rtsp);
  detail(dl, 'HLS URL', urls.hls);
  const p = player(camera);
  const actions = document.createElement('p');
  actions.append(
    button(p.session ? 'Stop' : 'Play', async () => {
      if (p.session) {
        p.session.stop();
        p.session = null;
      } else {
        p.session = await whepPlay(`/${camera.route}/whep`, p.video, { token });
      }
      await refresh();
    }),
    ' ',
  );
  if (urls.whip) {
    const publish = document.createElement('a');
    publish.href = `/${camera.route}/publish?token=${encodeURIComponent(camera.stream_key)}`;
    publish.textContent = 'Publish from this device';
    publish.target = '_blank';
    actions.append(publish, ' ');
  }
  actions.append(
    button('Rename', async () => {
      const name = prompt('New name', camera.name);
      if (name) await api('PUT', `/api/cameras/${camera.id}`, { name });
      await refresh();
    }),
    ' ',
    button('New key', async () => {
      if (!confirm('A new stream key: publishers using the old one cannot reconnect. Go on?')) return;
      await api('POST', `/api/cameras/${camera.id}/key`);
      await refresh();
    }),
    ' ',
    button('Delete', async () => {
      if (!confirm(`Delete camera "${camera.name}" and its sessions?`)) return;
      players.get(camera.id)?.session?.stop();
      players.delete(camera.id);
      await api('DELETE', `/api/cameras/${camera.id}`);
      await refresh();
    }),
  );
  const sessions = document.createElement('details');
  const summary = document.createElement('summary');
  summary.textContent = 'Sessions';
  const list = document.createElement('ol');
  list.className = 'sessions';
  sessions.append(summary, list);
  sessions.addEventListener('toggle', async () => {
    if (!sessions.open) return;
    const rows = await api('GET', `/api/cameras/${camera.id}/sessions`);
    list.replaceChildren(...rows.map((s) => {
      const li = document.createElement('li');
      li.textContent = `${s.start_time} → ${s.end_time ?? 'now'}: ${s.status}`;
      return li;
    }));
    if (!rows.length) list.textContent = 'none yet';
  });
  el.append(title, p.figure, actions, dl, sessions);
  return el;
}

let refreshing = false;
async function refresh() {
  if (!token || refreshing) return;
  refreshing = true;
  try {
    const cameras = await api('GET', '/api/cameras');
    const urls = await Promise.all(cameras.map((c) => api('GET', `/api/cameras/${c.id}/stream`).catch(() => ({}))));
    // Details that are open stay open: only the cards of cameras that changed are rebuilt.
    const container = $('cameras');
    const cards = cameras.map((c, i) => {
      const key = JSON.stringify([c, urls[i], Boolean(players.get(c.id)?.session)]);
      const existing = container.querySelector(`[data-camera="${c.id}"]`);
      if (existing && existing.dataset.key === key) return existing;
      const el = card(c, urls[i]);
      el.dataset.key = key;
      return el;
    });
    container.replaceChildren(...cards);
    if (!cameras.length) container.textContent = 'No cameras yet: add one above.';
  } catch (e) {
    if (e.code === 'accounts_off') $('off').hidden = false;
    else showError(e);
  } finally {
    refreshing = false;
  }
}

async function render() {
  $('signed-out').hidden = Boolean(token);
  $('signed-in').hidden = !token;
  $('logout').hidden = !token;
  if (!token) {
    $('who').textContent = 'signed out';
    return;
  }
  try {
    const { user } = await api('GET', '/api/auth/me');
    $('who').textContent = user.admin ? `${user.username} (admin)` : user.username;
    $('add-person').hidden = !user.admin;
  } catch (e) {
    if (e.code === 'accounts_off') $('off').hidden = false;
    return;
  }
  await refresh();
}

render();
// Live status: the list follows cameras going live and stopping.
setInterval(refresh, 2000);
window.addEventListener('pagehide', () => players.forEach((p) => p.session?.stop()));
