// Hand-written SVG bar charts: no plotting dependency, readable on GitHub and in any browser.

const esc = (text) =>
  String(text).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);

const OURS = '#2f7d5b';
const PEER = '#8a94a6';

/**
 * A horizontal bar chart.
 * @param {{ title: string, subtitle?: string, unit?: string,
 *   bars: Array<{ label: string, value: number, text?: string, ours?: boolean }>,
 *   goal?: { value: number, label: string } }} chart
 *   `text` is printed after the bar (default: the value and unit); `ours` bars are green.
 * @returns {string}
 */
export function barChart({ title, subtitle, unit = '', bars, goal }) {
  const width = 760;
  const left = 250;
  const right = 130;
  const top = subtitle ? 62 : 44;
  const row = 30;
  const plot = width - left - right;
  const max = Math.max(...bars.map((b) => b.value), goal?.value ?? 0) * 1.05 || 1;
  const height = top + bars.length * row + (goal ? 34 : 16);
  const x = (v) => left + (Math.max(0, v) / max) * plot;
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, -apple-system, Segoe UI, sans-serif" font-size="13">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="16" y="24" font-size="16" font-weight="600" fill="#1d2330">${esc(title)}</text>`,
  ];
  if (subtitle) out.push(`<text x="16" y="44" fill="#5b6475">${esc(subtitle)}</text>`);
  bars.forEach((bar, i) => {
    const y = top + i * row;
    const w = Math.max(1, x(bar.value) - left);
    const text = bar.text ?? `${formatValue(bar.value)}${unit}`;
    out.push(
      `<text x="${left - 10}" y="${y + 19}" text-anchor="end" fill="#1d2330">${esc(bar.label)}</text>`,
      `<rect x="${left}" y="${y + 5}" width="${w.toFixed(1)}" height="${row - 10}" rx="3" fill="${bar.ours ? OURS : PEER}"/>`,
      `<text x="${(left + w + 8).toFixed(1)}" y="${y + 19}" fill="#1d2330">${esc(text)}</text>`,
    );
  });
  if (goal) {
    const gx = x(goal.value).toFixed(1);
    const bottom = top + bars.length * row;
    out.push(
      `<line x1="${gx}" y1="${top - 2}" x2="${gx}" y2="${bottom + 4}" stroke="#c0392b" stroke-width="1.5" stroke-dasharray="5 4"/>`,
      `<text x="${gx}" y="${bottom + 22}" text-anchor="middle" fill="#c0392b">${esc(goal.label)}</text>`,
    );
  }
  out.push('</svg>', '');
  return out.join('\n');
}

function formatValue(value) {
  if (value >= 100) return Math.round(value).toLocaleString('en-US');
  if (value >= 10) return value.toFixed(1);
  return value.toFixed(2);
}
