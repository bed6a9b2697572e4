// How one message's content is shown: Markdown, JSON answers as JSON, tool calls as calls.

import { h } from "./dom.js";
import { fixed, seconds } from "./format.js";
import { codeBlock, render } from "./markdown.js";

export function answerBody(m) {
  const parts = [];
  if (m.role === "assistant" && m.format === "json" && m.content) parts.push(jsonAnswer(m.content));
  else if (m.role === "assistant") parts.push(render(m.content));
  else parts.push(h("p", { class: "plain" }, m.content));
  for (const call of m.tool_calls || []) parts.push(toolCall(call));
  return parts;
}

function jsonAnswer(text) {
  let shown = text;
  try {
    shown = JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    // Still streaming, or cut short: show the text as it came.
  }
  return h("div", { class: "json", "data-testid": "json-answer" }, h("span", { class: "tag" }, "JSON"), codeBlock(shown, "json"));
}

function toolCall(call) {
  let args = call.function?.arguments || "";
  try {
    args = JSON.stringify(JSON.parse(args), null, 2);
  } catch {
    // Partial arguments while streaming.
  }
  return h("div", { class: "tool-call", "data-testid": "tool-call" },
    h("span", { class: "tag" }, "Tool call"), h("strong", {}, call.function?.name || "?"), codeBlock(args, "json"));
}

export function figuresLine(f) {
  const items = [
    ["ttft", "TTFT", seconds(f.ttft)],
    ["tps", "tokens/s", fixed(f.tokens_per_second)],
    ["prompt", "prompt", f.prompt_tokens ?? "–"],
    ["output", "output", f.completion_tokens ?? "–"],
    ["cached", "cached", f.cached_tokens ?? "–"],
  ];
  return h("div", { class: "figures", "data-testid": "figures" },
    items.map(([key, label, value]) => h("span", { dataset: { figure: key } }, `${label} `, h("b", {}, String(value)))));
}
