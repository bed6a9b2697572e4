// The chat view: conversations, a streamed answer, stop, regenerate, edit and resend.

import { ApiError, json, sse } from "./api.js";
import { answerBody, figuresLine } from "./answer.js";
import { clear, h } from "./dom.js";
import { Conversations } from "./store.js";

export class ChatView {
  constructor(root) {
    this.root = root;
    this.store = new Conversations();
    this.current = this.store.items[0] || null;
    this.controller = null;
    this.editing = null;
    this.build();
  }

  build() {
    this.list = h("ul", { class: "conversations", "data-testid": "conversations" });
    this.model = h("select", { id: "model", "aria-label": "Model", onchange: () => this.saveSettings() });
    this.system = h("textarea", { id: "system", rows: 2, placeholder: "System prompt", onchange: () => this.saveSettings() });
    this.params = Object.fromEntries(
      [["temperature", 0.1], ["top_p", 0.05], ["max_tokens", 1], ["seed", 1]].map(([name, step]) => [
        name,
        h("input", { id: `param-${name}`, type: "number", step, min: 0, onchange: () => this.saveSettings() }),
      ]),
    );
    this.schema = h("textarea", { id: "schema", rows: 3, placeholder: "JSON schema for the answer (optional)", onchange: () => this.saveSettings() });
    this.tools = h("textarea", { id: "tools", rows: 3, placeholder: "Tools: OpenAI JSON array (optional)", onchange: () => this.saveSettings() });
    this.messages = h("div", { class: "messages", id: "messages", "data-testid": "messages" });
    this.input = h("textarea", {
      id: "prompt", rows: 3, placeholder: "Message (Enter to send, Shift+Enter for a new line)",
      onkeydown: (e) => {
        if (e.key === "Enter" && !e.shiftKey) {
          e.preventDefault();
          this.send();
        }
      },
    });
    this.sendButton = h("button", { id: "send", class: "primary", onclick: () => this.send() }, "Send");
    this.stopButton = h("button", { id: "stop", hidden: true, onclick: () => this.stop() }, "Stop");
    this.error = h("p", { class: "error", id: "chat-error" });
    const settings = h("details", { class: "settings" }, h("summary", {}, "System prompt and parameters"),
      this.system,
      h("div", { class: "params" }, Object.entries(this.params).map(([name, input]) => h("label", {}, name, input))),
      this.schema, this.tools);
    clear(this.root,
      h("aside", {}, h("button", { id: "new-chat", onclick: () => this.newChat() }, "New chat"), this.list),
      h("div", { class: "chat" },
        h("div", { class: "toolbar" }, h("label", {}, "Model ", this.model)),
        settings, this.messages, this.error,
        h("div", { class: "composer" }, this.input, h("div", {}, this.sendButton, this.stopButton))));
    this.renderAll();
  }

  async show() {
    const [listed, loaded] = await Promise.all([json("GET", "/v1/models"), json("GET", "/api/ps")]);
    const names = new Set(loaded.models.map((m) => m.name));
    const chosen = this.model.value || this.current?.model;
    clear(this.model, listed.data.map((card) =>
      h("option", { value: card.id, dataset: { loaded: names.has(card.id) ? "yes" : "no" } },
        names.has(card.id) ? `${card.id} ● loaded` : card.id)));
    if (chosen && listed.data.some((c) => c.id === chosen)) this.model.value = chosen;
  }

  newChat() {
    this.stop();
    this.current = this.store.create(this.model.value);
    this.renderAll();
    this.input.focus();
  }

  conversation() {
    if (!this.current) this.current = this.store.create(this.model.value);
    return this.current;
  }

  saveSettings() {
    const c = this.conversation();
    c.model = this.model.value;
    c.system = this.system.value;
    c.schema = this.schema.value;
    c.tools = this.tools.value;
    for (const [name, input] of Object.entries(this.params)) c.params[name] = input.value;
    this.store.save();
  }

  send() {
    const text = this.input.value.trim();
    if (!text || this.controller) return;
    this.saveSettings();
    const c = this.conversation();
    if (this.editing !== null) c.messages.length = this.editing;
    this.editing = null;
    c.messages.push({ role: "user", content: text });
    this.input.value = "";
    this.store.touch(c);
    this.generate();
  }

  stop() {
    if (this.controller) this.controller.abort();
  }

  regenerate() {
    const c = this.conversation();
    if (this.controller || c.messages.at(-1)?.role !== "assistant") return;
    c.messages.pop();
    this.generate();
  }

  edit(index) {
    if (this.controller) return;
    this.editing = index;
    this.input.value = this.conversation().messages[index].content;
    this.input.focus();
  }

  async generate() {
    const c = this.conversation();
    const answer = { role: "assistant", content: "", state: "streaming", format: c.schema?.trim() ? "json" : "text" };
    this.error.textContent = "";
    let body;
    try {
      body = this.requestBody(c);
    } catch (error) {
      this.error.textContent = error.message;
      return;
    }
    c.messages.push(answer);
    this.renderAll();
    this.controller = new AbortController();
    this.busy(true);
    const started = performance.now();
    let first = null;
    try {
      for await (const chunk of sse("/v1/chat/completions", body, this.controller.signal)) {
        const delta = chunk.choices?.[0]?.delta;
        if (delta && (delta.content || delta.tool_calls) && first === null) first = performance.now();
        if (delta?.content) answer.content += delta.content;
        if (delta?.tool_calls) mergeToolCalls(answer, delta.tool_calls);
        if (chunk.choices?.[0]?.finish_reason) answer.finish_reason = chunk.choices[0].finish_reason;
        if (chunk.usage) answer.usage = chunk.usage;
        this.updateLast();
      }
      answer.state = "done";
    } catch (error) {
      if (error.name === "AbortError") answer.state = "stopped";
      else {
        answer.state = "error";
        answer.error = error instanceof ApiError ? error.message : String(error.message || error);
      }
    }
    answer.figures = figures(started, first, performance.now(), answer.usage);
    this.controller = null;
    this.busy(false);
    this.store.touch(c);
    this.renderAll();
  }

  requestBody(c) {
    const messages = c.system ? [{ role: "system", content: c.system }] : [];
    for (const m of c.messages) {
      const message = { role: m.role, content: m.content };
      if (m.tool_calls) message.tool_calls = m.tool_calls;
      messages.push(message);
    }
    const body = { model: c.model, messages, stream: true, stream_options: { include_usage: true } };
    for (const [name, value] of Object.entries(c.params)) if (value !== "" && value !== null) body[name] = Number(value);
    if (c.schema?.trim()) body.response_format = { type: "json_schema", json_schema: { name: "answer", schema: parseJson(c.schema, "schema") } };
    if (c.tools?.trim()) body.tools = parseJson(c.tools, "tools");
    return body;
  }

  busy(on) {
    this.sendButton.hidden = on;
    this.stopButton.hidden = !on;
    this.model.disabled = on;
  }

  renderAll() {
    const c = this.current;
    clear(this.list, this.store.items.map((item) =>
      h("li", { class: item === c ? "active" : "" },
        h("button", { class: "link", onclick: () => this.open(item.id) }, item.title),
        h("button", { class: "small", title: "Delete conversation", "data-testid": "delete-conversation", onclick: () => this.remove(item.id) }, "✕"))));
    this.system.value = c?.system || "";
    this.schema.value = c?.schema || "";
    this.tools.value = c?.tools || "";
    const params = c?.params || { temperature: 0.7, top_p: 1, max_tokens: 512, seed: "" };
    for (const [name, input] of Object.entries(this.params)) input.value = params[name] ?? "";
    if (c?.model && [...this.model.options].some((o) => o.value === c.model)) this.model.value = c.model;
    const messages = c?.messages || [];
    clear(this.messages, messages.map((m, i) => this.messageNode(m, i, i === messages.length - 1)));
    this.messages.scrollTop = this.messages.scrollHeight;
  }

  open(id) {
    if (this.controller) return;
    this.current = this.store.get(id);
    this.renderAll();
  }

  remove(id) {
    if (this.controller && this.current?.id === id) return;
    this.store.remove(id);
    if (this.current?.id === id) this.current = this.store.items[0] || null;
    this.renderAll();
  }

  messageNode(m, index, isLast) {
    const actions = h("div", { class: "actions" });
    if (m.role === "user") actions.append(h("button", { class: "small", "data-testid": "edit", onclick: () => this.edit(index) }, "Edit"));
    if (m.role === "assistant" && isLast && m.state !== "streaming") {
      actions.append(h("button", { class: "small", "data-testid": "regenerate", onclick: () => this.regenerate() }, "Regenerate"));
    }
    return h("div", { class: `msg ${m.role}`, "data-testid": "message", dataset: { role: m.role, state: m.state || "done" } },
      h("div", { class: "who" }, m.role), h("div", { class: "body" }, answerBody(m)),
      m.figures ? figuresLine(m.figures) : null, m.error ? h("p", { class: "error" }, m.error) : null, actions);
  }

  updateLast() {
    if (this.pending) return;
    this.pending = requestAnimationFrame(() => {
      this.pending = null;
      const c = this.current;
      const node = this.messages.lastElementChild;
      if (!c || !node) return;
      clear(node.querySelector(".body"), answerBody(c.messages.at(-1)));
      this.messages.scrollTop = this.messages.scrollHeight;
    });
  }
}

function mergeToolCalls(answer, deltas) {
  answer.tool_calls ||= [];
  for (const d of deltas) {
    const call = (answer.tool_calls[d.index ?? answer.tool_calls.length] ||= { id: d.id, type: "function", function: { name: "", arguments: "" } });
    if (d.id) call.id = d.id;
    if (d.function?.name) call.function.name += d.function.name;
    if (d.function?.arguments) call.function.arguments += d.function.arguments;
  }
}

function figures(started, first, ended, usage) {
  const out = { ttft: first === null ? null : (first - started) / 1000 };
  if (usage) {
    out.prompt_tokens = usage.prompt_tokens;
    out.completion_tokens = usage.completion_tokens;
    out.cached_tokens = usage.prompt_tokens_details?.cached_tokens ?? 0;
    const span = first === null ? 0 : (ended - first) / 1000;
    out.tokens_per_second = span > 0 && usage.completion_tokens > 1 ? (usage.completion_tokens - 1) / span : null;
  }
  return out;
}

function parseJson(text, what) {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Error(`${what}: not JSON (${error.message})`);
  }
}
