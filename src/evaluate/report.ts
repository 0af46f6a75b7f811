// The report folder: every plot as SVG and PNG under plots/, metrics.json, and an index.html
// that shows all plots and tables without any network access. Each file is written under a
// temporary name and renamed when complete. metrics.json and then index.html are written last,
// after every plot.
import * as fs from "node:fs";
import * as path from "node:path";

import { writeFileAtomic } from "../torch";
import { escapeXml, svgToPng } from "./plot";

export interface ReportPlot {
  /** File stem under plots/, letters, digits, '-' and '_' only. */
  name: string;
  caption: string;
  svg: string;
}

export interface ReportTable {
  caption: string;
  header: string[];
  rows: (string | number)[][];
}

export interface ReportSection {
  title: string;
  /** A paragraph under the title. */
  description?: string;
  tables?: ReportTable[];
  plots?: ReportPlot[];
}

export interface ReportContent {
  title: string;
  /** Lines under the title: dataset, files, date. */
  summary: string[];
  sections: ReportSection[];
}

/** Number formatting for tables: 4 significant digits, exponent form for extreme magnitudes. */
export function formatNumber(value: number | string): string {
  if (typeof value === "string") return value;
  if (!Number.isFinite(value)) return Number.isNaN(value) ? "n/a" : String(value);
  if (value === 0) return "0";
  const magnitude = Math.abs(value);
  if (magnitude >= 1e5 || magnitude < 1e-3) return value.toExponential(3);
  return String(Number(value.toPrecision(4)));
}

function tableHtml(table: ReportTable): string {
  const head = table.header.map((h) => `<th>${escapeXml(h)}</th>`).join("");
  const body = table.rows.map((row) => `<tr>${row.map((cell, i) => (i === 0 ? `<th>${escapeXml(String(cell))}</th>` : `<td>${escapeXml(formatNumber(cell))}</td>`)).join("")}</tr>`).join("\n");
  return `<table>\n<caption>${escapeXml(table.caption)}</caption>\n<thead><tr>${head}</tr></thead>\n<tbody>\n${body}\n</tbody>\n</table>`;
}

const styleSheet = `
body { font-family: "DejaVu Sans", Arial, sans-serif; margin: 24px auto; max-width: 1400px; color: #222; }
h1 { font-size: 24px; } h2 { font-size: 19px; border-bottom: 1px solid #ccc; padding-bottom: 4px; margin-top: 36px; }
p.summary { margin: 2px 0; color: #444; }
table { border-collapse: collapse; margin: 12px 0 20px; font-size: 13px; }
caption { text-align: left; font-weight: bold; padding-bottom: 4px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; } td { text-align: right; font-variant-numeric: tabular-nums; }
thead th { background: #f0f0f0; } tbody th { text-align: left; font-weight: normal; background: #fafafa; }
.plots { display: flex; flex-wrap: wrap; gap: 18px; }
figure { margin: 0; } figure img { max-width: 640px; width: 100%; border: 1px solid #eee; }
figcaption { font-size: 13px; color: #444; max-width: 640px; }
figcaption a { color: #2b6cd6; margin-left: 6px; }
#plot-status { margin-top: 30px; font-size: 13px; color: #666; }
`;

// Counts the plots that decoded and names those that did not, in #plot-status and in the body's
// data-plots-loaded attribute, so a reader (or a headless browser) notices a missing file at once.
const statusScript = `
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.querySelectorAll("img.plot"));
  var failed = images.filter(function (image) { return !(image.complete && image.naturalWidth > 0); });
  var status = document.getElementById("plot-status");
  status.textContent = failed.length === 0
    ? "All " + images.length + " plots loaded."
    : failed.length + " of " + images.length + " plots failed to load: " + failed.map(function (image) { return image.getAttribute("src"); }).join(", ");
  document.body.setAttribute("data-plots-loaded", (images.length - failed.length) + "/" + images.length);
});
`;

function indexHtml(content: ReportContent): string {
  const parts: string[] = [
    "<!DOCTYPE html>",
    '<html lang="en">',
    "<head>",
    '<meta charset="utf-8">',
    `<title>${escapeXml(content.title)}</title>`,
    `<style>${styleSheet}</style>`,
    "</head>",
    "<body>",
    `<h1>${escapeXml(content.title)}</h1>`,
    ...content.summary.map((line) => `<p class="summary">${escapeXml(line)}</p>`),
    '<p class="summary"><a href="metrics.json">metrics.json</a> holds every number of this report.</p>',
  ];
  for (const section of content.sections) {
    parts.push(`<h2>${escapeXml(section.title)}</h2>`);
    if (section.description) parts.push(`<p>${escapeXml(section.description)}</p>`);
    for (const table of section.tables ?? []) parts.push(tableHtml(table));
    if ((section.plots ?? []).length > 0) {
      parts.push('<div class="plots">');
      for (const plot of section.plots ?? []) {
        const svg = `plots/${plot.name}.svg`;
        const png = `plots/${plot.name}.png`;
        parts.push(
          `<figure><img class="plot" src="${svg}" alt="${escapeXml(plot.caption)}"><figcaption>${escapeXml(plot.caption)}<a href="${svg}">SVG</a><a href="${png}">PNG</a></figcaption></figure>`,
        );
      }
      parts.push("</div>");
    }
  }
  parts.push('<p id="plot-status">Plots not checked yet (the check needs JavaScript).</p>', `<script>${statusScript}</script>`, "</body>", "</html>");
  return parts.join("\n");
}

/**
 * Writes the report into `outDir` (created if missing): plots/NAME.svg and plots/NAME.png for
 * every plot, then metrics.json and index.html. Returns the path of index.html.
 */
export function writeReport(outDir: string, content: ReportContent, metrics: unknown): string {
  const plotDir = path.join(outDir, "plots");
  fs.mkdirSync(plotDir, { recursive: true });
  const seen = new Set<string>();
  for (const section of content.sections) {
    for (const plot of section.plots ?? []) {
      if (!/^[A-Za-z0-9_-]+$/.test(plot.name)) throw new Error(`plot name '${plot.name}' must contain only letters, digits, '-' and '_'`);
      if (seen.has(plot.name)) throw new Error(`two plots are named '${plot.name}'`);
      seen.add(plot.name);
      writeFileAtomic(path.join(plotDir, `${plot.name}.svg`), plot.svg);
      writeFileAtomic(path.join(plotDir, `${plot.name}.png`), svgToPng(plot.svg));
    }
  }
  writeFileAtomic(path.join(outDir, "metrics.json"), `${JSON.stringify(metrics, jsonNumbers, 2)}\n`);
  const index = path.join(outDir, "index.html");
  writeFileAtomic(index, indexHtml(content));
  return index;
}

/** JSON has no NaN or infinities; they are written as null. */
function jsonNumbers(_key: string, value: unknown): unknown {
  return typeof value === "number" && !Number.isFinite(value) ? null : value;
}
