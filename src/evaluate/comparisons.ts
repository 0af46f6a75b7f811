// One quantity of the reference against each model: histograms on shared bins, the EMD and the
// separation power per model, and the step-histogram plot with its ratio panel.
import { finiteValues, histogram, histogramEdges, normalise, separationPower, Sample, wasserstein1, weightedWasserstein1 } from "./metrics";
import { HistogramSeries, stepHistogramSvg } from "./plot";
import type { ReportPlot } from "./report";
import { formatNumber } from "./report";

/** A labelled sample: the reference label ("Geant4" by default) or a model label. */
export interface LabelledSample {
  label: string;
  values: Sample;
}

export interface ComparisonSpec {
  /** Plot file stem. */
  name: string;
  title: string;
  /** x-axis label with unit, e.g. "E_tot [MeV]". */
  xLabel: string;
  bins?: number;
  logX?: boolean;
  logY?: boolean;
  /** Compute and show the EMD in the legend. */
  emd?: boolean;
  /** Compute the separation power and list it under the legend. */
  separation?: boolean;
  /** Draw the plot (default true); without it only the numbers are computed. */
  draw?: boolean;
}

export interface Comparison {
  /** Per model, in the order given. */
  emd: number[];
  separationPower: number[];
  /** Null when the spec's `draw` is false. */
  plot: ReportPlot | null;
}

/**
 * Histograms the reference and every model on bins from the reference's range, and returns the
 * EMD (on the unbinned values) and separation power (on the histograms) of each model.
 */
export function compareSamples(spec: ComparisonSpec, reference: LabelledSample, models: LabelledSample[]): Comparison {
  const log = spec.logX === true;
  const referenceValues = log ? finiteValues(reference.values).filter((v) => v > 0) : finiteValues(reference.values);
  const edges = histogramEdges(referenceValues, { bins: spec.bins ?? 40, scale: log ? "log" : "linear" });
  const referenceCounts = histogram(reference.values, edges);
  const emd: number[] = [];
  const separation: number[] = [];
  const series: HistogramSeries[] = [{ label: reference.label, values: normalise(referenceCounts) }];
  for (const model of models) {
    const counts = histogram(model.values, edges);
    const distance = spec.emd === false ? NaN : wasserstein1(reference.values, model.values);
    const power = separationPower(referenceCounts, counts);
    emd.push(distance);
    separation.push(power);
    series.push({ label: spec.emd === false ? model.label : `${model.label} (EMD ${formatNumber(distance)})`, values: normalise(counts) });
  }
  if (spec.draw === false) return { emd, separationPower: separation, plot: null };
  const notes = spec.separation === true ? models.map((m, i) => `sep. power ${m.label}: ${formatNumber(separation[i])}`) : [];
  const svg = stepHistogramSvg({ title: spec.title, xLabel: spec.xLabel, yLabel: "Fraction of showers", edges, series, logX: log, logY: spec.logY ?? true, notes });
  return { emd, separationPower: separation, plot: { name: spec.name, caption: spec.title, svg } };
}

export interface ProfileSpec {
  name: string;
  title: string;
  xLabel: string;
  yLabel: string;
  /** Bin edges of the profile. */
  edges: Float64Array;
  logY?: boolean;
}

/**
 * Compares mean-energy profiles (one value per bin, e.g. mean energy per layer). The EMD is that
 * of the energy-weighted distributions over the bin centres, in the unit of the x axis.
 */
export function compareProfiles(spec: ProfileSpec, reference: { label: string; values: Float64Array }, models: { label: string; values: Float64Array }[]): Comparison & { plot: ReportPlot } {
  const centres = Float64Array.from({ length: spec.edges.length - 1 }, (_, i) => 0.5 * (spec.edges[i] + spec.edges[i + 1]));
  const emd = models.map((m) => weightedWasserstein1(centres, reference.values, m.values));
  const series: HistogramSeries[] = [
    { label: reference.label, values: reference.values },
    ...models.map((m, i) => ({ label: `${m.label} (EMD ${formatNumber(emd[i])})`, values: m.values })),
  ];
  const svg = stepHistogramSvg({ title: spec.title, xLabel: spec.xLabel, yLabel: spec.yLabel, edges: spec.edges, series, logY: spec.logY ?? true });
  return { emd, separationPower: [], plot: { name: spec.name, caption: spec.title, svg } };
}

/**
 * Plots a metric per layer for each model as steps over layer index (no ratio panel), e.g. the
 * separation power of E_layer by layer.
 */
export function perLayerPlot(name: string, title: string, yLabel: string, values: { label: string; values: number[] }[], logY = true): ReportPlot {
  const layers = values[0]?.values.length ?? 0;
  const edges = Float64Array.from({ length: layers + 1 }, (_, i) => i - 0.5);
  const series: HistogramSeries[] = values.map((v) => ({ label: v.label, values: Float64Array.from(v.values, (x) => (Number.isFinite(x) ? x : NaN)) }));
  const svg = stepHistogramSvg({ title, xLabel: "Layer", yLabel, edges, series, logY, reference: false });
  return { name, caption: title, svg };
}
