// DOM and API helpers. Every value from the store reaches the page as
// text (textContent or an attribute), never as markup.

export function el(tag, attrs = {}, ...children) {
  const svg = ['svg', 'g', 'rect', 'line', 'text', 'circle', 'path', 'title', 'a', 'defs', 'pattern', 'polygon'].includes(tag) && attrs.svg;
  const n = svg ? document.createElementNS('http://www.w3.org/2000/svg', tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'svg' || v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') n.addEventListener(k.slice(2), v);
    else if (k === 'text') n.textContent = v;
    else n.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    n.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return n;
}

export function s(tag, attrs = {}, ...children) {
  return el(tag, { ...attrs, svg: true }, ...children);
}

const tokenKey = 'custody-token';

export class APIError extends Error {
  constructor(status, message, body = {}) { super(message); this.status = status; this.body = body; }
}

// api fetches a JSON (or, with raw, a Response) from the server, with the
// bearer token the user signed in with, if any.
export async function api(path, { method = 'GET', body, raw = false } = {}) {
  const headers = { Accept: 'application/json' };
  const tok = sessionStorage.getItem(tokenKey);
  if (tok) headers.Authorization = 'Bearer ' + tok;
  if (method !== 'GET') {
    headers['X-Custody-Request'] = '1';
    if (body !== undefined) headers['Content-Type'] = 'application/json';
  }
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: 'same-origin' });
  if (!res.ok) {
    let msg = res.statusText;
    let body = {};
    try { body = await res.json(); msg = body.error || msg; } catch { /* not JSON */ }
    throw new APIError(res.status, msg, body);
  }
  return raw ? res : res.json();
}

export function setToken(t) {
  if (t) sessionStorage.setItem(tokenKey, t); else sessionStorage.removeItem(tokenKey);
}

export function hasToken() { return !!sessionStorage.getItem(tokenKey); }

// download saves a Response's body under the name the server gave.
export async function download(res, fallback) {
  const blob = await res.blob();
  const cd = res.headers.get('Content-Disposition') || '';
  const m = /filename="([^"]+)"/.exec(cd);
  const a = el('a', { href: URL.createObjectURL(blob), download: m ? m[1] : fallback });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 60000);
  return { name: m ? m[1] : fallback, bytes: blob.size };
}

// query builds a path with a query string from an object, leaving out
// empty values; array values repeat the parameter.
export function query(path, params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (Array.isArray(v)) v.filter(x => x !== '').forEach(x => u.append(k, x));
    else if (v !== undefined && v !== null && v !== '') u.append(k, v);
  }
  const qs = u.toString();
  return qs ? path + '?' + qs : path;
}

export function errorBox(err) {
  return el('p', { class: 'error', role: 'alert', text: err.message || String(err) });
}

export function table(columns, rows, { caption, cell, cellClass } = {}) {
  return el('div', { class: 'table-wrap' },
    el('table', {},
      caption ? el('caption', { text: caption }) : null,
      el('thead', {}, el('tr', {}, columns.map(c => el('th', { scope: 'col', text: c })))),
      el('tbody', {}, rows.map((r, i) => el('tr', {}, r.map((v, j) => el('td', { class: cellClass ? cellClass(j) : undefined }, cell ? cell(v, j, i) : String(v))))))));
}

export function field(label, input, help) {
  const id = input.id || ('f-' + Math.random().toString(36).slice(2));
  input.id = id;
  return el('div', { class: 'field' }, el('label', { for: id, text: label }), input, help ? el('small', { text: help }) : null);
}
