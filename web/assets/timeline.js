// The timeline: one lane per service on a time axis, a mark per event
// coloured by action class and shaped by outcome, gaps in the evidence as
// hatched bands (addGaps, once they are known). Dragging across the plot zooms to that span (onZoom).
import { s } from './dom.js';

const W = 1100, laneH = 56, left = 70, right = 20, top = 28, axisH = 34;

const ticks = [1e3, 5e3, 15e3, 60e3, 5 * 60e3, 15 * 60e3, 3600e3, 3 * 3600e3, 6 * 3600e3, 12 * 3600e3, 86400e3, 7 * 86400e3, 30 * 86400e3, 365 * 86400e3];

function tickStep(span) {
  for (const t of ticks) if (span / t <= 10) return t;
  return ticks[ticks.length - 1];
}

function label(ms, step) {
  const d = new Date(ms).toISOString();
  if (step < 60e3) return d.slice(11, 19);
  if (step < 86400e3) return d.slice(11, 16);
  return d.slice(0, 10);
}

export function drawTimeline(data, { onZoom, href }) {
  const from = Date.parse(data.from), to = Date.parse(data.to);
  const lanes = data.services;
  const H = top + lanes.length * laneH + axisH;
  const x = t => left + (t - from) / (to - from) * (W - left - right);
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'timeline', role: 'group', 'aria-label': `Timeline from ${data.from} to ${data.to}: ${data.events.length} events in ${lanes.length} service lanes` });
  svg.append(s('defs', {}, s('pattern', { id: 'hatch', width: 8, height: 8, patternUnits: 'userSpaceOnUse', patternTransform: 'rotate(45)' },
    s('rect', { width: 8, height: 8, class: 'hatch-bg' }), s('line', { x1: 0, y1: 0, x2: 0, y2: 8, class: 'hatch-line' }))));
  // lanes
  lanes.forEach((svc, i) => {
    const y = top + i * laneH;
    svg.append(s('rect', { x: left, y, width: W - left - right, height: laneH, class: i % 2 ? 'lane odd' : 'lane' }));
    svg.append(s('text', { x: left - 8, y: y + laneH / 2 + 5, 'text-anchor': 'end', class: 'lane-label' }, svc.toUpperCase()));
  });
  // axis
  const step = tickStep(to - from);
  const axisY = top + lanes.length * laneH;
  for (let t = Math.ceil(from / step) * step; t <= to; t += step) {
    const tx = x(t);
    svg.append(s('line', { x1: tx, x2: tx, y1: top, y2: axisY + 5, class: 'tick' }));
    svg.append(s('text', { x: tx, y: axisY + 20, 'text-anchor': 'middle', class: 'tick-label' }, label(t, step)));
  }
  svg.append(s('text', { x: W - right, y: top - 10, 'text-anchor': 'end', class: 'tick-label' }, 'UTC'));
  // gaps: drawn under the marks when they arrive (addGaps)
  const gapLayer = s('g', { class: 'gaps' });
  svg.append(gapLayer);
  svg.addGaps = gaps => {
    for (const g of gaps) {
      const gx = Math.max(x(Date.parse(g.from)), left), gx2 = Math.min(x(Date.parse(g.to)), W - right);
      if (gx2 <= gx) continue;
      const li = lanes.indexOf(g.service);
      const y = li >= 0 ? top + li * laneH : top, h = li >= 0 ? laneH : lanes.length * laneH;
      gapLayer.append(s('rect', { x: gx, y, width: Math.max(gx2 - gx, 2), height: h, class: 'gap gap-' + g.kind, fill: 'url(#hatch)', 'data-kind': g.kind },
        s('title', {}, `${g.kind.replace('_', ' ')}: ${g.detail} (${g.from} – ${g.to})`)));
    }
  };
  // marks
  const marks = s('g', { class: 'marks' });
  for (const e of data.events) {
    const li = lanes.indexOf(e.service);
    if (li < 0) continue;
    const cx = x(Date.parse(e.time));
    const cy = top + li * laneH + laneH / 2 + ((hash(e.event_id) % 5) - 2) * 6;
    const cls = `mark class-${e.class} outcome-${e.outcome}`;
    const shape = e.outcome === 'failure'
      ? s('polygon', { points: `${cx},${cy - 7} ${cx + 7},${cy} ${cx},${cy + 7} ${cx - 7},${cy}`, class: cls })
      : s('circle', { cx, cy, r: 6, class: cls });
    const a = s('a', { href: href(e), class: 'mark-link', 'data-action': e.action, 'aria-label': `${e.time} ${e.service} ${e.action} (${e.class.replace('_', ' ')}) by ${e.actor}: ${e.outcome}` },
      shape, s('title', {}, `${e.time}\n${e.action}\n${e.actor} from ${e.source_ip || '?'}\n${e.class}, ${e.outcome}`));
    marks.append(a);
  }
  svg.append(marks);
  // drag to zoom
  const sel = s('rect', { x: 0, y: top, width: 0, height: lanes.length * laneH, class: 'zoom-sel', visibility: 'hidden' });
  svg.append(sel);
  let start = null;
  const toSvgX = ev => {
    const r = svg.getBoundingClientRect();
    return (ev.clientX - r.left) * W / r.width;
  };
  svg.addEventListener('pointerdown', ev => {
    if (ev.target.closest('a')) return;
    const px = toSvgX(ev);
    if (px < left || px > W - right) return;
    start = px;
    sel.setAttribute('x', px); sel.setAttribute('width', 0); sel.setAttribute('visibility', 'visible');
    svg.setPointerCapture(ev.pointerId);
  });
  svg.addEventListener('pointermove', ev => {
    if (start === null) return;
    const px = Math.min(Math.max(toSvgX(ev), left), W - right);
    sel.setAttribute('x', Math.min(px, start)); sel.setAttribute('width', Math.abs(px - start));
  });
  svg.addEventListener('pointerup', ev => {
    if (start === null) return;
    const px = Math.min(Math.max(toSvgX(ev), left), W - right);
    const a = Math.min(px, start), b = Math.max(px, start);
    start = null;
    sel.setAttribute('visibility', 'hidden');
    if (b - a < 4) return;
    const t = v => new Date(from + (v - left) / (W - left - right) * (to - from));
    onZoom(t(a), t(b));
  });
  return svg;
}

function hash(str) {
  let h = 0;
  for (let i = 0; i < str.length; i++) h = (h * 31 + str.charCodeAt(i)) >>> 0;
  return h;
}
