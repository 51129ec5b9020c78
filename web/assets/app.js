// The investigation page: a router over the views, each reading its state
// from the URL (so every view is a shareable link) and the API.
import { el, api, APIError, setToken, hasToken, download, query, errorBox, table, field } from './dom.js';
import { drawTimeline } from './timeline.js';
import { checkEvent, b64ToBytes } from './proof.js';

const main = document.getElementById('main');
let meta = null;

const views = {
  '/': searchView, '/search': searchView, '/timeline': timelineView, '/event': eventView,
  '/queries': queriesView, '/integrity': integrityView, '/export': exportView, '/collector': collectorView,
};

function go(path) {
  history.pushState(null, '', path);
  render();
}

document.addEventListener('click', ev => {
  const a = ev.target.closest('a');
  if (!a || a.target || a.hasAttribute('download') || ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.button !== 0) return;
  const u = new URL(a.href, location.href);
  if (u.origin !== location.origin || u.pathname.startsWith('/api/') || u.pathname.startsWith('/assets/') || !(u.pathname in views)) return;
  ev.preventDefault();
  go(u.pathname + u.search);
});
window.addEventListener('popstate', render);

async function render() {
  const view = views[location.pathname] || searchView;
  for (const a of document.querySelectorAll('nav a')) {
    if (a.pathname === location.pathname || (location.pathname === '/' && a.pathname === '/search')) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  main.replaceChildren(el('p', { class: 'loading', text: 'Loading…' }));
  try {
    if (!meta) {
      meta = await api('/api/meta');
      document.getElementById('nav-collector').hidden = !meta.collector;
      if (meta.user) showUser(meta.user);
    }
    const params = new URLSearchParams(location.search);
    await view(params);
  } catch (err) {
    if (err instanceof APIError && err.status === 401) return signIn(err.body);
    main.replaceChildren(errorBox(err));
  }
  main.setAttribute('aria-busy', 'false');
}

// signInURL is the server's Entra ID sign-in, returning to this view.
function signInURL(start) {
  return start + '?next=' + encodeURIComponent(location.pathname + location.search);
}

// showUser names the signed-in user beside a sign-out button (a plain
// form: the server clears the session cookie).
function showUser(user) {
  const who = document.getElementById('who');
  who.replaceChildren(el('span', { text: user.name || user.username || 'signed in' }), ' ',
    el('form', { method: 'post', action: '/auth/logout', class: 'signout' }, el('button', { type: 'submit', text: 'Sign out' })));
}

function signIn(body = {}) {
  meta = null;
  // Entra ID sign-in only: off to Microsoft and back to this view.
  if (body.sign_in && !body.bearer) {
    location.assign(signInURL(body.sign_in));
    return;
  }
  const input = el('input', { type: 'password', autocomplete: 'off', required: true });
  const form = el('form', { class: 'card' },
    el('h1', { text: 'Sign in' }),
    body.sign_in ? el('p', {}, el('a', { href: signInURL(body.sign_in), text: 'Sign in with Microsoft Entra ID' }), ', or with a token:') : '',
    el('p', { text: 'This server requires a bearer token. It is kept in this tab only (session storage).' }),
    field('Token', input),
    el('button', { type: 'submit', text: 'Sign in' }));
  form.addEventListener('submit', ev => {
    ev.preventDefault();
    setToken(input.value.trim());
    render();
  });
  main.replaceChildren(form);
  input.focus();
  const who = document.getElementById('who');
  who.replaceChildren();
}

function heading(text) {
  document.title = text + ' · Custody';
  return el('h1', { text });
}

// ---- Search

const searchFields = ['from', 'to', 'service', 'actor', 'resource', 'action', 'class', 'outcome', 'ip', 'tag'];

function select(name, options, value, { multiple = false, any = 'any' } = {}) {
  const sel = el('select', { name, multiple });
  if (!multiple) sel.append(el('option', { value: '', text: any }));
  const values = Array.isArray(value) ? value : [value];
  for (const o of options) sel.append(el('option', { value: o, text: o, selected: values.includes(o) }));
  return sel;
}

function formParams(form) {
  const out = {};
  for (const [k, v] of new FormData(form)) {
    if (v === '') continue;
    if (k in out) out[k] = [].concat(out[k], v); else out[k] = v;
  }
  return out;
}

function eventHref(e) { return query('/event', { chain: e.chain, seq: e.seq }); }

async function searchView(params) {
  const v = k => params.getAll(k);
  const form = el('form', { class: 'filters', 'aria-label': 'Search filters' },
    field('From (UTC)', el('input', { name: 'from', value: params.get('from') || '', placeholder: '2025-06-12T00:00:00Z' }), 'default: 7 days before To'),
    field('To (UTC)', el('input', { name: 'to', value: params.get('to') || '', placeholder: 'now' })),
    field('Service', select('service', meta.services, v('service'))),
    field('Actor', el('input', { name: 'actor', value: params.get('actor') || '', placeholder: 'name, UPN or object id' })),
    field('Resource', el('input', { name: 'resource', value: params.get('resource') || '', placeholder: 'ARM id or name' })),
    field('Action', el('input', { name: 'action', value: params.get('action') || '', placeholder: 'k8s:pods/exec:create' })),
    field('Action class', select('class', meta.classes, v('class'))),
    field('Outcome', select('outcome', meta.outcomes, v('outcome'))),
    field('Source address', el('input', { name: 'ip', value: params.get('ip') || '', placeholder: '203.0.113.77 or 10.0.0.0/8' })),
    field('Tag', select('tag', meta.tags, v('tag'))),
    el('div', { class: 'actions' }, el('button', { type: 'submit', text: 'Search' }), el('a', { href: '/search', text: 'Clear' })));
  form.addEventListener('submit', ev => { ev.preventDefault(); go(query('/search', formParams(form))); });
  const out = el('section', { 'aria-live': 'polite', id: 'results' });
  main.replaceChildren(heading('Search events'), form, out);
  const p = {};
  for (const k of [...searchFields, 'after', 'order']) { const all = params.getAll(k); if (all.length) p[k] = all.length > 1 ? all : all[0]; }
  const res = await api(query('/api/search', p));
  const rows = res.events.map(e => [e, e.time, e.service, e.actor, e.action, e.class, e.outcome, e.resource, e.source_ip, e.delivered_via]);
  const nextParams = { ...p, after: res.next };
  out.replaceChildren(
    el('p', { class: 'summary', text: `${res.events.length} event${res.events.length === 1 ? '' : 's'}${res.next ? ' (more on the next page)' : ''}, ${res.from} – ${res.to}, newest first · ${res.elapsed_ms} ms` }),
    res.events.length ? table(['', 'time', 'service', 'actor', 'action', 'class', 'outcome', 'resource', 'source', 'delivered via'], rows, {
      caption: 'Events',
      cell: (val, j, i) => {
        const e = res.events[i];
        if (j === 0) return el('a', { href: eventHref(e), 'aria-label': `Event ${e.event_id}`, text: 'open' });
        if (j === 3 && val) return el('a', { href: query('/timeline', { actor: val }), text: val, title: 'Timeline of this principal' });
        if (j === 5) return el('span', { class: 'badge class-' + val, text: val });
        if (j === 6) return el('span', { class: 'badge outcome-' + val, text: val });
        return String(val);
      },
    }) : el('p', { text: 'No events match.' }),
    el('nav', { class: 'pager', 'aria-label': 'Pages' },
      p.after ? el('a', { href: query('/search', { ...p, after: undefined }), text: '⟨ First page' }) : null,
      res.next ? el('a', { href: query('/search', nextParams), rel: 'next', text: 'Next page ⟩' }) : null));
}

// ---- Timeline

const classOrder = ['read', 'write', 'delete', 'exec', 'login', 'credential_access', 'permission_change', 'config_change', 'other'];

async function timelineView(params) {
  const kind = params.get('resource') ? 'resource' : 'actor';
  const subject = params.get(kind) || '';
  const form = el('form', { class: 'filters', 'aria-label': 'Timeline subject' },
    field('Principal', el('input', { name: 'actor', value: params.get('actor') || '', placeholder: 'dana.dev@contoso.com' })),
    field('or resource', el('input', { name: 'resource', value: params.get('resource') || '', placeholder: 'ARM id or name' })),
    field('From (UTC)', el('input', { name: 'from', value: params.get('from') || '', placeholder: 'whole history' })),
    field('To (UTC)', el('input', { name: 'to', value: params.get('to') || '' })),
    el('div', { class: 'actions' }, el('button', { type: 'submit', text: 'Draw' })));
  form.addEventListener('submit', ev => { ev.preventDefault(); go(query('/timeline', formParams(form))); });
  main.replaceChildren(heading(subject ? `Timeline of ${subject}` : 'Timeline'), form);
  if (!subject) {
    main.append(el('p', { text: 'Name a principal (user, UPN, Kubernetes user, Entra object id) or a resource.' }));
    return;
  }
  const p = { [kind]: subject, from: params.get('from'), to: params.get('to') };
  const data = await api(query('/api/timeline', p));
  const zoom = (a, b) => go(query('/timeline', { [kind]: subject, from: a.toISOString(), to: b.toISOString() }));
  const span = Date.parse(data.to) - Date.parse(data.from);
  const mid = Date.parse(data.from) + span / 2;
  const zoomBy = f => zoom(new Date(mid - span * f / 2), new Date(mid + span * f / 2));
  const legend = el('ul', { class: 'legend', 'aria-label': 'Legend' },
    classOrder.map(c => el('li', {}, el('span', { class: 'swatch class-' + c, 'aria-hidden': 'true' }), c.replace('_', ' '))),
    el('li', {}, el('span', { class: 'swatch diamond', 'aria-hidden': 'true' }), 'failure (diamond)'),
    el('li', {}, el('span', { class: 'swatch hatch', 'aria-hidden': 'true' }), 'gap in the evidence'));
  const chart = drawTimeline(data, { onZoom: zoom, href: eventHref });
  const gapBox = el('section', { id: 'gaps', 'aria-live': 'polite' }, el('p', { class: 'summary', text: 'Looking for gaps in the evidence…' }));
  main.append(
    el('p', { class: 'summary', text: `${data.events.length} of ${data.total} events, ${data.from} – ${data.to}${data.truncated ? ' (first ' + data.events.length + ' drawn: zoom in for the rest)' : ''}. Drag across the chart to zoom.` }),
    el('div', { class: 'actions' },
      el('button', { type: 'button', text: 'Zoom in', onclick: () => zoomBy(0.5) }),
      el('button', { type: 'button', text: 'Zoom out', onclick: () => zoomBy(2) }),
      el('a', { href: query('/timeline', { [kind]: subject }), text: 'Whole history' }),
      el('a', { href: query('/search', { [kind]: subject, from: data.from, to: data.to, order: 'asc' }), text: 'As a list' })),
    el('figure', {}, chart, el('figcaption', {}, legend)), gapBox);
  // Gaps read every event of the window, whoever did it: they come after
  // the marks.
  api(query('/api/gaps', { from: data.from, to: data.to })).then(g => {
    chart.addGaps(g.gaps);
    gapBox.dataset.done = 'true';
    gapBox.replaceChildren(...(g.gaps.length ? [el('h2', { text: 'Gaps in the evidence' }),
      table(['kind', 'service', 'from', 'to', 'what'], g.gaps.map(x => [x.kind.replace('_', ' '), x.service || 'all', x.from, x.to, x.detail]), { caption: 'Gaps' })]
      : [el('p', { class: 'summary', text: 'No gaps in the evidence found in this window.' })]));
  }).catch(err => { gapBox.dataset.done = 'true'; gapBox.replaceChildren(errorBox(err)); });
  main.append(el('h2', { text: 'Events' }),
    table(['time', 'service', 'action', 'class', 'outcome', 'resource', 'source', 'delivered via'], data.events.map(e => [e.time, e.service, e.action, e.class, e.outcome, e.resource, e.source_ip, e.delivered_via]), {
      caption: 'Events on the timeline',
      cell: (val, j, i) => j === 0 ? el('a', { href: eventHref(data.events[i]), text: val }) : String(val),
    }));
}

// ---- Event

async function eventView(params) {
  const ev = await api(query('/api/event', { chain: params.get('chain'), seq: params.get('seq'), id: params.get('id') }));
  const raw = b64ToBytes(ev.raw_base64);
  const rawText = new TextDecoder('utf-8', { fatal: false }).decode(raw);
  const pre = el('pre', { class: 'raw', id: 'raw', tabindex: '0', 'aria-label': 'Original record' }, rawText);
  let pretty = false;
  const toggle = el('button', { type: 'button', 'aria-pressed': 'false', text: 'Pretty-print' });
  toggle.addEventListener('click', () => {
    pretty = !pretty;
    toggle.setAttribute('aria-pressed', String(pretty));
    if (!pretty) { pre.textContent = rawText; return; }
    // Nested JSON carried as a string (the kube-audit event in an
    // archive record's properties.log) is expanded too.
    const expand = (k, v) => {
      if (typeof v === 'string' && /^\s*[{[]/.test(v)) { try { return JSON.parse(v); } catch { /* keep the string */ } }
      return v;
    };
    try { pre.textContent = JSON.stringify(JSON.parse(rawText, expand), null, 2); } catch { pre.textContent = rawText; toggle.textContent = 'Pretty-print (not JSON)'; }
  });
  const rawBlob = URL.createObjectURL(new Blob([raw]));
  const dl = el('dl', { class: 'fields' }, ev.fields.flatMap(f => [el('dt', { text: f.name }), el('dd', { text: f.value || '—' })]));
  const proofBox = el('section', { class: 'card', 'aria-labelledby': 'proof-h' }, el('h2', { id: 'proof-h', text: 'Integrity' }));
  const status = el('p', { id: 'proof-status', role: 'status', text: 'Checking the inclusion proof in this browser…' });
  proofBox.append(el('dl', { class: 'fields' },
    el('dt', { text: 'chain' }), el('dd', { text: ev.chain }),
    el('dt', { text: 'seq' }), el('dd', { text: String(ev.seq) }),
    el('dt', { text: 'hash' }), el('dd', { class: 'mono', text: ev.hash }),
    el('dt', { text: 'prev_hash' }), el('dd', { class: 'mono', text: ev.prev_hash }),
    el('dt', { text: 'content' }), el('dd', { id: 'hash-status', class: ev.hash_matches ? 'ok' : 'bad', text: ev.hash_matches ? 'the server recomputed the row hash from these fields and the raw record: it matches' : 'the row does not match its hash: ' + ev.computed_hash })));
  if (ev.checkpoint) {
    proofBox.append(el('h3', { text: `Signed checkpoint (tree size ${ev.checkpoint.size})` }), el('pre', { class: 'note', text: ev.checkpoint.note }),
      el('p', { text: `Inclusion proof: leaf ${ev.proof.leaf_index} of ${ev.proof.tree_size}, ${ev.proof.hashes.length} hashes.` }),
      el('ol', { class: 'mono proof' }, ev.proof.hashes.map(h => el('li', { text: h }))), status);
    checkEvent(ev).then(r => {
      status.dataset.ok = String(r.ok);
      status.className = r.ok ? 'ok' : 'bad';
      const sig = r.signature === true ? ' The checkpoint\u2019s Ed25519 signature verifies with the store\u2019s key.' :
        r.signature === false ? ' The checkpoint\u2019s signature does NOT verify with the store\u2019s key.' :
          ` This browser has no Ed25519; the server checked the signature: ${ev.checkpoint.signature_ok ? 'valid' : 'INVALID'}.`;
      status.dataset.signature = String(r.signature);
      status.textContent = (r.ok ? `Verified in this browser: the row\u2019s leaf and the proof hash to ${r.root}, the root of the signed checkpoint.` :
        `NOT verified: the proof hashes to ${r.root}, the checkpoint says ${r.checkpointRoot}.`) + sig;
    }).catch(err => { status.dataset.ok = 'false'; status.className = 'bad'; status.textContent = 'Proof check failed: ' + err.message; });
  } else {
    status.textContent = ev.proof_error;
    status.dataset.ok = 'false';
    proofBox.append(status);
  }
  const actor = ev.fields.find(f => f.name === 'actor_name').value;
  main.replaceChildren(heading(`Event ${ev.event_id}`),
    el('p', {}, actor ? el('a', { href: query('/timeline', { actor }), text: `Timeline of ${actor}` }) : null),
    el('section', { 'aria-labelledby': 'copies-h' }, el('h2', { id: 'copies-h', text: `Stored copies (${ev.copies.length})` }),
      el('p', { class: 'summary', text: 'The same event as each delivery path stored it: a row of its own chain, with its own inclusion proof.' }),
      table(['chain', 'seq', 'delivery', ''], ev.copies.map(c => [c.chain, c.seq, c.delivery, c]), {
        caption: 'Stored copies',
        cell: (val, j) => j === 3 ? (val.chain === ev.chain && val.seq === ev.seq ? el('span', { text: 'this copy' }) :
          el('a', { href: eventHref(val), text: 'proof' })) : String(val),
      })),
    el('div', { class: 'two' },
      el('section', { 'aria-labelledby': 'fields-h' }, el('h2', { id: 'fields-h', text: 'Normalized fields' }), dl),
      el('div', {}, proofBox,
        el('section', { 'aria-labelledby': 'raw-h' }, el('h2', { id: 'raw-h', text: `Original record (${ev.raw_bytes} bytes, as received)` }),
          el('p', { class: 'summary', text: 'Shown byte for byte; pretty-printing (nested JSON strings expanded) is a view, the bytes are what the hash covers.' }),
          el('div', { class: 'actions' }, toggle, el('a', { href: rawBlob, download: `${ev.event_id}.raw`, text: 'Download the bytes' })), pre))));
}

// ---- Canned queries

async function queriesView(params) {
  const list = await api('/api/queries');
  const name = params.get('name');
  const q = list.find(x => x.name === name);
  if (!q) {
    main.replaceChildren(heading('Canned forensic queries'),
      el('ul', { class: 'cards' }, list.map(x => el('li', { class: 'card' },
        el('h2', {}, el('a', { href: query('/queries', { name: x.name }), text: x.title })),
        el('p', { text: x.question }),
        x.mitre.length ? el('p', { class: 'mitre', text: 'MITRE ATT&CK: ' + x.mitre.join('; ') }) : null))));
    return;
  }
  const inputs = q.params.map(p => {
    const isInt = /^U?Int/.test(p.type);
    const inp = el('input', {
      name: 'p.' + p.name, value: params.get('p.' + p.name) ?? '', placeholder: p.default || '', required: p.required,
      type: isInt ? 'number' : 'text', min: p.min ?? undefined, max: p.max ?? undefined, step: isInt ? 1 : undefined,
    });
    return field(`${p.name} (${p.type}${p.kind ? ', ' + p.kind : ''})`, inp, p.help + (p.type.startsWith('Array') && !/comma/.test(p.help) ? ' · comma-separated' : ''));
  });
  const form = el('form', { class: 'filters', 'aria-label': 'Query parameters' },
    field('From (UTC)', el('input', { name: 'from', value: params.get('from') || '', placeholder: `default: ${q.window} back` })),
    field('To (UTC)', el('input', { name: 'to', value: params.get('to') || '', placeholder: 'now' })),
    inputs, el('div', { class: 'actions' }, el('button', { type: 'submit', text: 'Run' })));
  form.addEventListener('submit', ev => { ev.preventDefault(); go(query('/queries', { name: q.name, run: 1, ...formParams(form) })); });
  main.replaceChildren(heading(q.title), el('p', { class: 'question', text: q.question }), el('p', { text: q.why }),
    q.mitre.length ? el('p', { class: 'mitre', text: 'MITRE ATT&CK: ' + q.mitre.join('; ') }) : null,
    el('p', {}, el('a', { href: '/queries', text: '⟨ All queries' })), form);
  if (!params.has('run') && ![...params.keys()].some(k => k !== 'name')) return;
  const args = {};
  for (const [k, v] of params) if (k !== 'name' && k !== 'run') args[k] = v;
  const res = await api(query('/api/queries/' + encodeURIComponent(q.name), args));
  const csv = el('button', { type: 'button', text: 'Download CSV' });
  const csvStatus = el('span', { role: 'status' });
  csv.addEventListener('click', async () => {
    try {
      const r = await api(query('/api/queries/' + encodeURIComponent(q.name), { ...args, format: 'csv' }), { raw: true });
      const d = await download(r, q.name + '.csv');
      csvStatus.textContent = `saved ${d.name} (${d.bytes} bytes)`;
    } catch (err) { csvStatus.textContent = err.message; }
  });
  const evCol = res.columns.findIndex(c => c.name === 'event_id');
  main.append(el('section', { id: 'results', 'aria-live': 'polite' },
    el('p', { class: 'summary', text: `${res.rows.length} row${res.rows.length === 1 ? '' : 's'}${res.truncated ? ' (first 10000; the CSV has all)' : ''}, ${res.from} – ${res.to}` }),
    el('div', { class: 'actions' }, csv, csvStatus),
    table(res.columns.map(c => c.name), res.rows, {
      caption: q.title,
      cell: (val, j) => j === evCol && val ? el('a', { href: query('/event', { id: val }), text: val }) : val,
    })));
}

// ---- Integrity

function age(seconds) {
  if (seconds < 0) return `${-seconds} s in the future (check the clocks)`;
  if (seconds < 120) return `${seconds} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86400)} days`;
}

async function integrityView() {
  const st = await api('/api/integrity');
  const lv = st.last_verify;
  const button = el('button', { type: 'button', id: 'start-verify', text: 'Start a verify' });
  const progress = el('progress', { id: 'verify-progress', max: 1, value: 0, 'aria-label': 'Verify progress', hidden: true });
  const result = el('div', { id: 'verify-result', 'aria-live': 'polite' });
  button.addEventListener('click', async () => {
    button.disabled = true;
    result.replaceChildren(el('p', { text: 'Verifying…' }));
    try {
      const { id } = await api('/api/verify', { method: 'POST' });
      await pollVerify(id, progress, result);
    } catch (err) { result.replaceChildren(errorBox(err)); }
    button.disabled = false;
  });
  main.replaceChildren(heading('Integrity'),
    el('dl', { class: 'fields' },
      el('dt', { text: 'engine' }), el('dd', { text: `${st.engine}, database ${st.database}` }),
      el('dt', { text: 'chains' }), el('dd', { text: String(st.chains.length) }),
      el('dt', { text: 'last checkpoint' }), el('dd', { text: st.last_checkpoint ? `${st.last_checkpoint} (${st.last_checkpoint_age_seconds < 0 ? age(st.last_checkpoint_age_seconds) : age(st.last_checkpoint_age_seconds) + ' ago'})` : 'none' }),
      el('dt', { text: 'last verify' }), el('dd', { id: 'last-verify', 'aria-live': 'polite', class: lv ? (lv.result === 'ok' ? 'ok' : 'bad') : '', text: lv ? `${lv.result} at ${lv.at} by ${lv.actor} (${lv.source}) ${lv.detail}` : 'never' })),
    el('div', { class: 'actions' }, button, progress), result,
    el('h2', { text: 'Chains' }),
    table(['chain', 'events', 'head seq', 'head hash', 'last event', 'checkpoint size', 'checkpoint at', 'quarantined'],
      st.chains.map(c => [c.chain, c.events, c.head_seq, c.head_hash.slice(0, 16) + '…', c.last_event_time, c.checkpoint_size, c.checkpoint_at, c.quarantined]), {
        caption: 'Chains and their heads',
        cell: (v, j, i) => j === 5 && st.chains[i].checkpoint_size < st.chains[i].head_seq ? el('span', { class: 'warn', text: `${v} (behind)` }) : String(v),
        cellClass: j => j === 0 ? 'wide' : undefined,
      }));
  if (st.running_verify) pollVerify(st.running_verify, progress, result);
}

async function pollVerify(id, progress, result) {
  progress.hidden = false;
  for (;;) {
    const j = await api('/api/verify/' + encodeURIComponent(id));
    if (j.total) { progress.max = j.total; progress.value = j.done; }
    if (j.finished) {
      progress.hidden = true;
      if (j.error) { result.replaceChildren(el('p', { class: 'bad', 'data-ok': 'false', text: 'Verify stopped: ' + j.error })); return; }
      const r = j.report;
      const last = document.getElementById('last-verify');
      if (last) {
        last.textContent = `${j.ok ? 'ok' : 'failed'} at ${j.ended} by custody serve (this server) chains=${r.chains} rows=${r.rows} checkpoints=${r.checkpoints} findings=${r.finding_count}`;
        last.className = j.ok ? 'ok' : 'bad';
      }
      result.replaceChildren(
        el('p', { class: j.ok ? 'ok verdict' : 'bad verdict', 'data-ok': String(j.ok), text: `Verify ${j.ok ? 'passed' : 'FAILED'}: ${r.chains} chains, ${r.rows} rows, ${r.checkpoints} checkpoints, ${r.finding_count} finding${r.finding_count === 1 ? "" : "s"} in ${r.elapsed_ms} ms` }),
        r.findings.length ? table(['severity', 'kind', 'chain', 'seq', 'event', 'detail'], r.findings.map(f => [f.severity || 'error', f.kind, f.chain, f.seq ? (f.through ? `${f.seq}-${f.through}` : f.seq) : '', f.event_id || '', f.detail]), {
          caption: 'Findings', cellClass: j => j === 2 ? 'wide' : undefined,
          cell: (v, j) => j === 0 ? el('span', { class: v === 'error' ? 'bad' : v === 'warning' ? 'warn' : '', text: v }) : String(v),
        }) : null);
      return;
    }
    result.replaceChildren(el('p', { text: `Verifying… ${j.done} of ${j.total || '?'} rows` }));
    await new Promise(r => setTimeout(r, 400));
  }
}

// ---- Export

async function exportView(params) {
  main.replaceChildren(heading('Export evidence'));
  if (!meta.export) {
    main.append(el('p', { text: 'Exports are off on this server: it was started without the signing key (custody serve --export).' }));
    return;
  }
  const fmt = el('select', { name: 'format' }, meta.export_formats.map(f => el('option', { value: f, text: f, selected: f === (params.get('format') || 'jsonl') })));
  const form = el('form', { class: 'filters', 'aria-label': 'Export' },
    field('From (UTC)', el('input', { name: 'from', required: true, value: params.get('from') || '', placeholder: '2025-06-12T00:00:00Z' })),
    field('To (UTC)', el('input', { name: 'to', required: true, value: params.get('to') || '', placeholder: '2025-06-13T00:00:00Z' })),
    field('Format', fmt),
    field('Chain', el('input', { name: 'chain', value: params.get('chain') || '', placeholder: 'all chains' })),
    el('div', { class: 'actions' }, el('button', { type: 'submit', text: 'Export and download' })));
  const status = el('p', { id: 'export-status', role: 'status' });
  form.addEventListener('submit', async ev => {
    ev.preventDefault();
    const p = formParams(form);
    history.replaceState(null, '', query('/export', p));
    status.textContent = 'Exporting…';
    try {
      const res = await api('/api/export', { method: 'POST', body: { from: p.from, to: p.to, format: p.format, chain: p.chain || '' }, raw: true });
      const d = await download(res, 'custody-export.zip');
      status.textContent = `Downloaded ${d.name} (${d.bytes} bytes). Check it offline: custody verify-export <dir> --pubkey <key>.`;
      status.dataset.done = 'true';
    } catch (err) { status.textContent = 'Export failed: ' + err.message; }
  });
  main.append(el('p', { text: 'A signed bundle of every stored field of the selected events, their checkpoints and Merkle range proofs, as a zip. Auditors check it with custody verify-export and the public key.' }), form, status);
}

// ---- Collector

async function collectorView() {
  const c = await api('/api/collector');
  main.replaceChildren(heading('Collector'),
    table(['source', 'kind', 'running', 'messages', 'stored', 'skipped', 'quarantined', 'dropped', 'lag (events)'],
      c.sources.map(x => [x.name, x.kind, x.running ? 'yes' : 'no', x.messages, x.stored, x.skipped, x.quarantined, x.dropped,
        x.lag_error ? x.lag_error : Object.entries(x.lag || {}).map(([k, n]) => `${k}: ${n}`).join('; ') || '—']), { caption: 'Sources' }),
    el('h2', { text: 'Quarantine' }),
    c.quarantine.length ? table(['chain', 'reason', 'records'], c.quarantine.map(q => [q.chain, q.reason, q.count]), { caption: 'Quarantined records' }) : el('p', { text: 'Nothing quarantined.' }));
}

if (hasToken()) document.getElementById('who').textContent = '';
render();
