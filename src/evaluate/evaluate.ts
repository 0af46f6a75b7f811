// `caloscore evaluate`: reads a reference shower file and one or more generated files, computes
// the CaloScore paper's distributions (with EMDs), the CaloChallenge metrics (separation powers,
// classifier AUCs, FPD and KPD) and writes the report folder.
//
// metrics.json schema (version "caloscore-evaluate/1"); NaN is written as null:
//   schema, dataset, created (ISO time), layer_ids: [L] binning-file ids of the layers, in the
//   order of every per-layer array below,
//   reference: { path, showers },
//   models: { LABEL: {
//     path, showers,
//     emd: {                      1-Wasserstein distance to the reference, in the unit of each
//       E_tot [MeV], hits [voxels], max_voxel_over_E_tot,           quantity (paper features:
//       max_voxel_over_E_layer: [L], width_eta: [L] [mm],           voxels above the hit
//       width_phi: [L] [mm],                                       threshold, no cut)
//       profile_layer [layers], profile_r, profile_x, profile_y [mm]: energy-weighted mean
//         energy profiles compared as distributions over position },
//     separation_power: {         CaloChallenge features (voxels below the evaluation cut zeroed)
//       E_tot_over_E_inc, E_layer: [L], EC_eta: [L], EC_phi: [L], width_eta: [L],
//       width_phi: [L], sparsity: [L] },
//     auc_low_level, jsd_low_level, auc_high_level, jsd_high_level (null without classifiers;
//       JSD in nats, at most ln 2),
//     classifier_low_level, classifier_high_level: ClassifierResult or null,
//     fpd, fpd_error, kpd, kpd_error (JetNet definitions on the high-level feature matrix) } }
import * as path from "node:path";

import { DatasetName, Geometry, loadGeometry, parseDatasetName } from "../calo/binning";
import { allocateFeatures, computeFeaturesInto, evaluationCut, hitThreshold, ShowerFeatures } from "../calo/features";
import { initHdf5, openShowerFile, rowsPerRead, ShowerFile, showerBlocks } from "../calo/hdf5";
import { keep, noGrad, Tensor, tensor, tidy, zeros } from "../torch";
import { ClassifierOptions, ClassifierResult, trainClassifier } from "./classifier";
import { compareProfiles, compareSamples, Comparison, LabelledSample, perLayerPlot } from "./comparisons";
import { FeatureMatrix, fpd, FpdOptions, histogram, histogramEdges, kpd, KpdOptions } from "./metrics";
import { histogram2dSvg, polarHeatmapSvg } from "./plot";
import { formatNumber, ReportPlot, ReportSection, writeReport } from "./report";

export const metricsSchema = "caloscore-evaluate/1";

/** Default label of the reference sample in plots and tables. */
export const defaultReferenceLabel = "Geant4";

export interface GeneratedInput {
  label: string;
  path: string;
}

export interface EvaluateOptions {
  /** "1-photons", "1-pions", "2" or "3". */
  dataset: string;
  /** Reference shower file (HDF5). */
  reference: string;
  generated: GeneratedInput[];
  outDir: string;
  /** Label of the reference in plots and tables (default "Geant4"). */
  referenceLabel?: string;
  /** Train the low-level and high-level classifiers. */
  classifier: boolean;
  /** Read at most this many showers of each file (default all). */
  maxShowers?: number;
  classifierOptions?: ClassifierOptions;
  fpdOptions?: FpdOptions;
  kpdOptions?: KpdOptions;
  /** One line per step (file read, metric computed, classifier epoch). */
  log?: (line: string) => void;
}

export interface ModelMetrics {
  path: string;
  showers: number;
  emd: Record<string, number | number[]>;
  separation_power: Record<string, number | number[]>;
  auc_low_level: number | null;
  jsd_low_level: number | null;
  auc_high_level: number | null;
  jsd_high_level: number | null;
  classifier_low_level: ClassifierResult | null;
  classifier_high_level: ClassifierResult | null;
  fpd: number;
  fpd_error: number;
  kpd: number;
  kpd_error: number;
}

export interface Metrics {
  schema: string;
  dataset: DatasetName;
  created: string;
  layer_ids: number[];
  reference: { path: string; showers: number };
  models: Record<string, ModelMetrics>;
}

/** Data read from one file: features under both conventions, the mean image, classifier inputs. */
interface SampleData {
  label: string;
  path: string;
  count: number;
  /** Paper convention: hits above the hit threshold, no voxel cut. */
  paper: ShowerFeatures;
  /** CaloChallenge convention: voxels below the evaluation cut set to zero. */
  challenge: ShowerFeatures;
  /** Mean energy per voxel in MeV, [voxels]. */
  meanImage: Float64Array;
  /** [count, voxels + 1]: voxels / E_inc and log10(E_inc / MeV); only with classifiers. */
  lowLevel: Tensor | null;
}

/**
 * Builds the low-level classifier inputs of n showers: each row contains the voxels divided by E_inc, then
 * log10(E_inc / MeV); [n, voxels + 1] row-major.
 */
export function lowLevelInputs(energies: Float32Array, showers: Float32Array, voxels: number): Float32Array {
  const n = energies.length;
  const inputs = new Float32Array(n * (voxels + 1));
  for (let i = 0; i < n; i++) {
    const scale = 1 / energies[i];
    const row = i * (voxels + 1);
    for (let v = 0; v < voxels; v++) inputs[row + v] = showers[i * voxels + v] * scale;
    inputs[row + voxels] = Math.log10(energies[i]);
  }
  return inputs;
}

function readSample(label: string, file: ShowerFile, geometry: Geometry, limit: number, withLowLevel: boolean): SampleData {
  const count = Math.min(file.count, limit);
  const voxels = geometry.voxelCount;
  const paper = allocateFeatures(geometry, count);
  const challenge = allocateFeatures(geometry, count);
  const voxelSums = new Float64Array(voxels);
  const lowLevel = withLowLevel ? keep(zeros([count, voxels + 1])) : null;
  const paperOptions = { threshold: hitThreshold(geometry.dataset) };
  const challengeOptions = { threshold: 0, cut: evaluationCut(geometry.dataset) };

  for (const { start, end: blockEnd } of showerBlocks(file, rowsPerRead(voxels))) {
    if (start >= count) break;
    const end = Math.min(blockEnd, count);
    const energies = file.readEnergies(start, end);
    const showers = file.readShowers(start, end);
    computeFeaturesInto(paper, start, geometry, energies, showers, paperOptions);
    computeFeaturesInto(challenge, start, geometry, energies, showers, challengeOptions);
    for (let i = 0; i < end - start; i++) {
      const row = i * voxels;
      for (let v = 0; v < voxels; v++) voxelSums[v] += showers[row + v];
    }
    if (lowLevel !== null) {
      const inputs = lowLevelInputs(energies, showers, voxels);
      noGrad(() =>
        tidy(() => {
          lowLevel.slice(0, start, end).copy_(tensor(inputs, [end - start, voxels + 1]));
        }),
      );
    }
  }
  return { label, path: file.path, count, paper, challenge, meanImage: voxelSums.map((s) => s / Math.max(count, 1)), lowLevel };
}

/** Column `layer` of an [N, L] row-major array. */
function layerColumn(values: Float64Array, layers: number, layer: number): Float64Array {
  const count = values.length / layers;
  const out = new Float64Array(count);
  for (let i = 0; i < count; i++) out[i] = values[i * layers + layer];
  return out;
}

/** Mean over showers of each layer's value, [L]. */
function layerMeans(values: Float64Array, layers: number): Float64Array {
  const sums = new Float64Array(layers);
  const count = values.length / layers;
  for (let i = 0; i < values.length; i++) sums[i % layers] += values[i];
  return sums.map((s) => s / Math.max(count, 1));
}

/**
 * High-level feature matrix for FPD, KPD and the high-level classifier: E_tot / E_inc, then per
 * layer E_layer / E_inc, EC_eta, EC_phi, width_eta, width_phi and sparsity (CaloChallenge
 * convention). `columns` selects the columns to keep (those finite somewhere in the reference);
 * non-finite entries become 0. With `withEnergy` log10(E_inc) is appended.
 */
function highLevelMatrix(features: ShowerFeatures, columns: boolean[] | null, withEnergy: boolean): { matrix: FeatureMatrix; columns: boolean[] } {
  const layers = features.layers;
  const all = 1 + 6 * layers;
  const values = (i: number, c: number): number => {
    if (c === 0) return features.eRatio[i];
    const block = Math.floor((c - 1) / layers);
    const cell = i * layers + ((c - 1) % layers);
    switch (block) {
      case 0:
        return features.eLayer[cell] / features.eInc[i];
      case 1:
        return features.ecEta[cell];
      case 2:
        return features.ecPhi[cell];
      case 3:
        return features.widthEta[cell];
      case 4:
        return features.widthPhi[cell];
      default:
        return features.sparsity[cell];
    }
  };
  const selectedColumns =
    columns ??
    Array.from({ length: all }, (_, c) => {
      for (let i = 0; i < features.count; i++) if (Number.isFinite(values(i, c))) return true;
      return false;
    });
  const columnIndices = selectedColumns.map((k, c) => (k ? c : -1)).filter((c) => c >= 0);
  const width = columnIndices.length + (withEnergy ? 1 : 0);
  const matrix = new Float32Array(features.count * width);
  for (let i = 0; i < features.count; i++) {
    columnIndices.forEach((c, j) => {
      const v = values(i, c);
      matrix[i * width + j] = Number.isFinite(v) ? v : 0;
    });
    if (withEnergy) matrix[i * width + columnIndices.length] = Math.log10(features.eInc[i]);
  }
  return { matrix: { values: matrix, rows: features.count, columns: width }, columns: selectedColumns };
}

/** Layer indices shown as individual histograms: first, quartiles and last, without repeats. */
function representativeLayers(layers: number): number[] {
  return [...new Set([0, 0.25, 0.5, 0.75, 1].map((q) => Math.round(q * (layers - 1))))];
}

function opener(dataset: DatasetName) {
  return (filePath: string, role: string): ShowerFile => {
    try {
      return openShowerFile(filePath, { dataset });
    } catch (error) {
      throw new Error(`${role} file: ${(error as Error).message}`);
    }
  };
}

/**
 * Evaluates generated shower files against a reference and writes the report (plots/, metrics.json,
 * index.html) into options.outDir. Returns the metrics written to metrics.json.
 */
export async function evaluate(options: EvaluateOptions): Promise<Metrics> {
  const log = options.log ?? (() => undefined);
  if (options.generated.length === 0) throw new Error("evaluate: at least one generated file is required");
  const labels = options.generated.map((g) => g.label);
  const duplicate = labels.find((label, i) => labels.indexOf(label) !== i);
  if (duplicate !== undefined) throw new Error(`evaluate: the label '${duplicate}' is given to more than one generated file`);
  const referenceLabel = options.referenceLabel ?? defaultReferenceLabel;
  if (labels.includes(referenceLabel)) throw new Error(`evaluate: the label '${referenceLabel}' is reserved for the reference`);
  const dataset = parseDatasetName(options.dataset);
  const geometry = loadGeometry(dataset);
  const limit = options.maxShowers ?? Infinity;
  await initHdf5();
  const open = opener(dataset);

  // Read every file once; the reference first.
  const samples: SampleData[] = [];
  try {
    for (const [label, filePath, role] of [[referenceLabel, options.reference, "reference"], ...options.generated.map((g) => [g.label, g.path, `generated (${g.label})`])]) {
      const started = Date.now();
      const file = open(filePath, role);
      try {
        samples.push(readSample(label, file, geometry, limit, options.classifier));
      } finally {
        file.close();
      }
      log(`read ${samples[samples.length - 1].count} showers of ${label} from ${filePath} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    }
    const [reference, ...models] = samples;
    const metrics: Metrics = {
      schema: metricsSchema,
      dataset,
      created: new Date().toISOString(),
      layer_ids: geometry.layers.map((l) => l.id),
      reference: { path: options.reference, showers: reference.count },
      models: {},
    };
    for (const model of models) {
      metrics.models[model.label] = {
        path: model.path,
        showers: model.count,
        emd: {},
        separation_power: {},
        auc_low_level: null,
        jsd_low_level: null,
        auc_high_level: null,
        jsd_high_level: null,
        classifier_low_level: null,
        classifier_high_level: null,
        fpd: NaN,
        fpd_error: NaN,
        kpd: NaN,
        kpd_error: NaN,
      };
    }
    const record = (kind: "emd" | "separation_power", key: string, values: number[], layer?: number, layers?: number) => {
      models.forEach((model, m) => {
        const target = metrics.models[model.label][kind];
        if (layer === undefined) target[key] = values[m];
        else {
          const list = (target[key] ??= new Array<number>(layers ?? 0).fill(NaN)) as number[];
          list[layer] = values[m];
        }
      });
    };

    const started = Date.now();
    const sections = [paperSection(geometry, reference, models, record), challengeSection(geometry, reference, models, record)];
    log(`histograms, EMDs and separation powers in ${((Date.now() - started) / 1000).toFixed(1)} s`);

    const distanceTable = featureDistances(reference, models, metrics, options, log);
    const classifierTable = options.classifier ? classifiers(reference, models, metrics, options, log) : null;
    sections.unshift({
      title: "Summary",
      description:
        "FPD and KPD: Frechet and kernel physics distances (JetNet definitions, KPD with the degree-4 polynomial kernel) on the high-level features E_tot/E_inc and, per layer, E_layer/E_inc, centres of energy, widths and sparsity. " +
        "AUC: classifier separating generated from reference showers on a held-out test set (0.5 = indistinguishable); JSD in nats (at most ln 2).",
      tables: classifierTable === null ? [distanceTable] : [distanceTable, classifierTable],
    });

    const summary = [
      `Dataset ${dataset}, binning ${path.basename(geometry.file)}.`,
      `Reference: ${options.reference} (${reference.count} showers).`,
      ...models.map((m) => `${m.label}: ${m.path} (${m.count} showers).`),
      `Written ${metrics.created}.`,
    ];
    const index = writeReport(options.outDir, { title: `CaloScore evaluation, dataset ${dataset}`, summary, sections }, metrics);
    log(`report written to ${index}`);
    return metrics;
  } finally {
    for (const sample of samples) sample.lowLevel?.dispose();
  }
}

type Recorder = (kind: "emd" | "separation_power", key: string, values: number[], layer?: number, layers?: number) => void;

function labelled(sample: SampleData, values: ArrayLike<number>): LabelledSample {
  return { label: sample.label, values };
}

/** Builds the section of the CaloScore paper's distributions, each with EMDs and a ratio panel. */
function paperSection(geometry: Geometry, reference: SampleData, models: SampleData[], record: Recorder): ReportSection {
  const plots: ReportPlot[] = [];
  const layers = geometry.layers.length;
  const add = (comparison: Comparison, key: string, layer?: number) => {
    record("emd", key, comparison.emd, layer, layers);
    if (comparison.plot !== null) plots.push(comparison.plot);
  };
  const compare = (name: string, title: string, xLabel: string, pick: (f: ShowerFeatures) => ArrayLike<number>, log: boolean) =>
    compareSamples({ name, title, xLabel, logX: log }, labelled(reference, pick(reference.paper)), models.map((m) => labelled(m, pick(m.paper))));

  add(compare("paper-E_tot", "Total deposited energy", "E_tot [MeV]", (f) => f.eTot, true), "E_tot");
  add(compare("paper-hits", `Number of hits (voxels above ${formatNumber(hitThreshold(geometry.dataset) * 1000)} keV)`, "Hits", (f) => f.hits, false), "hits");
  add(compare("paper-max_voxel_over_E_tot", "Maximum voxel energy over E_tot", "max voxel / E_tot", (f) => f.maxVoxelFraction, false), "max_voxel_over_E_tot");

  // Per-layer EMDs for every layer; plots for representative layers only.
  const plottedLayers = new Set(representativeLayers(layers));
  const perLayer: { key: string; title: string; xLabel: string; pick: (f: ShowerFeatures) => Float64Array }[] = [
    { key: "max_voxel_over_E_layer", title: "Maximum voxel energy over E_layer", xLabel: "max voxel / E_layer", pick: (f) => f.maxLayerFraction },
    { key: "width_eta", title: "Shower width in x", xLabel: "width in x [mm]", pick: (f) => f.widthEta },
    { key: "width_phi", title: "Shower width in y", xLabel: "width in y [mm]", pick: (f) => f.widthPhi },
  ];
  const layerPlots: ReportPlot[] = [];
  for (const quantity of perLayer) {
    for (let layer = 0; layer < layers; layer++) {
      const id = geometry.layers[layer].id;
      const comparison = compareSamples(
        { name: `paper-${quantity.key}-layer${id}`, title: `${quantity.title}, layer ${id}`, xLabel: quantity.xLabel, draw: plottedLayers.has(layer) },
        labelled(reference, layerColumn(quantity.pick(reference.paper), layers, layer)),
        models.map((m) => labelled(m, layerColumn(quantity.pick(m.paper), layers, layer))),
      );
      record("emd", quantity.key, comparison.emd, layer, layers);
      if (comparison.plot !== null) layerPlots.push(comparison.plot);
    }
  }

  // Mean energy profiles over layer, r, x and y.
  const layerEdges = Float64Array.from({ length: layers + 1 }, (_, i) => i - 0.5);
  const profile = (sample: SampleData) => ({ label: sample.label, values: layerMeans(sample.paper.eLayer, layers) });
  add(compareProfiles({ name: "paper-profile-layer", title: "Mean energy per layer", xLabel: "Layer index", yLabel: "Mean energy [MeV]", edges: layerEdges }, profile(reference), models.map(profile)), "profile_layer");

  const rEdges = Float64Array.from([...new Set(geometry.layers.flatMap((l) => l.rEdges))].sort((a, b) => a - b));
  const rMax = rEdges[rEdges.length - 1];
  const xyEdges = histogramEdges([-rMax, rMax], { bins: 30 });
  const spatial = (positions: Float64Array, edges: Float64Array) => (sample: SampleData) => ({ label: sample.label, values: histogram(positions, edges, sample.meanImage) });
  const spatialProfiles: [string, string, Float64Array, Float64Array][] = [
    ["r", "radius r [mm]", geometry.rCentre, rEdges],
    ["x", "x [mm]", geometry.x, xyEdges],
    ["y", "y [mm]", geometry.y, xyEdges],
  ];
  for (const [axis, xLabel, positions, edges] of spatialProfiles) {
    const pick = spatial(positions, edges);
    add(
      compareProfiles({ name: `paper-profile-${axis}`, title: `Mean energy per ${axis} bin (all layers)`, xLabel, yLabel: "Mean energy [MeV]", edges }, pick(reference), models.map(pick)),
      `profile_${axis}`,
    );
  }

  // Average images of the layers with the highest and lowest mean deposit in the reference.
  const means = layerMeans(reference.paper.eLayer, layers);
  let highest = 0;
  let lowest = 0;
  means.forEach((m, l) => {
    if (m > means[highest]) highest = l;
    if (m < means[lowest]) lowest = l;
  });
  const images = [...new Set([highest, lowest])].map((l) => {
    const layer = geometry.layers[l];
    const slice = (sample: SampleData) => ({ label: sample.label, values: sample.meanImage.slice(layer.firstVoxel, layer.firstVoxel + layer.voxelCount) });
    const extreme = l === highest ? "highest" : "lowest";
    const title = `Average energy, layer ${layer.id} (${extreme} mean deposit)`;
    return { name: `paper-image-layer${layer.id}`, caption: title, svg: polarHeatmapSvg({ title, rEdges: layer.rEdges, alphaBins: layer.alphaBins, panels: [slice(reference), ...models.map(slice)], colourLabel: "Mean voxel energy [MeV]" }) };
  });

  // Deposited versus incident energy.
  const eIncEdges = histogramEdges(reference.paper.eInc, { bins: 40, scale: "log" });
  const positiveTotals = reference.paper.eTot.filter((e) => e > 0);
  const eTotEdges = histogramEdges(positiveTotals, { bins: 40, scale: "log" });
  const counts2d = (sample: SampleData): Float64Array => {
    const counts = new Float64Array(40 * 40);
    const xBin = histogramIndex(eIncEdges);
    const yBin = histogramIndex(eTotEdges);
    for (let i = 0; i < sample.count; i++) {
      const bx = xBin(sample.paper.eInc[i]);
      const by = yBin(sample.paper.eTot[i]);
      if (bx >= 0 && by >= 0) counts[by * 40 + bx] += 1;
    }
    return counts;
  };
  const scatter: ReportPlot = {
    name: "paper-E_tot-vs-E_inc",
    caption: "Deposited versus incident energy",
    svg: histogram2dSvg({
      title: "Deposited versus incident energy",
      xLabel: "E_inc [MeV]",
      yLabel: "E_tot [MeV]",
      xEdges: eIncEdges,
      yEdges: eTotEdges,
      logX: true,
      logY: true,
      panels: [reference, ...models].map((s) => ({ label: s.label, counts: counts2d(s) })),
      colourLabel: "Showers",
    }),
  };

  return {
    title: "Paper distributions",
    description: `Features with voxels counted as hits above ${formatNumber(hitThreshold(geometry.dataset) * 1000)} keV and no voxel cut. EMD: 1-Wasserstein distance to the reference, in the unit of the x axis. Per-layer histograms are shown for layers ${[...plottedLayers].map((l) => geometry.layers[l].id).join(", ")}; metrics.json holds the EMD of every layer.`,
    plots: [...plots, ...layerPlots, ...images, scatter],
  };
}

/** Bin index of a value for the given edges, or -1 outside them. */
function histogramIndex(edges: Float64Array): (value: number) => number {
  return (value) => {
    if (!(value >= edges[0] && value <= edges[edges.length - 1])) return -1;
    let lo = 0;
    let hi = edges.length - 1;
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (edges[mid] <= value) lo = mid;
      else hi = mid;
    }
    return lo;
  };
}

/** Builds the section of the CaloChallenge high-level features, each with separation powers. */
function challengeSection(geometry: Geometry, reference: SampleData, models: SampleData[], record: Recorder): ReportSection {
  const layers = geometry.layers.length;
  const plots: ReportPlot[] = [];
  const ratio = compareSamples(
    { name: "challenge-E_tot_over_E_inc", title: "E_tot / E_inc", xLabel: "E_tot / E_inc", separation: true, emd: false },
    labelled(reference, reference.challenge.eRatio),
    models.map((m) => labelled(m, m.challenge.eRatio)),
  );
  record("separation_power", "E_tot_over_E_inc", ratio.separationPower);
  if (ratio.plot !== null) plots.push(ratio.plot);

  const plottedLayers = new Set(representativeLayers(layers));
  const perLayer: { key: string; title: string; xLabel: string; log: boolean; pick: (f: ShowerFeatures) => Float64Array }[] = [
    // NOTE: E_layer is histogrammed on log bins, so showers with an empty layer are left out of
    // its histograms and separation power.
    { key: "E_layer", title: "Energy deposited in layer", xLabel: "E_layer [MeV]", log: true, pick: (f) => f.eLayer },
    { key: "EC_eta", title: "Centre of energy in x", xLabel: "EC x [mm]", log: false, pick: (f) => f.ecEta },
    { key: "EC_phi", title: "Centre of energy in y", xLabel: "EC y [mm]", log: false, pick: (f) => f.ecPhi },
    { key: "width_eta", title: "Width in x", xLabel: "width x [mm]", log: false, pick: (f) => f.widthEta },
    { key: "width_phi", title: "Width in y", xLabel: "width y [mm]", log: false, pick: (f) => f.widthPhi },
    { key: "sparsity", title: "Sparsity (fraction of empty voxels)", xLabel: "sparsity", log: false, pick: (f) => f.sparsity },
  ];
  const tableRows: (string | number)[][] = [["E_tot / E_inc", ...ratio.separationPower]];
  const layerPlots: ReportPlot[] = [];
  for (const quantity of perLayer) {
    const perModel: number[][] = models.map(() => new Array<number>(layers).fill(NaN));
    for (let layer = 0; layer < layers; layer++) {
      const id = geometry.layers[layer].id;
      const comparison = compareSamples(
        {
          name: `challenge-${quantity.key}-layer${id}`,
          title: `${quantity.title}, layer ${id}`,
          xLabel: quantity.xLabel,
          logX: quantity.log,
          separation: true,
          emd: false,
          draw: plottedLayers.has(layer),
        },
        labelled(reference, layerColumn(quantity.pick(reference.challenge), layers, layer)),
        models.map((m) => labelled(m, layerColumn(quantity.pick(m.challenge), layers, layer))),
      );
      // A layer without any finite reference value (no angular binning) has no separation power.
      const defined = layerColumn(quantity.pick(reference.challenge), layers, layer).some((v) => Number.isFinite(v));
      comparison.separationPower.forEach((power, m) => (perModel[m][layer] = defined ? power : NaN));
      record("separation_power", quantity.key, perModel.map((p) => p[layer]), layer, layers);
      if (comparison.plot !== null && defined) layerPlots.push(comparison.plot);
    }
    plots.push(perLayerPlot(`challenge-${quantity.key}-separation`, `Separation power by layer: ${quantity.title}`, "Separation power", models.map((m, i) => ({ label: m.label, values: perModel[i] }))));
    tableRows.push([`${quantity.key}, mean over layers`, ...perModel.map((p) => meanFinite(p))]);
  }
  return {
    title: "CaloChallenge high-level features",
    description: `Voxels below ${formatNumber(evaluationCut(geometry.dataset))} MeV are set to zero first, as the CaloChallenge evaluation does. Separation power: 1/2 sum (h1 - h2)^2 / (h1 + h2) over histograms normalised to unit sum on the reference's range (0 = identical, 1 = disjoint). E_layer uses log bins, which leave out showers with an empty layer.`,
    tables: [{ caption: "Separation power", header: ["Feature", ...models.map((m) => m.label)], rows: tableRows }],
    plots: [...plots, ...layerPlots],
  };
}

function meanFinite(values: number[]): number {
  const finite = values.filter((v) => Number.isFinite(v));
  return finite.length === 0 ? NaN : finite.reduce((a, b) => a + b, 0) / finite.length;
}

/** Computes FPD and KPD of each model, fills them into the metrics and returns the summary table. */
function featureDistances(reference: SampleData, models: SampleData[], metrics: Metrics, options: EvaluateOptions, log: (line: string) => void) {
  const { matrix: referenceMatrix, columns } = highLevelMatrix(reference.challenge, null, false);
  const rows: (string | number)[][] = [];
  for (const model of models) {
    const started = Date.now();
    const { matrix } = highLevelMatrix(model.challenge, columns, false);
    const frechet = fpd(referenceMatrix, matrix, options.fpdOptions);
    const fpdSeconds = (Date.now() - started) / 1000;
    const kernel = kpd(referenceMatrix, matrix, options.kpdOptions);
    const entry = metrics.models[model.label];
    entry.fpd = frechet.value;
    entry.fpd_error = frechet.error;
    entry.kpd = kernel.value;
    entry.kpd_error = kernel.error;
    log(`${model.label}: FPD ${formatNumber(frechet.value)} +- ${formatNumber(frechet.error)}, KPD ${formatNumber(kernel.value)} +- ${formatNumber(kernel.error)} (${referenceMatrix.columns} features; FPD ${fpdSeconds.toFixed(1)} s, KPD ${((Date.now() - started) / 1000 - fpdSeconds).toFixed(1)} s)`);
    rows.push([model.label, frechet.value, frechet.error, kernel.value, kernel.error]);
  }
  return { caption: "Physics distances on high-level features", header: ["Model", "FPD", "FPD error", "KPD", "KPD error"], rows };
}

/** Trains the low-level and high-level classifiers of each model, fills the metrics and returns the table. */
function classifiers(reference: SampleData, models: SampleData[], metrics: Metrics, options: EvaluateOptions, log: (line: string) => void) {
  const { matrix: referenceMatrix, columns } = highLevelMatrix(reference.challenge, null, true);
  const rows: (string | number)[][] = [];
  for (const model of models) {
    const entry = metrics.models[model.label];
    for (const level of ["low", "high"] as const) {
      const started = Date.now();
      const onEpoch = (epoch: number, trainLoss: number, validationLoss: number) =>
        log(`${model.label} ${level}-level classifier epoch ${epoch}: train loss ${trainLoss.toFixed(4)}, validation loss ${validationLoss.toFixed(4)}`);
      const classifierOptions = { ...options.classifierOptions, onEpoch };
      let result: ClassifierResult;
      if (level === "low") {
        result = trainClassifier(reference.lowLevel as Tensor, model.lowLevel as Tensor, classifierOptions);
        entry.classifier_low_level = result;
        entry.auc_low_level = result.auc;
        entry.jsd_low_level = result.jsd;
      } else {
        const { matrix } = highLevelMatrix(model.challenge, columns, true);
        result = tidy(() => trainClassifier(tensor(referenceMatrix.values, [referenceMatrix.rows, referenceMatrix.columns]), tensor(matrix.values, [matrix.rows, matrix.columns]), classifierOptions));
        entry.classifier_high_level = result;
        entry.auc_high_level = result.auc;
        entry.jsd_high_level = result.jsd;
      }
      log(`${model.label} ${level}-level classifier: AUC ${result.auc.toFixed(4)}, JSD ${result.jsd.toFixed(4)} after ${result.epochs} epochs (best ${result.bestEpoch}) in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    }
    rows.push([model.label, entry.auc_low_level ?? NaN, entry.jsd_low_level ?? NaN, entry.auc_high_level ?? NaN, entry.jsd_high_level ?? NaN]);
  }
  return { caption: "Classifier metrics (test set)", header: ["Model", "AUC low-level", "JSD low-level", "AUC high-level", "JSD high-level"], rows };
}
