// Adding, changing and removing routes from the home page through the route API (`/v1/routes`), which writes
// them into routes.toml. Each change names the version of the file it was made against (`If-Match`), so an edit
// made meanwhile (by hand or in another tab) is never overwritten: the router answers 409 and the page says so.

const form = document.getElementById('route-form');
const editor = document.getElementById('route-editor');
const summary = editor.querySelector('summary');
const submit = form.querySelector('button[type="submit"]');
const cancel = document.getElementById('route-cancel');
const errorBox = document.getElementById('route-form-error');

/** The routes file's ETag as of the last list read or change. */
let etag = null;
/** Counts the changes made here: a list read that began before one answers for an older file. */
let changes = 0;
/** The route being edited (its name, the values the form was filled with and the file's ETag then), or null. */
let editing = null;
let changed = () => {};

/** Call before reading the list; pass what it returns to `noteRoutes`. */
export function beginRead() {
  return changes;
}

/** Remembers the ETag a list read begun at `read` answered; `onChange` runs after every change made here. */
export function noteRoutes(read, value, onChange) {
  if (read === changes && value) etag = value;
  changed = onChange;
}

/** How a route's `from` is written in routes.toml, from the API's view of it. */
function fromText(route) {
  const from = route.config.from;
  if (from.kind === 'publish') return from.protocol;
  if (from.kind === 'pull') return route.live?.source ?? from.url;
  return from.kind;
}

function values() {
  const data = new FormData(form);
  const maxReaders = data.get('max_readers');
  return {
    name: data.get('name').trim(),
    from: data.get('from').trim(),
    to: data.get('to').split(',').map((s) => s.trim()).filter(Boolean),
    max_readers: maxReaders === '' ? null : Number(maxReaders),
    on_demand: data.get('on_demand') === 'on' ? true : null,
  };
}

function fill(v) {
  form.elements.name.value = v.name;
  form.elements.from.value = v.from;
  form.elements.to.value = v.to.join(', ');
  form.elements.max_readers.value = v.max_readers ?? '';
  form.elements.on_demand.checked = v.on_demand === true;
}

function reset() {
  editing = null;
  form.reset();
  submit.textContent = 'Add';
  summary.textContent = 'Add a route';
  cancel.hidden = true;
  errorBox.hidden = true;
}

/** Sends a change made against the file as it was at `version` (its ETag). */
async function send(method, url, body, version = etag) {
  const headers = { 'content-type': 'application/json' };
  if (version) headers['if-match'] = version;
  changes += 1;
  const res = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const reply = await res.json().catch(() => ({}));
  if (res.headers.get('etag')) etag = res.headers.get('etag');
  if (!res.ok) {
    const message = reply.error?.message ?? `the router answered ${res.status}`;
    throw new Error(res.status === 409 ? `${message}\n(the list below is current now: check it and try again)` : message);
  }
  return reply;
}

function showError(e) {
  errorBox.textContent = e.message;
  errorBox.hidden = false;
  changed();
}

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  const v = values();
  try {
    if (editing) {
      // Only what was changed: a pulled source shows its password hidden, and must not be written back so.
      const set = {};
      for (const key of Object.keys(v)) {
        if (JSON.stringify(v[key]) !== JSON.stringify(editing.values[key])) set[key] = v[key];
      }
      if ([set.from, ...(set.to ?? [])].some((x) => typeof x === 'string' && x.includes('***'))) {
        throw new Error('a value still shows *** where a password or key is hidden: edit it in routes.toml, or type it in full');
      }
      // Against the file as it was when the form was filled: a change made since is not overwritten.
      const url = `/v1/routes/${encodeURIComponent(editing.name)}`;
      if (Object.keys(set).length) await send('PATCH', url, set, editing.etag);
    } else {
      const route = Object.fromEntries(Object.entries(v).filter(([, value]) => value !== null));
      if (!route.to.length) delete route.to;
      await send('POST', '/v1/routes', route);
    }
    reset();
    editor.open = false;
    changed();
  } catch (e) {
    showError(e);
  }
});

cancel.addEventListener('click', () => {
  reset();
  editor.open = false;
});

/** The cell with a route's Edit and Delete buttons. */
export function editCell(route) {
  const td = document.createElement('td');
  const edit = document.createElement('button');
  edit.textContent = 'Edit';
  edit.title = `Change ${route.name} in routes.toml`;
  edit.addEventListener('click', () => {
    reset();
    const v = {
      name: route.name,
      from: fromText(route),
      to: route.config.to,
      max_readers: route.config.max_readers ?? null,
      on_demand: route.config.on_demand ? true : null,
    };
    editing = { name: route.name, values: v, etag };
    fill(v);
    submit.textContent = 'Save';
    summary.textContent = `Edit ${route.name}`;
    cancel.hidden = false;
    editor.open = true;
    form.elements.name.focus();
  });
  const remove = document.createElement('button');
  remove.textContent = 'Delete';
  remove.title = `Remove ${route.name} from routes.toml`;
  remove.addEventListener('click', async () => {
    if (!confirm(`Remove route "${route.name}" from routes.toml? Its readers are disconnected.`)) return;
    try {
      await send('DELETE', `/v1/routes/${encodeURIComponent(route.name)}`);
      changed();
    } catch (e) {
      editor.open = true;
      showError(e);
    }
  });
  // Routes made from a template live only while used: change the template in routes.toml instead.
  if (route.template) {
    td.textContent = `from ${route.template}`;
  } else {
    td.append(edit, ' ', remove);
  }
  return td;
}
