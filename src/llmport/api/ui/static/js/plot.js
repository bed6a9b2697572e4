// Small line charts on a canvas: time on x, one or more series on y.

import { h } from "./dom.js";

const COLORS = ["#2f7de1", "#e0632f", "#2fa56b", "#a54fd1", "#c9a227", "#d14f78"];

export class LineChart {
  constructor(title, unit, format = (v) => v.toFixed(1)) {
    this.title = title;
    this.unit = unit;
    this.format = format;
    this.canvas = h("canvas", { width: 480, height: 160 });
    this.legend = h("div", { class: "legend" });
    this.node = h("figure", { class: "chart", "data-chart": title }, h("figcaption", {}, title), this.canvas, this.legend);
  }

  /** series: {name: [[t, value]...]}, t in seconds; at most the last `maxSpan` seconds
   * are shown (fewer while there is less history, at least 30). */
  draw(series, maxSpan) {
    const ctx = this.canvas.getContext("2d");
    const { width, height } = this.canvas;
    const pad = { left: 46, right: 8, top: 8, bottom: 18 };
    ctx.clearRect(0, 0, width, height);
    const points = Object.values(series).flat().filter(([, v]) => v !== null && Number.isFinite(v));
    const now = Date.now() / 1000;
    const oldest = Math.min(now, ...Object.values(series).flat().map(([t]) => t));
    const span = Math.min(maxSpan, Math.max(30, now - oldest));
    const max = Math.max(1e-9, ...points.map(([, v]) => v)) * 1.1;
    const x = (t) => pad.left + ((t - (now - span)) / span) * (width - pad.left - pad.right);
    const y = (v) => height - pad.bottom - (v / max) * (height - pad.top - pad.bottom);
    ctx.strokeStyle = "#8884";
    ctx.fillStyle = "#888";
    ctx.font = "11px sans-serif";
    for (const frac of [0, 0.5, 1]) {
      const v = (max / 1.1) * frac;
      ctx.beginPath();
      ctx.moveTo(pad.left, y(v));
      ctx.lineTo(width - pad.right, y(v));
      ctx.stroke();
      ctx.fillText(this.format(v), 2, y(v) + 4);
    }
    ctx.fillText(span >= 120 ? `-${Math.round(span / 60)} min` : `-${Math.round(span)} s`, pad.left, height - 4);
    ctx.fillText("now", width - pad.right - 22, height - 4);
    this.legend.replaceChildren();
    Object.entries(series).forEach(([name, values], i) => {
      const color = COLORS[i % COLORS.length];
      ctx.strokeStyle = color;
      ctx.lineWidth = 2;
      ctx.beginPath();
      let drawing = false;
      for (const [t, v] of values) {
        if (v === null || !Number.isFinite(v)) {
          drawing = false;
          continue;
        }
        if (drawing) ctx.lineTo(x(t), y(v));
        else ctx.moveTo(x(t), y(v));
        drawing = true;
      }
      ctx.stroke();
      const last = values.filter(([, v]) => v !== null && Number.isFinite(v)).at(-1);
      const key = h("span", { class: "key" }, `${name}: ${last ? this.format(last[1]) : "–"} ${this.unit}`);
      key.style.setProperty("--c", color); // CSSOM: the page's CSP allows no inline style.
      this.legend.append(key);
    });
  }
}
