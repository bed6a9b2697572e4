// Prometheus text from /metrics, parsed, and what the server view derives from it.

const LINE = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/;
const LABEL = /(\w+)="((?:[^"\\]|\\.)*)"/g;

/** [{name, labels, value}] for every sample line. */
export function parse(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = line.match(LINE);
    if (!m) continue;
    const labels = {};
    for (const [, key, value] of (m[2] || "").matchAll(LABEL)) labels[key] = value.replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return samples;
}

export function sum(samples, name, filter = () => true) {
  return samples.filter((s) => s.name === name && filter(s.labels)).reduce((total, s) => total + s.value, 0);
}

/** {model: value} of a gauge. */
export function byModel(samples, name) {
  const out = {};
  for (const s of samples) if (s.name === name) out[s.labels.model] = (out[s.labels.model] || 0) + s.value;
  return out;
}

/** Cumulative bucket counts of a histogram, all models together: [[le, count]] sorted. */
export function buckets(samples, name) {
  const counts = new Map();
  for (const s of samples) {
    if (s.name !== `${name}_bucket`) continue;
    const le = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
    counts.set(le, (counts.get(le) || 0) + s.value);
  }
  return [...counts.entries()].sort((a, b) => a[0] - b[0]);
}

/** The q-quantile of what was observed between two bucket snapshots (as Prometheus's
 * histogram_quantile: linear within a bucket); null when nothing was observed. */
export function quantile(q, now, before = []) {
  const old = new Map(before);
  const diff = now.map(([le, count]) => [le, count - (old.get(le) || 0)]);
  const total = diff.at(-1)?.[1] || 0;
  if (total <= 0) return null;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (const [le, count] of diff) {
    if (count >= rank) {
      if (le === Infinity) return lower;
      return lower + ((le - lower) * (rank - below)) / Math.max(count - below, 1e-9);
    }
    lower = le;
    below = count;
  }
  return lower;
}
