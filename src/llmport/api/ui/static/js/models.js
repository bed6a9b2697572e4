// The models view: the registry as a table, pulls with live progress (kept by the
// server, so a reload finds them), delete, copy, Modelfile, load and unload.

import { json } from "./api.js";
import { clear, h } from "./dom.js";
import { bytes, date, seconds, until } from "./format.js";

const PULL_POLL_MS = 400;

export class ModelsView {
  constructor(root) {
    this.root = root;
    this.speeds = new Map();
    this.contexts = new Map(); // name -> Promise of its trained context (asked once)
    this.pollTimer = null;
    this.ref = h("input", { id: "pull-ref", placeholder: "hf.co/USER/REPO[:QUANT]", size: 40 });
    this.pullsNode = h("div", { class: "pulls", "data-testid": "pulls" });
    this.table = h("table", { class: "grid", id: "models-table", "data-testid": "models" });
    this.loadedTable = h("table", { class: "grid", "data-testid": "models-loaded" });
    this.detail = h("div", { class: "detail", "data-testid": "detail" });
    this.error = h("p", { class: "error", id: "models-error" });
    clear(root,
      h("form", { class: "pull", onsubmit: (e) => { e.preventDefault(); this.pull(); } },
        this.ref, h("button", { id: "pull", class: "primary", type: "submit" }, "Pull")),
      this.pullsNode, this.error,
      h("h3", {}, "Loaded now"), this.loadedTable,
      h("h3", {}, "Models"), this.table, this.detail);
  }

  async show() {
    await Promise.all([this.refresh(), this.pollPulls()]);
  }

  async refresh() {
    const [tags, ps] = await Promise.all([json("GET", "/api/tags"), json("GET", "/api/ps")]);
    const loaded = new Map(ps.models.map((m) => [m.name, m]));
    clear(this.table, h("tr", {}, ["name", "family", "parameters", "quantization", "size", "context", "modified", ""].map((t) => h("th", {}, t))),
      tags.models.map((m) => this.row(m, loaded.get(m.name))));
    clear(this.loadedTable, h("tr", {}, ["model", "memory", "context", "unloads", ""].map((t) => h("th", {}, t))),
      ps.models.length ? ps.models.map((m) => h("tr", { dataset: { model: m.name } }, h("td", {}, m.name), h("td", {}, bytes(m.size)),
        h("td", {}, String(m.context_length ?? "–")), h("td", {}, until(m.expires_at)),
        h("td", {}, h("button", { class: "small", onclick: () => this.act(() => this.setKeepAlive(m.name, 0)) }, "Unload"))))
        : h("tr", {}, h("td", { colspan: 5, class: "muted" }, "none")));
  }

  row(m, loaded) {
    const d = m.details || {};
    const context = h("td", { class: "muted" }, loaded ? String(loaded.context_length) : "…");
    this.context(m.name).then((n) => { context.textContent = n ? String(n) : "–"; }, () => { context.textContent = "–"; });
    const actions = h("td", { class: "actions" },
      loaded
        ? h("button", { class: "small", "data-testid": "unload", onclick: () => this.act(() => this.setKeepAlive(m.name, 0)) }, "Unload")
        : h("button", { class: "small", "data-testid": "load", onclick: () => this.act(() => this.setKeepAlive(m.name, "5m")) }, "Load"),
      h("button", { class: "small", "data-testid": "show", onclick: () => this.act(() => this.showModelfile(m.name)) }, "Modelfile"),
      h("button", { class: "small", "data-testid": "copy", onclick: () => this.askCopy(m.name, actions) }, "Copy"),
      h("button", { class: "small danger", "data-testid": "delete", onclick: (e) => this.confirmDelete(m.name, e.target) }, "Delete"));
    return h("tr", { dataset: { model: m.name, loaded: loaded ? "yes" : "no" } },
      h("td", {}, m.name, loaded ? h("span", { class: "badge" }, "loaded") : null), h("td", {}, d.family || "–"),
      h("td", {}, d.parameter_size || "–"), h("td", {}, d.quantization_level || "–"), h("td", {}, bytes(m.size)),
      context, h("td", {}, date(m.modified_at)), actions);
  }

  context(name) {
    if (!this.contexts.has(name)) {
      this.contexts.set(name, json("POST", "/api/show", { model: name }).then((shown) => {
        const info = shown.model_info || {};
        return info[`${info["general.architecture"]}.context_length`];
      }));
    }
    return this.contexts.get(name);
  }

  async act(work) {
    this.error.textContent = "";
    try {
      await work();
    } catch (error) {
      this.error.textContent = String(error.message || error);
    }
    await this.refresh();
  }

  async setKeepAlive(name, keepAlive) {
    await json("POST", "/api/generate", { model: name, keep_alive: keepAlive });
  }

  async showModelfile(name) {
    const shown = await json("POST", "/api/show", { model: name });
    clear(this.detail, h("h3", {}, `Modelfile of ${name}`), h("pre", { class: "code", "data-testid": "modelfile" }, shown.modelfile));
  }

  askCopy(name, cell) {
    const input = h("input", { "data-testid": "copy-name", placeholder: "new name", value: `${name.split(":")[0]}-copy` });
    const form = h("form", { class: "inline", onsubmit: (e) => {
      e.preventDefault();
      this.act(() => json("POST", "/api/copy", { source: name, destination: input.value.trim() }));
    } }, input, h("button", { class: "small", type: "submit", "data-testid": "copy-ok" }, "Copy"));
    cell.append(form);
    input.focus();
  }

  confirmDelete(name, button) {
    if (button.dataset.armed !== "yes") {
      button.dataset.armed = "yes";
      button.textContent = "Really delete?";
      return;
    }
    this.act(() => json("DELETE", "/api/delete", { model: name }));
  }

  async pull() {
    const model = this.ref.value.trim();
    if (!model) return;
    this.error.textContent = "";
    try {
      await json("POST", "/ui/api/pulls", { model });
      this.ref.value = "";
    } catch (error) {
      this.error.textContent = String(error.message || error);
    }
    await this.pollPulls();
  }

  async pollPulls() {
    clearTimeout(this.pollTimer);
    const { pulls } = await json("GET", "/ui/api/pulls");
    const finished = pulls.filter((p) => p.is_done && !this.speeds.get(p.model)?.seenDone);
    clear(this.pullsNode, pulls.map((p) => this.pullNode(p)));
    if (finished.length) {
      for (const p of finished) this.speeds.set(p.model, { ...this.speeds.get(p.model), seenDone: true });
      await this.refresh();
    }
    if (pulls.some((p) => !p.is_done) && !this.root.hidden) {
      this.pollTimer = setTimeout(() => this.pollPulls().catch(() => {}), PULL_POLL_MS);
    }
  }

  pullNode(p) {
    const last = this.speeds.get(p.model);
    let speed = last?.speed ?? null;
    if (last && p.completed > last.completed && p.updated_at > last.at) speed = (p.completed - last.completed) / (p.updated_at - last.at);
    this.speeds.set(p.model, { completed: p.completed, at: p.updated_at, speed, seenDone: last?.seenDone });
    const percent = p.total ? Math.floor((100 * p.completed) / p.total) : p.is_done && !p.error ? 100 : 0;
    const eta = speed && p.total ? (p.total - p.completed) / speed : null;
    const state = p.error ? "error" : p.is_done ? "done" : "running";
    return h("div", { class: `pull-item ${state}`, "data-testid": "pull", dataset: { model: p.model, state, percent: String(percent) } },
      h("strong", {}, p.model),
      h("progress", { max: 100, value: percent }),
      h("span", { "data-testid": "pull-percent" }, `${percent}%`),
      h("span", { class: "muted" }, p.total ? `${bytes(p.completed)} / ${bytes(p.total)}` : ""),
      h("span", { class: "muted" }, speed && !p.is_done ? `${bytes(speed)}/s, ${seconds(eta)} left` : ""),
      h("span", { "data-testid": "pull-quant" }, quantOf(p) ? `quant ${quantOf(p)}` : ""),
      h("span", {}, p.error || p.status),
      p.notes.length ? h("div", { class: "muted" }, p.notes.join(" · ")) : null);
  }
}

/** The quant a pull fetches: the one named (hf.co/USER/REPO:QUANT), else the one the
 * server chose and announced ("no quant named: using Q4_K_M (...)"). */
function quantOf(p) {
  const named = p.model.match(/^hf\.co\/[^/]+\/[^/:]+:(.+)$/);
  if (named) return named[1].toUpperCase();
  for (const note of p.notes) {
    const chosen = note.match(/using (\S+)/);
    if (chosen) return chosen[1];
  }
  return "";
}
