// The server view: live plots from /metrics, sequences per model, memory against the
// budget, and the loaded models (unload).

import { json, metricsText } from "./api.js";
import { clear, h } from "./dom.js";
import { bytes, fixed, seconds, until } from "./format.js";
import { buckets, byModel, parse, quantile, sum } from "./metrics.js";
import { LineChart } from "./plot.js";

const POLL_MS = 2000;
const SPAN_S = 300; // What the plots show.
const LATENCY_WINDOW_S = 60; // Percentiles are of what was observed in this window.

export class ServerView {
  constructor(root) {
    this.root = root;
    this.history = [];
    this.timer = null;
    this.charts = {
      tokens: new LineChart("Output tokens/s", "tok/s"),
      requests: new LineChart("Requests/s", "req/s", (v) => v.toFixed(2)),
      latency: new LineChart("Latency percentiles (last minute)", "", seconds),
      sequences: new LineChart("Sequences per model", "", (v) => v.toFixed(0)),
    };
    this.sequences = h("table", { class: "grid", "data-testid": "sequences" });
    this.memory = h("div", { class: "memory", "data-testid": "memory" });
    this.loaded = h("table", { class: "grid", "data-testid": "loaded" });
    this.latencyTable = h("table", { class: "grid", "data-testid": "latency" });
    clear(root,
      h("div", { class: "charts" }, Object.values(this.charts).map((c) => c.node)),
      h("div", { class: "panels" },
        h("section", {}, h("h3", {}, "Running and waiting, per model"), this.sequences),
        h("section", {}, h("h3", {}, "Latency"), this.latencyTable),
        h("section", {}, h("h3", {}, "Memory budget"), this.memory),
        h("section", {}, h("h3", {}, "Loaded models"), this.loaded)));
  }

  start() {
    if (this.timer === null) {
      this.timer = setInterval(() => this.poll().catch(() => {}), POLL_MS);
      this.poll().catch(() => {});
    }
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
  }

  async show() {
    this.start();
    await this.poll();
  }

  async poll() {
    const [text, ps, info] = await Promise.all([metricsText(), json("GET", "/api/ps"), this.info()]);
    const samples = parse(text);
    const t = Date.now() / 1000;
    this.history.push({ t, samples });
    this.history = this.history.filter((s) => s.t >= t - SPAN_S - POLL_MS / 1000);
    if (!this.root.hidden) this.render(samples, ps.models, info);
  }

  async info() {
    this.serverInfo ||= await json("GET", "/ui/api/server");
    return this.serverInfo;
  }

  render(samples, loaded, info) {
    const rates = (name, filter) => this.history.slice(1).map((s, i) => {
      const prev = this.history[i];
      return [s.t, Math.max(0, sum(s.samples, name, filter) - sum(prev.samples, name, filter)) / (s.t - prev.t)];
    });
    this.charts.tokens.draw({ output: rates("llmport_generation_tokens_total"), prompt: rates("llmport_prefill_tokens_total") }, SPAN_S);
    this.charts.requests.draw({
      finished: rates("llmport_requests_total"),
      failed: rates("llmport_requests_total", (labels) => Number(labels.status) >= 400),
    }, SPAN_S);
    this.charts.latency.draw({
      "TTFT p50": this.percentiles("llmport_time_to_first_token_seconds", 0.5),
      "TTFT p99": this.percentiles("llmport_time_to_first_token_seconds", 0.99),
      "ITL p50": this.percentiles("llmport_inter_token_latency_seconds", 0.5),
      "ITL p99": this.percentiles("llmport_inter_token_latency_seconds", 0.99),
    }, SPAN_S);
    this.charts.sequences.draw(this.sequenceSeries(), SPAN_S);
    this.renderSequences(samples);
    this.renderLatency();
    this.renderMemory(samples, info);
    this.renderLoaded(loaded);
  }

  /** Running and waiting sequences of each model that had any, over time. */
  sequenceSeries() {
    const series = {};
    for (const [key, name] of [["running", "llmport_num_requests_running"], ["waiting", "llmport_num_requests_waiting"]]) {
      const models = new Set(this.history.flatMap((s) => Object.keys(byModel(s.samples, name))));
      for (const model of [...models].sort()) {
        series[`${key} ${model}`] = this.history.map((s) => [s.t, byModel(s.samples, name)[model] ?? null]);
      }
    }
    return Object.keys(series).length ? series : { running: this.history.map((s) => [s.t, 0]) };
  }

  /** The q-quantile over the window ending at each sample. */
  percentiles(name, q) {
    return this.history.map((s) => {
      const start = this.history.find((o) => o.t >= s.t - LATENCY_WINDOW_S) || s;
      return [s.t, quantile(q, buckets(s.samples, name), start === s ? [] : buckets(start.samples, name))];
    });
  }

  renderSequences(samples) {
    const running = byModel(samples, "llmport_num_requests_running");
    const waiting = byModel(samples, "llmport_num_requests_waiting");
    const models = Object.keys({ ...running, ...waiting }).sort();
    clear(this.sequences, h("tr", {}, h("th", {}, "model"), h("th", {}, "running"), h("th", {}, "waiting")),
      models.length ? models.map((m) => h("tr", { dataset: { model: m } }, h("td", {}, m),
        h("td", { "data-testid": "running" }, String(running[m] ?? 0)),
        h("td", { "data-testid": "waiting" }, String(waiting[m] ?? 0))))
        : h("tr", {}, h("td", { colspan: 3, class: "muted" }, "no model loaded")));
  }

  renderLatency() {
    const rows = [["time to first token", "llmport_time_to_first_token_seconds"], ["inter-token", "llmport_inter_token_latency_seconds"], ["end to end", "llmport_e2e_request_latency_seconds"]];
    const last = this.history.at(-1);
    const start = this.history.find((o) => o.t >= last.t - LATENCY_WINDOW_S) || last;
    clear(this.latencyTable, h("tr", {}, h("th", {}, "last minute"), ["p50", "p90", "p99"].map((p) => h("th", {}, p))),
      rows.map(([label, name]) => h("tr", {}, h("td", {}, label), [0.5, 0.9, 0.99].map((q) =>
        h("td", {}, seconds(quantile(q, buckets(last.samples, name), start === last ? [] : buckets(start.samples, name))))))));
  }

  renderMemory(samples, info) {
    const memory = byModel(samples, "llmport_model_memory_bytes");
    const budget = info.memory_budget_bytes;
    const used = Object.values(memory).reduce((a, b) => a + b, 0);
    const bar = h("div", { class: "bar" });
    for (const [model, size] of Object.entries(memory)) {
      const part = h("span", { title: `${model}: ${bytes(size)}` });
      part.style.width = `${Math.min(100, (100 * size) / budget)}%`;
      bar.append(part);
    }
    clear(this.memory, bar, h("p", {}, `${bytes(used)} of ${bytes(budget)} used (${fixed((100 * used) / budget)}%)`),
      h("ul", {}, Object.entries(memory).map(([model, size]) => h("li", {}, `${model}: ${bytes(size)}`))));
  }

  renderLoaded(models) {
    clear(this.loaded, h("tr", {}, ["model", "memory", "context", "unloads", ""].map((t) => h("th", {}, t))),
      models.length ? models.map((m) => h("tr", { dataset: { model: m.name } }, h("td", {}, m.name), h("td", {}, bytes(m.size)),
        h("td", {}, String(m.context_length ?? "–")), h("td", {}, until(m.expires_at)),
        h("td", {}, h("button", { class: "small", "data-testid": "unload", onclick: () => this.unload(m.name) }, "Unload"))))
        : h("tr", {}, h("td", { colspan: 5, class: "muted" }, "none")));
  }

  async unload(name) {
    await json("POST", "/api/generate", { model: name, keep_alive: 0 });
    await this.poll();
  }
}
