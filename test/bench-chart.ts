// Draws the benchmark's keys/s as a plain SVG horizontal bar chart, by hand, for media/benchmark.svg.
// Dark text on white, values printed on the bars; no chart library, so nothing to install.

export interface ChartBar {
  label: string;
  /** Undefined when the row failed: drawn as an empty bar marked "failed". */
  value?: number;
  /** Printed after the value: what is counted per second. */
  unit: string;
  /** Reference rows (not this tool) are drawn in grey. */
  reference: boolean;
}

const WIDTH = 720;
/** Room for the longest label, "this tool (MIGRATION_MODE=compare)", in fonts wider than Helvetica too. */
const LABEL_RIGHT = 270;
const BAR_LEFT = 280;
const BAR_MAX = WIDTH - BAR_LEFT - 30;
const BAR_TOP = 52;
const BAR_HEIGHT = 34;
const BAR_GAP = 14;
/** Room under the last bar for the footnote. */
const FOOTER = 44;
const TOOL_COLOUR = '#2563eb';
const REFERENCE_COLOUR = '#6b7280';

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

export function formatCount(value: number): string {
  return Math.round(value).toLocaleString('en-US');
}

function drawBar(bar: ChartBar, index: number, largest: number): string {
  const y = BAR_TOP + index * (BAR_HEIGHT + BAR_GAP);
  const middle = y + BAR_HEIGHT / 2 + 5;
  const label = `<text x="${LABEL_RIGHT}" y="${middle}" text-anchor="end" fill="#111827">${escapeXml(bar.label)}</text>`;
  if (bar.value === undefined) {
    return `${label}\n  <text x="${BAR_LEFT + 6}" y="${middle}" fill="#b91c1c" font-weight="bold">failed</text>`;
  }
  const width = Math.max(2, Math.round((bar.value / largest) * BAR_MAX));
  const colour = bar.reference ? REFERENCE_COLOUR : TOOL_COLOUR;
  const text = `${formatCount(bar.value)} ${bar.unit}`;
  // The value sits inside the bar in white when it fits, else just past its end in dark grey.
  const fitsInside = width > text.length * 7.5 + 16;
  const valueText = fitsInside
    ? `<text x="${BAR_LEFT + width - 8}" y="${middle}" text-anchor="end" fill="#ffffff" font-weight="bold">${text}</text>`
    : `<text x="${BAR_LEFT + width + 6}" y="${middle}" fill="#111827" font-weight="bold">${text}</text>`;
  return `${label}\n  <rect x="${BAR_LEFT}" y="${y}" width="${width}" height="${BAR_HEIGHT}" rx="3" fill="${colour}"/>\n  ${valueText}`;
}

export function drawChart(title: string, footnote: string, bars: ChartBar[]): string {
  const largest = Math.max(1, ...bars.map((b) => b.value ?? 0));
  // Grows with the rows, so adding one never pushes a bar into the footnote.
  const height = BAR_TOP + bars.length * (BAR_HEIGHT + BAR_GAP) - BAR_GAP + FOOTER;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="13">`,
    `  <rect width="${WIDTH}" height="${height}" fill="#ffffff"/>`,
    `  <text x="${WIDTH / 2}" y="28" text-anchor="middle" font-size="16" font-weight="bold" fill="#111827">${escapeXml(title)}</text>`,
    ...bars.map((bar, i) => `  ${drawBar(bar, i, largest)}`),
    `  <text x="${WIDTH / 2}" y="${height - 12}" text-anchor="middle" font-size="11" fill="#4b5563">${escapeXml(footnote)}</text>`,
    '</svg>',
    '',
  ].join('\n');
}
