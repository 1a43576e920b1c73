// A small SVG line chart: history first, live points appended, the last `windowMs` shown. SVG so that the
// points are in the document (screen readers get a summary; tests can count them).
const NS = 'http://www.w3.org/2000/svg';

export class LineChart {
  constructor(container, { label, windowMs = 15 * 60_000, maxPoints = 2000 } = {}) {
    this.points = []; this.windowMs = windowMs; this.maxPoints = maxPoints;
    this.svg = document.createElementNS(NS, 'svg');
    this.svg.setAttribute('class', 'chart');
    this.svg.setAttribute('role', 'img');
    this.svg.setAttribute('viewBox', '0 0 800 220');
    this.svg.setAttribute('preserveAspectRatio', 'none');
    this.label = label;
    this.line = document.createElementNS(NS, 'polyline');
    this.lo = document.createElementNS(NS, 'text'); this.hi = document.createElementNS(NS, 'text');
    this.lo.setAttribute('x', 4); this.lo.setAttribute('y', 214); this.hi.setAttribute('x', 4); this.hi.setAttribute('y', 12);
    this.svg.append(this.line, this.lo, this.hi);
    container.replaceChildren(this.svg);
    this.draw();
  }

  set(points) { this.points = points.slice(-this.maxPoints); this.draw(); }

  add(t, v) {
    if (typeof v !== 'number' || !Number.isFinite(v)) return;
    this.points.push([t, v]);
    if (this.points.length > this.maxPoints) this.points.shift();
    this.draw();
  }

  draw() {
    const now = Date.now();
    const pts = this.points.filter(([t]) => t >= now - this.windowMs);
    this.svg.dataset.count = String(this.points.length);
    const last = this.points.at(-1);
    this.svg.setAttribute('aria-label', `${this.label}: ${this.points.length} points` +
      (last ? `, latest ${last[1]} at ${new Date(last[0]).toLocaleTimeString()}` : ', no data yet'));
    if (!pts.length) { this.line.setAttribute('points', ''); this.lo.textContent = ''; this.hi.textContent = 'no data yet'; return; }
    const vs = pts.map((p) => p[1]);
    let lo = Math.min(...vs), hi = Math.max(...vs);
    if (hi === lo) { hi += 1; lo -= 1; }
    // the time axis spans the points shown (at least a minute), not always the whole window: a device that
    // has just come online is a line, not a sliver at the right edge
    const span = Math.max(now - pts[0][0], 60_000);
    const t0 = now - span;
    const xy = pts.map(([t, v]) => `${((t - t0) / span * 800).toFixed(1)},${(210 - (v - lo) / (hi - lo) * 195).toFixed(1)}`);
    this.line.setAttribute('points', xy.join(' '));
    this.lo.textContent = lo.toFixed(2); this.hi.textContent = hi.toFixed(2);
  }
}
