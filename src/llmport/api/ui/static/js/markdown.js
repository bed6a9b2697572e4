// Markdown to DOM nodes for untrusted model output. Every piece of text becomes a text
// node; the only elements made are the ones listed here; links keep only http(s) and
// mailto targets. No HTML in the input is ever parsed.

import { h } from "./dom.js";

const SAFE_LINK = /^(https?:|mailto:)/i;

/** A DocumentFragment for `text`. */
export function render(text) {
  const fragment = document.createDocumentFragment();
  const lines = String(text).replace(/\r\n?/g, "\n").split("\n");
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    const fence = line.match(/^\s*(```|~~~)\s*([\w+.-]*)/);
    if (fence) {
      const code = [];
      i += 1;
      while (i < lines.length && !lines[i].trimStart().startsWith(fence[1])) code.push(lines[i++]);
      i += 1;
      fragment.append(codeBlock(code.join("\n"), fence[2]));
      continue;
    }
    const heading = line.match(/^(#{1,6})\s+(.*)$/);
    if (heading) {
      fragment.append(h(`h${Math.min(6, heading[1].length + 2)}`, {}, inline(heading[2])));
      i += 1;
      continue;
    }
    if (/^\s*([-*_])(\s*\1){2,}\s*$/.test(line)) {
      fragment.append(h("hr"));
      i += 1;
      continue;
    }
    if (/^\s*>/.test(line)) {
      const quoted = [];
      while (i < lines.length && /^\s*>/.test(lines[i])) quoted.push(lines[i++].replace(/^\s*> ?/, ""));
      fragment.append(h("blockquote", {}, render(quoted.join("\n"))));
      continue;
    }
    const item = line.match(/^\s*([-*+]|\d+[.)])\s+/);
    if (item) {
      const ordered = /\d/.test(item[1]);
      const list = h(ordered ? "ol" : "ul");
      while (i < lines.length) {
        const m = lines[i].match(/^\s*([-*+]|\d+[.)])\s+(.*)$/);
        if (!m || /\d/.test(m[1]) !== ordered) break;
        list.append(h("li", {}, inline(m[2])));
        i += 1;
      }
      fragment.append(list);
      continue;
    }
    if (!line.trim()) {
      i += 1;
      continue;
    }
    const paragraph = [];
    while (i < lines.length && lines[i].trim() && !startsBlock(lines[i])) paragraph.push(lines[i++]);
    const p = h("p");
    paragraph.forEach((part, n) => {
      if (n) p.append(h("br"));
      p.append(inline(part));
    });
    fragment.append(p);
  }
  return fragment;
}

function startsBlock(line) {
  return /^\s*(```|~~~|#{1,6}\s|>|[-*+]\s|\d+[.)]\s)/.test(line);
}

export function codeBlock(code, language = "") {
  const block = h("pre", { class: "code" }, h("code", {}, code));
  if (language) block.dataset.language = language;
  return block;
}

const INLINE = /(`+)([\s\S]*?)\1|\*\*([^*]+)\*\*|__([^_]+)__|\*([^*\s][^*]*)\*|_([^_\s][^_]*)_|\[([^\]]*)\]\(([^)\s]*)\)/;

/** Inline code, bold, italic and links, as nodes. */
export function inline(text) {
  const fragment = document.createDocumentFragment();
  let rest = text;
  for (;;) {
    const m = rest.match(INLINE);
    if (!m) break;
    if (m.index) fragment.append(rest.slice(0, m.index));
    if (m[1]) fragment.append(h("code", {}, m[2]));
    else if (m[3] || m[4]) fragment.append(h("strong", {}, inline(m[3] || m[4])));
    else if (m[5] || m[6]) fragment.append(h("em", {}, inline(m[5] || m[6])));
    else fragment.append(link(m[7], m[8]));
    rest = rest.slice(m.index + m[0].length);
  }
  if (rest) fragment.append(rest);
  return fragment;
}

function link(label, target) {
  if (!SAFE_LINK.test(target)) return document.createTextNode(`${label} (${target})`);
  return h("a", { href: target, target: "_blank", rel: "noopener noreferrer nofollow" }, label);
}
