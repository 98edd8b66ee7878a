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

/** The least width of the chart; it grows when the labels need more room. */
const MIN_WIDTH = 720;
/** Room at the left of the longest label. */
const LABEL_MARGIN = 12;
/** Width of one character of a 13 px label, wide enough for fonts wider than Helvetica too (Verdana, DejaVu Sans). */
const LABEL_CHAR_WIDTH = 8;
/** Room for the longest bar. */
const BAR_MAX = 410;
/** Room right of the longest bar. */
const BAR_RIGHT_MARGIN = 30;
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

interface Layout {
  width: number;
  /** Where the labels end (they are right-aligned there). */
  labelRight: number;
  barLeft: number;
}

/** The label column is as wide as the longest label needs, so none is cut at the left edge. */
function layout(bars: ChartBar[]): Layout {
  const longest = Math.max(0, ...bars.map((b) => b.label.length));
  const labelRight = LABEL_MARGIN + Math.ceil(longest * LABEL_CHAR_WIDTH);
  const barLeft = labelRight + 10;
  return { width: Math.max(MIN_WIDTH, barLeft + BAR_MAX + BAR_RIGHT_MARGIN), labelRight, barLeft };
}

function drawBar(bar: ChartBar, index: number, largest: number, { labelRight, barLeft }: Layout): string {
  const y = BAR_TOP + index * (BAR_HEIGHT + BAR_GAP);
  const middle = y + BAR_HEIGHT / 2 + 5;
  const label = `<text x="${labelRight}" y="${middle}" text-anchor="end" fill="#111827">${escapeXml(bar.label)}</text>`;
  if (bar.value === undefined) {
    return `${label}\n  <text x="${barLeft + 6}" y="${middle}" fill="#b91c1c" font-weight="bold">failed</text>`;
  }
  const width = Math.max(2, Math.round((bar.value / largest) * BAR_MAX));
  const colour = bar.reference ? REFERENCE_COLOUR : TOOL_COLOUR;
  const text = `${formatCount(bar.value)} ${bar.unit}`;
  // The value sits inside the bar in white when it fits, else just past its end in dark grey.
  const fitsInside = width > text.length * 7.5 + 16;
  const valueText = fitsInside
    ? `<text x="${barLeft + width - 8}" y="${middle}" text-anchor="end" fill="#ffffff" font-weight="bold">${text}</text>`
    : `<text x="${barLeft + width + 6}" y="${middle}" fill="#111827" font-weight="bold">${text}</text>`;
  return `${label}\n  <rect x="${barLeft}" y="${y}" width="${width}" height="${BAR_HEIGHT}" rx="3" fill="${colour}"/>\n  ${valueText}`;
}

export function drawChart(title: string, footnote: string, bars: ChartBar[]): string {
  const largest = Math.max(1, ...bars.map((b) => b.value ?? 0));
  const lay = layout(bars);
  // Grows with the rows, so adding one never pushes a bar into the footnote.
  const height = BAR_TOP + bars.length * (BAR_HEIGHT + BAR_GAP) - BAR_GAP + FOOTER;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${lay.width}" height="${height}" viewBox="0 0 ${lay.width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="13">`,
    `  <rect width="${lay.width}" height="${height}" fill="#ffffff"/>`,
    `  <text x="${lay.width / 2}" y="28" text-anchor="middle" font-size="16" font-weight="bold" fill="#111827">${escapeXml(title)}</text>`,
    ...bars.map((bar, i) => `  ${drawBar(bar, i, largest, lay)}`),
    `  <text x="${lay.width / 2}" y="${height - 12}" text-anchor="middle" font-size="11" fill="#4b5563">${escapeXml(footnote)}</text>`,
    '</svg>',
    '',
  ].join('\n');
}
