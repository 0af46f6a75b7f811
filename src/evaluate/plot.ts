// SVG plots for the evaluation report, in one style: step histograms with a model / reference
// ratio panel, polar heat maps of average energy deposits, and 2D histograms. Every function
// returns a complete SVG document. svgToPng renders one to PNG with resvg, using the system's
// DejaVu Sans font, or resvg's fallback font when DejaVu Sans is missing.
import { Resvg } from "@resvg/resvg-js";

const fontFamily = "DejaVu Sans, Arial, sans-serif";

/** Colours of the reference (first) and of up to eight models after it. */
export const seriesColours = ["#404040", "#d6452b", "#2b6cd6", "#2a9d4b", "#8e44ad", "#e08a00", "#00a0a8", "#b03a75", "#6b6b00"];

/** Fill colour of the reference histogram and of the 10% band of the ratio panel. */
const referenceFill = "#d9d9d9";

export interface HistogramSeries {
  /** Legend entry, e.g. "Geant4" or "VP (EMD 0.12)". */
  label: string;
  /** One value per bin. */
  values: Float64Array;
}

export interface StepHistogramPlot {
  title?: string;
  xLabel: string;
  yLabel: string;
  /** Bin edges, one more than the values of each series. */
  edges: Float64Array;
  /** The reference first, then the models. */
  series: HistogramSeries[];
  logX?: boolean;
  logY?: boolean;
  /** Draw the model / reference ratio panel (default true). */
  ratio?: boolean;
  /**
   * The first series is the reference, drawn filled (default true). With false every series is a
   * model line and there is no ratio panel.
   */
  reference?: boolean;
  /** Lines of text under the legend, e.g. separation powers. */
  notes?: string[];
}

export interface Axis {
  min: number;
  max: number;
  log: boolean;
}

// ---------------------------------------------------------------------------------------------
// Text and numbers

export function escapeXml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

const superscriptDigits: Record<string, string> = {
  "-": "\u207b",
  "0": "\u2070",
  "1": "\u00b9",
  "2": "\u00b2",
  "3": "\u00b3",
  "4": "\u2074",
  "5": "\u2075",
  "6": "\u2076",
  "7": "\u2077",
  "8": "\u2078",
  "9": "\u2079",
};

/** Tick label: plain decimals for moderate magnitudes, 10 to a superscript power otherwise. */
export function formatTick(value: number, log: boolean): string {
  if (value === 0) return "0";
  const exponent = Math.round(Math.log10(Math.abs(value)));
  if (log && Math.abs(value / 10 ** exponent - 1) < 1e-9 && (exponent < -2 || exponent > 3)) {
    return `10${String(exponent).replace(/./g, (c) => superscriptDigits[c] ?? c)}`;
  }
  if (Math.abs(value) >= 1e5 || Math.abs(value) < 1e-3) return value.toExponential(1).replace("e+", "e");
  return String(Number(value.toPrecision(4)));
}

/** Evenly spaced ticks at 1, 2 or 5 times a power of ten, about `target` of them. */
export function linearTicks(min: number, max: number, target = 5): number[] {
  if (!(max > min)) return [min];
  const rough = (max - min) / target;
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= rough) ?? 10 * power;
  const ticks: number[] = [];
  for (let v = Math.ceil(min / step - 1e-9) * step; v <= max + step * 1e-9; v += step) ticks.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return ticks;
}

/** Powers of ten inside [min, max]; with fewer than two, also 2 and 5 times them. */
export function logTicks(min: number, max: number): number[] {
  const ticks: number[] = [];
  for (let e = Math.floor(Math.log10(min)); e <= Math.ceil(Math.log10(max)); e++) {
    const v = 10 ** e;
    if (v >= min * (1 - 1e-9) && v <= max * (1 + 1e-9)) ticks.push(v);
  }
  if (ticks.length >= 2) return ticks;
  const dense: number[] = [];
  for (let e = Math.floor(Math.log10(min)); e <= Math.ceil(Math.log10(max)); e++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** e;
      if (v >= min * (1 - 1e-9) && v <= max * (1 + 1e-9)) dense.push(v);
    }
  }
  return dense;
}

/** Maps a data value onto [pixel0, pixel1]. */
export function toPixel(axis: Axis, value: number, pixel0: number, pixel1: number): number {
  const f = axis.log ? (Math.log10(value) - Math.log10(axis.min)) / (Math.log10(axis.max) - Math.log10(axis.min)) : (value - axis.min) / (axis.max - axis.min);
  return pixel0 + f * (pixel1 - pixel0);
}

function n(value: number): string {
  return Number.isFinite(value) ? value.toFixed(2) : "0";
}

function text(x: number, y: number, content: string, attributes = ""): string {
  return `<text x="${n(x)}" y="${n(y)}" ${attributes}>${escapeXml(content)}</text>`;
}

function svgDocument(width: number, height: number, body: string[]): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="${fontFamily}" font-size="13">`,
    `<rect x="0" y="0" width="${width}" height="${height}" fill="white"/>`,
    ...body,
    "</svg>",
  ].join("\n");
}

interface Frame {
  left: number;
  right: number;
  top: number;
  bottom: number;
}

/** Draws the axes box, ticks, tick labels and axis labels of one panel. */
function drawAxes(frame: Frame, x: Axis, y: Axis, options: { xLabel?: string; yLabel?: string; xTickLabels?: boolean; yTicks?: number[] }): string[] {
  const out: string[] = [];
  const { left, right, top, bottom } = frame;
  const xTicks = x.log ? logTicks(x.min, x.max) : linearTicks(x.min, x.max);
  const yTicks = options.yTicks ?? (y.log ? logTicks(y.min, y.max) : linearTicks(y.min, y.max, 4));
  for (const t of xTicks) {
    const px = toPixel(x, t, left, right);
    out.push(`<line x1="${n(px)}" y1="${n(bottom)}" x2="${n(px)}" y2="${n(bottom - 5)}" stroke="black"/>`);
    out.push(`<line x1="${n(px)}" y1="${n(top)}" x2="${n(px)}" y2="${n(top + 5)}" stroke="black"/>`);
    if (options.xTickLabels !== false) out.push(text(px, bottom + 16, formatTick(t, x.log), 'text-anchor="middle"'));
  }
  for (const t of yTicks) {
    const py = toPixel(y, t, bottom, top);
    out.push(`<line x1="${n(left)}" y1="${n(py)}" x2="${n(left + 5)}" y2="${n(py)}" stroke="black"/>`);
    out.push(`<line x1="${n(right)}" y1="${n(py)}" x2="${n(right - 5)}" y2="${n(py)}" stroke="black"/>`);
    out.push(text(left - 6, py + 4, formatTick(t, y.log), 'text-anchor="end"'));
  }
  out.push(`<rect x="${n(left)}" y="${n(top)}" width="${n(right - left)}" height="${n(bottom - top)}" fill="none" stroke="black"/>`);
  if (options.xLabel !== undefined) out.push(text((left + right) / 2, bottom + 36, options.xLabel, 'text-anchor="middle" font-size="14"'));
  if (options.yLabel !== undefined) {
    const cy = (top + bottom) / 2;
    out.push(text(left - 58, cy, options.yLabel, `text-anchor="middle" font-size="14" transform="rotate(-90 ${n(left - 58)} ${n(cy)})"`));
  }
  return out;
}

/** Polyline of a step histogram; bins whose value is not drawable on a log axis break the line. */
function stepPath(edges: Float64Array, values: Float64Array, x: Axis, y: Axis, frame: Frame): string {
  const segments: string[] = [];
  let current: string[] = [];
  const flush = () => {
    if (current.length > 0) segments.push(`M${current.join("L")}`);
    current = [];
  };
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!Number.isFinite(v) || (y.log && v <= 0) || (x.log && edges[i] <= 0)) {
      flush();
      continue;
    }
    const clamped = Math.min(Math.max(v, y.min), y.max);
    const py = toPixel(y, clamped, frame.bottom, frame.top);
    current.push(`${n(toPixel(x, edges[i], frame.left, frame.right))},${n(py)}`);
    current.push(`${n(toPixel(x, edges[i + 1], frame.left, frame.right))},${n(py)}`);
  }
  flush();
  return segments.join(" ");
}

/** Dash pattern of a model line: every second model is dashed, the reference never. */
function dashFor(index: number): string {
  if (index === 0 || index % 2 === 1) return "";
  return ' stroke-dasharray="6 3"';
}

/** Range of the y axis that shows every positive value with headroom for the legend. */
function valueAxis(series: HistogramSeries[], log: boolean, legendRows: number): Axis {
  let max = -Infinity;
  let minPositive = Infinity;
  let min = Infinity;
  for (const s of series) {
    for (const v of s.values) {
      if (!Number.isFinite(v)) continue;
      max = Math.max(max, v);
      min = Math.min(min, v);
      if (v > 0) minPositive = Math.min(minPositive, v);
    }
  }
  if (log) {
    if (minPositive === Infinity) return { min: 1e-3, max: 1, log };
    const decades = Math.log10(max / minPositive) + 0.3;
    return { min: minPositive / 2, max: max * 10 ** (decades * 0.12 * legendRows), log };
  }
  if (max === -Infinity) return { min: 0, max: 1, log };
  const low = Math.min(min, 0);
  const high = max > low ? max : low + 1;
  return { min: low, max: high + (high - low) * (0.1 + 0.08 * legendRows), log };
}

// ---------------------------------------------------------------------------------------------
// Step histogram with ratio panel

/**
 * Draws a step histogram of the reference (filled grey) and each model (coloured lines). The
 * panel below shows model / reference per bin, with a shaded band at 1 +- 10%, on a y range of
 * 0.5 to 1.5 where values outside are drawn at the edge.
 */
export function stepHistogramSvg(plot: StepHistogramPlot): string {
  const width = 640;
  const hasReference = plot.reference !== false;
  const showRatio = hasReference && plot.ratio !== false && plot.series.length > 1;
  // Style index: the reference's grey is skipped when there is no reference.
  const styleOf = (index: number) => (hasReference ? index : index + 1);
  const height = showRatio ? 520 : 440;
  const legendRows = plot.series.length + (plot.notes?.length ?? 0);
  const main: Frame = { left: 88, right: width - 20, top: plot.title ? 40 : 16, bottom: showRatio ? 350 : 380 };
  const ratioFrame: Frame = { left: main.left, right: main.right, top: 362, bottom: 462 };
  for (const s of plot.series) {
    if (s.values.length !== plot.edges.length - 1) {
      throw new Error(`histogram series '${s.label}' has ${s.values.length} values for ${plot.edges.length - 1} bins`);
    }
  }

  const xLog = plot.logX === true && plot.edges[0] > 0;
  const x: Axis = { min: plot.edges[0], max: plot.edges[plot.edges.length - 1], log: xLog };
  const y = valueAxis(plot.series, plot.logY === true, legendRows);
  const body: string[] = [];
  if (plot.title) body.push(text(width / 2, 24, plot.title, 'text-anchor="middle" font-size="15" font-weight="bold"'));
  body.push(`<clipPath id="main-clip"><rect x="${main.left}" y="${main.top}" width="${main.right - main.left}" height="${main.bottom - main.top}"/></clipPath>`);

  // The reference as a filled area under its steps, then every series as a line.
  plot.series.forEach((s, position) => {
    const path = stepPath(plot.edges, s.values, x, y, main);
    if (path === "") return;
    const index = styleOf(position);
    const colour = seriesColours[index % seriesColours.length];
    if (index === 0) {
      const base = n(y.log ? main.bottom : toPixel(y, Math.max(0, y.min), main.bottom, main.top));
      for (const segment of path.split(" ")) {
        const points = segment.slice(1).split("L");
        const first = points[0].split(",")[0];
        const last = points[points.length - 1].split(",")[0];
        body.push(`<path d="M${first},${base}L${points.join("L")}L${last},${base}Z" fill="${referenceFill}" stroke="none" clip-path="url(#main-clip)"/>`);
      }
    }
    const dash = dashFor(index);
    body.push(`<path d="${path}" fill="none" stroke="${colour}" stroke-width="${index === 0 ? 1.6 : 2}"${dash} clip-path="url(#main-clip)"/>`);
  });
  body.push(...drawAxes(main, x, y, { xLabel: showRatio ? undefined : plot.xLabel, yLabel: plot.yLabel, xTickLabels: !showRatio }));

  // Legend in the top right corner.
  const legendX = main.right - 200;
  let legendY = main.top + 20;
  plot.series.forEach((s, position) => {
    const index = styleOf(position);
    const colour = seriesColours[index % seriesColours.length];
    if (index === 0) body.push(`<rect x="${legendX}" y="${legendY - 9}" width="26" height="10" fill="${referenceFill}" stroke="${colour}"/>`);
    else body.push(`<line x1="${legendX}" y1="${legendY - 4}" x2="${legendX + 26}" y2="${legendY - 4}" stroke="${colour}" stroke-width="2"${dashFor(index)}/>`);
    body.push(text(legendX + 32, legendY, s.label));
    legendY += 18;
  });
  for (const note of plot.notes ?? []) {
    body.push(text(legendX, legendY, note, 'font-size="12" fill="#333"'));
    legendY += 16;
  }

  if (showRatio) {
    const ratioAxis: Axis = { min: 0.5, max: 1.5, log: false };
    const reference = plot.series[0].values;
    const bandTop = toPixel(ratioAxis, 1.1, ratioFrame.bottom, ratioFrame.top);
    const bandBottom = toPixel(ratioAxis, 0.9, ratioFrame.bottom, ratioFrame.top);
    body.push(`<rect x="${ratioFrame.left}" y="${n(bandTop)}" width="${ratioFrame.right - ratioFrame.left}" height="${n(bandBottom - bandTop)}" fill="${referenceFill}"/>`);
    const unitRatio = toPixel(ratioAxis, 1, ratioFrame.bottom, ratioFrame.top);
    body.push(`<line x1="${ratioFrame.left}" y1="${n(unitRatio)}" x2="${ratioFrame.right}" y2="${n(unitRatio)}" stroke="${seriesColours[0]}" stroke-dasharray="3 3"/>`);
    plot.series.slice(1).forEach((s, k) => {
      const ratio = s.values.map((v, i) => (reference[i] > 0 ? v / reference[i] : NaN));
      const path = stepPath(plot.edges, ratio, x, ratioAxis, ratioFrame);
      const index = k + 1;
      const dash = dashFor(index);
      if (path !== "") body.push(`<path d="${path}" fill="none" stroke="${seriesColours[index % seriesColours.length]}" stroke-width="1.6"${dash}/>`);
    });
    body.push(...drawAxes(ratioFrame, x, ratioAxis, { xLabel: plot.xLabel, yLabel: "Model / ref.", yTicks: [0.5, 1, 1.5] }));
  }
  return svgDocument(width, height, body);
}

// ---------------------------------------------------------------------------------------------
// Colour maps

const colourStops: [number, number, number][] = [
  [32, 16, 80],
  [44, 84, 160],
  [34, 150, 140],
  [120, 200, 80],
  [250, 230, 60],
];

/** Colour of f in [0, 1] on a dark-blue to yellow scale; NaN is light grey. */
export function colourOf(f: number): string {
  if (!Number.isFinite(f)) return "#eeeeee";
  const t = Math.min(Math.max(f, 0), 1) * (colourStops.length - 1);
  const i = Math.min(Math.floor(t), colourStops.length - 2);
  const u = t - i;
  const c = colourStops[i].map((v, k) => Math.round(v + u * (colourStops[i + 1][k] - v)));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

export interface ColourScale {
  min: number;
  max: number;
  log: boolean;
}

function colourFraction(scale: ColourScale, value: number): number {
  if (scale.log) return value > 0 ? (Math.log10(value) - Math.log10(scale.min)) / (Math.log10(scale.max) - Math.log10(scale.min)) : NaN;
  return (value - scale.min) / (scale.max - scale.min);
}

/** Builds a log colour scale over the positive values, reaching at most `decades` decades below the maximum. */
export function logColourScale(arrays: ArrayLike<number>[], decades = 5): ColourScale {
  let max = 0;
  let minPositive = Infinity;
  for (const a of arrays) {
    for (let i = 0; i < a.length; i++) {
      if (a[i] > max) max = a[i];
      if (a[i] > 0 && a[i] < minPositive) minPositive = a[i];
    }
  }
  if (max <= 0) return { min: 1e-3, max: 1, log: true };
  return { min: Math.max(minPositive, max / 10 ** decades), max, log: true };
}

function colourBar(x: number, top: number, bottom: number, scale: ColourScale, label: string): string[] {
  const out: string[] = [];
  const steps = 40;
  const h = (bottom - top) / steps;
  for (let i = 0; i < steps; i++) out.push(`<rect x="${n(x)}" y="${n(bottom - (i + 1) * h)}" width="14" height="${n(h + 0.5)}" fill="${colourOf((i + 0.5) / steps)}"/>`);
  out.push(`<rect x="${n(x)}" y="${n(top)}" width="14" height="${n(bottom - top)}" fill="none" stroke="black"/>`);
  const axis: Axis = { min: scale.min, max: scale.max, log: scale.log };
  const ticks = scale.log ? logTicks(scale.min, scale.max) : linearTicks(scale.min, scale.max, 4);
  for (const t of ticks) {
    const py = toPixel(axis, t, bottom, top);
    out.push(`<line x1="${n(x + 14)}" y1="${n(py)}" x2="${n(x + 18)}" y2="${n(py)}" stroke="black"/>`);
    out.push(text(x + 21, py + 4, formatTick(t, scale.log), 'font-size="11"'));
  }
  const cy = (top + bottom) / 2;
  out.push(text(x + 70, cy, label, `text-anchor="middle" font-size="13" transform="rotate(90 ${n(x + 70)} ${n(cy)})"`));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Polar heat maps (average energy in one layer)

export interface PolarPanel {
  label: string;
  /** Per voxel of the layer, alpha-major then r (the file's order): alphaBins x rBins values. */
  values: Float64Array;
}

export interface PolarHeatmapPlot {
  title?: string;
  /** Radial edges in mm, starting at 0. */
  rEdges: number[];
  alphaBins: number;
  panels: PolarPanel[];
  colourLabel: string;
}

/** Annular sector between radii r0 < r1 and angles a0 < a1 (rad), centred at (cx, cy). */
function sectorPath(cx: number, cy: number, r0: number, r1: number, a0: number, a1: number): string {
  // SVG y grows downwards, so angles are mirrored to keep alpha counter-clockwise.
  const point = (r: number, a: number) => `${n(cx + r * Math.cos(a))},${n(cy - r * Math.sin(a))}`;
  const large = a1 - a0 > Math.PI ? 1 : 0;
  if (a1 - a0 >= 2 * Math.PI - 1e-9) {
    // A full ring: two half arcs per circle, the inner one reversed (even-odd fill).
    const outer = `M${point(r1, 0)}A${n(r1)},${n(r1)} 0 1 0 ${point(r1, Math.PI)}A${n(r1)},${n(r1)} 0 1 0 ${point(r1, 0)}Z`;
    if (r0 <= 0) return outer;
    return `${outer}M${point(r0, 0)}A${n(r0)},${n(r0)} 0 1 1 ${point(r0, Math.PI)}A${n(r0)},${n(r0)} 0 1 1 ${point(r0, 0)}Z`;
  }
  if (r0 <= 0) return `M${n(cx)},${n(cy)}L${point(r1, a0)}A${n(r1)},${n(r1)} 0 ${large} 0 ${point(r1, a1)}Z`;
  return `M${point(r0, a0)}L${point(r1, a0)}A${n(r1)},${n(r1)} 0 ${large} 0 ${point(r1, a1)}L${point(r0, a1)}A${n(r0)},${n(r0)} 0 ${large} 1 ${point(r0, a0)}Z`;
}

/**
 * Side-by-side polar maps of one layer, one per sample, on a shared log colour scale. The radius
 * axis is drawn with sqrt(r) spacing so that the dense inner bins stay visible.
 */
export function polarHeatmapSvg(plot: PolarHeatmapPlot): string {
  const rBins = plot.rEdges.length - 1;
  const size = 220;
  const gap = 30;
  const width = 30 + plot.panels.length * (size + gap) + 110;
  const height = size + (plot.title ? 104 : 84);
  const top = plot.title ? 50 : 30;
  const scale = logColourScale(plot.panels.map((p) => p.values));
  const radius = size / 2;
  const rMax = plot.rEdges[rBins];
  const toRadius = (r: number) => radius * Math.sqrt(r / rMax);
  const body: string[] = [];
  if (plot.title) body.push(text(width / 2, 24, plot.title, 'text-anchor="middle" font-size="15" font-weight="bold"'));

  plot.panels.forEach((panel, p) => {
    if (panel.values.length !== plot.alphaBins * rBins) {
      throw new Error(`polar panel '${panel.label}' has ${panel.values.length} values, expected ${plot.alphaBins} x ${rBins}`);
    }
    const cx = 30 + p * (size + gap) + radius;
    const cy = top + radius;
    for (let a = 0; a < plot.alphaBins; a++) {
      // Alpha bins are the CaloChallenge's: evenly split over [-pi, pi).
      const a0 = -Math.PI + (2 * Math.PI * a) / plot.alphaBins;
      const a1 = -Math.PI + (2 * Math.PI * (a + 1)) / plot.alphaBins;
      for (let r = 0; r < rBins; r++) {
        const value = panel.values[a * rBins + r];
        const colour = colourOf(colourFraction(scale, value));
        body.push(`<path d="${sectorPath(cx, cy, toRadius(plot.rEdges[r]), toRadius(plot.rEdges[r + 1]), a0, a1)}" fill="${colour}" fill-rule="evenodd" stroke="white" stroke-width="0.3"/>`);
      }
    }
    body.push(text(cx, top + size + 22, panel.label, 'text-anchor="middle"'));
  });
  body.push(text(30, height - 8, `Radius drawn as sqrt(r); outer edge r = ${formatTick(rMax, false)} mm`, 'font-size="11" fill="#333"'));
  body.push(...colourBar(30 + plot.panels.length * (size + gap), top, top + size, scale, plot.colourLabel));
  return svgDocument(width, height, body);
}

// ---------------------------------------------------------------------------------------------
// 2D histograms (one panel per sample)

export interface Histogram2dPanel {
  label: string;
  /** Counts, row-major [yBins][xBins]. */
  counts: Float64Array;
}

export interface Histogram2dPlot {
  title?: string;
  xLabel: string;
  yLabel: string;
  xEdges: Float64Array;
  yEdges: Float64Array;
  logX?: boolean;
  logY?: boolean;
  panels: Histogram2dPanel[];
  colourLabel: string;
}

/** Side-by-side 2D histograms on a shared log colour scale; empty cells stay white. */
export function histogram2dSvg(plot: Histogram2dPlot): string {
  const xBins = plot.xEdges.length - 1;
  const yBins = plot.yEdges.length - 1;
  const size = 240;
  const panelWidth = size + 90;
  const width = 20 + plot.panels.length * panelWidth + 110;
  const top = plot.title ? 44 : 20;
  const height = top + size + 60;
  const scale = logColourScale(plot.panels.map((p) => p.counts), 4);
  const x: Axis = { min: plot.xEdges[0], max: plot.xEdges[xBins], log: plot.logX === true };
  const y: Axis = { min: plot.yEdges[0], max: plot.yEdges[yBins], log: plot.logY === true };
  const body: string[] = [];
  if (plot.title) body.push(text(width / 2, 24, plot.title, 'text-anchor="middle" font-size="15" font-weight="bold"'));

  plot.panels.forEach((panel, p) => {
    if (panel.counts.length !== xBins * yBins) throw new Error(`2D panel '${panel.label}' has ${panel.counts.length} cells, expected ${yBins} x ${xBins}`);
    const frame: Frame = { left: 20 + p * panelWidth + 70, right: 20 + p * panelWidth + 70 + size, top, bottom: top + size };
    for (let j = 0; j < yBins; j++) {
      for (let i = 0; i < xBins; i++) {
        const value = panel.counts[j * xBins + i];
        if (!(value > 0)) continue;
        const x0 = toPixel(x, plot.xEdges[i], frame.left, frame.right);
        const x1 = toPixel(x, plot.xEdges[i + 1], frame.left, frame.right);
        const y0 = toPixel(y, plot.yEdges[j + 1], frame.bottom, frame.top);
        const y1 = toPixel(y, plot.yEdges[j], frame.bottom, frame.top);
        body.push(`<rect x="${n(x0)}" y="${n(y0)}" width="${n(x1 - x0 + 0.3)}" height="${n(y1 - y0 + 0.3)}" fill="${colourOf(colourFraction(scale, value))}"/>`);
      }
    }
    body.push(...drawAxes(frame, x, y, { xLabel: plot.xLabel, yLabel: p === 0 ? plot.yLabel : undefined }));
    body.push(text((frame.left + frame.right) / 2, top - 6, panel.label, 'text-anchor="middle"'));
  });
  body.push(...colourBar(20 + plot.panels.length * panelWidth + 10, top, top + size, scale, plot.colourLabel));
  return svgDocument(width, height, body);
}

// ---------------------------------------------------------------------------------------------
// PNG

/** Renders an SVG document to PNG at `scale` times its size, with the system fonts. */
export function svgToPng(svg: string, scale = 1.5): Buffer {
  const renderer = new Resvg(svg, {
    fitTo: { mode: "zoom", value: scale },
    font: { loadSystemFonts: true, defaultFontFamily: "DejaVu Sans" },
    background: "white",
  });
  return renderer.render().asPng();
}
