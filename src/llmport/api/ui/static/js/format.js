// Numbers as people read them.

export function bytes(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let value = Number(n);
  while (Math.abs(value) >= 1024 && i < units.length - 1) {
    value /= 1024;
    i += 1;
  }
  return `${value.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

export function seconds(s) {
  if (s === null || s === undefined || !Number.isFinite(s)) return "–";
  if (s < 1) return `${(s * 1000).toFixed(0)} ms`;
  if (s < 120) return `${s.toFixed(1)} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

export function fixed(n, digits = 1) {
  return n === null || n === undefined || !Number.isFinite(n) ? "–" : n.toFixed(digits);
}

export function date(text) {
  const moment = new Date(text);
  return Number.isNaN(moment.getTime()) ? "–" : moment.toLocaleString();
}

/** "in 4 min", "forever", "now" for an ISO date. */
export function until(text) {
  const moment = new Date(text);
  if (moment.getUTCFullYear() >= 2300) return "forever";
  const left = (moment.getTime() - Date.now()) / 1000;
  return left <= 0 ? "now" : `in ${seconds(left)}`;
}
