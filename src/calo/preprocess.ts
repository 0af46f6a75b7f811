// The CaloScore preprocessing from voxel energies to model inputs, and its inverse.
//
// Per model entry: E' = E / (f E_inc), x = a + (1 - 2a) E', u = log(x / (1 - x)), then
// z = (u - mean) / std with mean and std fitted on training showers. f is the maximum deposit
// factor (3.1 for dataset 1, 2 for datasets 2 and 3) and a = 1e-6. The condition is
// log(E_inc / E_min) / log(E_max / E_min), in [0, 1] over the dataset's energy range.
//
// Dataset 1 (1D layout): voxels are divided by the shower's total energy E_tot instead, an extra
// entry contains E_tot / (f E_inc), and the row is padded with zeros to 384 entries (576 for pions).
// With layer energies (an option for dataset 1), voxels are divided by their layer's energy
// E_layer instead. One entry per layer after the E_tot entry contains E_layer / E_tot, so the
// model learns how the energy is shared among layers as a few entries of its own.
//
// With an energy-dependent mean (an option), the mean subtracted from u is a cubic polynomial of
// the condition c, fitted per entry by least squares, and std is the spread about it. The
// preprocessing then carries how each entry's average moves with the incident energy, so the
// network only has to learn the shower-to-shower variation around it.
//
// With an energy-dependent standard deviation (an option), std is exp of a cubic polynomial of c,
// fitted per entry to the log of the spread in 16 bins of c. Showers spread less at high energies:
// in the simulated dataset-1 photons, the share of the last layers varies 8 times less at 4 TeV
// than at 1 GeV. With one std per entry, the network receives the high-energy showers squeezed into
// a fraction of unit variance.
// Datasets 2 and 3: entries are Cartesian cells (voxelize.ts) or the cylindrical voxels themselves.
//
// All arithmetic runs in float64; the model input is stored as float32.
import { DatasetName, loadGeometry, voxelCounts } from "./binning";
import { incidentEnergyRange } from "./hdf5";
import { CartesianGrid, cartesianGrid, cellShares, cylindricalShape, defaultGridSize, fromCartesian, toCartesian } from "./voxelize";

export type ModelLayout = "cartesian" | "cylindrical";

/** Fitted preprocessing, stored with a run as JSON so the inverse is exact. */
export interface PreprocessingState {
  version: 1;
  dataset: DatasetName;
  /** "flat" for dataset 1 (always 1D), otherwise the requested layout. */
  layout: "flat" | ModelLayout;
  /** Voxels per shower in the file. */
  voxels: number;
  /** Model input shape without the batch dimension, e.g. [1, 45, 12, 12]. */
  modelShape: number[];
  /** Product of modelShape. */
  modelSize: number;
  /** f in E' = E / (f E_inc). */
  maxDepositFactor: number;
  /** a in x = a + (1 - 2a) E'. */
  logitOffset: number;
  /** Incident energy range in MeV that the condition maps to [0, 1]. */
  energyMin: number;
  energyMax: number;
  /**
   * Dataset 1 only: voxels normalised by their layer's energy, plus one E_layer / E_tot entry per
   * layer. Absent (false) in runs made before the option existed.
   */
  layerEnergies?: boolean;
  /**
   * Coefficients of c, c^2 and c^3 in the mean of u per entry, [3][modelSize], when the mean
   * depends on the incident energy, and absent or null otherwise. mean contains the constant term.
   */
  meanCoefficients?: number[][] | null;
  /**
   * Coefficients of c, c^2 and c^3 in log std per entry, [3][modelSize], when the standard
   * deviation depends on the incident energy, and absent or null otherwise. std is then the
   * value at c = 0.
   */
  stdCoefficients?: number[][] | null;
  /** Mean and standard deviation of u per model entry, [modelSize]; padding entries have 0 and 1. */
  mean: number[];
  std: number[];
  /** Cartesian cells per side (cartesian layout only). */
  gridSize: number | null;
  /**
   * Mean of E / E_inc per voxel over the fitting showers (cartesian layout only). The inverse splits
   * a cell's energy among its voxels in proportion to it.
   */
  voxelPrior: number[] | null;
  /** Generated voxels below this energy in MeV are set to 0 by the inverse. */
  voxelThreshold: number;
  /** Showers the mean and std were fitted on. */
  fittedShowers: number;
}

export const logitOffset = 1e-6;

/**
 * Model width of the 1D layout: the voxels, the energy entry and `layers` layer-energy entries,
 * padded with zeros to a multiple of 64 so three poolings by 4 divide it. That is 384 for
 * dataset 1 photons and 576 for pions, with or without layer entries.
 */
export function flatModelSize(voxels: number, layers = 0): number {
  return Math.ceil((voxels + 1 + layers) / 64) * 64;
}

/** f in E' = E / (f E_inc): an upper bound of a voxel's share of the incident energy, as in CaloScore. */
export function maxDepositFactor(dataset: DatasetName): number {
  return dataset === "2" || dataset === "3" ? 2 : 3.1;
}

/**
 * Voxel energy in MeV below which generated voxels are zeroed: the 15.15 keV readout threshold of
 * datasets 2 and 3, and the 0.01 keV hit threshold used for dataset 1 in the CaloScore paper.
 */
export function voxelThreshold(dataset: DatasetName): number {
  return dataset === "2" || dataset === "3" ? 0.01515 : 1e-5;
}

/** Minimum standard deviation; entries that never vary (cells outside the readout disc) get std 1. */
const minimumStd = 1e-6;

/** Maps incident energies [n] in MeV to the model condition [n], log scale onto [0, 1]. */
export function energyCondition(state: Pick<PreprocessingState, "energyMin" | "energyMax">, energies: ArrayLike<number>): Float32Array {
  const scale = Math.log(state.energyMax / state.energyMin);
  const result = new Float32Array(energies.length);
  for (let i = 0; i < energies.length; i += 1) result[i] = Math.log(energies[i] / state.energyMin) / scale;
  return result;
}

/** Inverts energyCondition: condition [n] in [0, 1] -> incident energies [n] in MeV. */
export function conditionToEnergy(state: Pick<PreprocessingState, "energyMin" | "energyMax">, condition: ArrayLike<number>): Float32Array {
  const scale = Math.log(state.energyMax / state.energyMin);
  const result = new Float32Array(condition.length);
  for (let i = 0; i < condition.length; i += 1) result[i] = state.energyMin * Math.exp(condition[i] * scale);
  return result;
}

/** Layer index of each voxel and the layer count, for the layer-energy entries of dataset 1. */
function layerIndex(dataset: DatasetName): { layerOfVoxel: Int32Array; layers: number } {
  let cached = layerIndexCache.get(dataset);
  if (cached === undefined) {
    const geometry = loadGeometry(dataset);
    cached = { layerOfVoxel: geometry.layerOfVoxel, layers: geometry.layers.length };
    layerIndexCache.set(dataset, cached);
  }
  return cached;
}

const layerIndexCache = new Map<DatasetName, { layerOfVoxel: Int32Array; layers: number }>();

function modelShapeFor(dataset: DatasetName, layout: ModelLayout, gridSize: number, layerEnergies: boolean): number[] {
  if (dataset === "1-photons" || dataset === "1-pions") {
    return [1, flatModelSize(voxelCounts[dataset], layerEnergies ? layerIndex(dataset).layers : 0)];
  }
  const geometry = loadGeometry(dataset);
  if (layout === "cartesian") return [1, geometry.layers.length, gridSize, gridSize];
  return [1, ...cylindricalShape(geometry)];
}

const gridCache = new Map<string, CartesianGrid>();

function gridOf(state: Pick<PreprocessingState, "dataset" | "gridSize">): CartesianGrid {
  const key = `${state.dataset}:${state.gridSize}`;
  let grid = gridCache.get(key);
  if (grid === undefined) {
    grid = cartesianGrid(loadGeometry(state.dataset), state.gridSize ?? undefined);
    gridCache.set(key, grid);
  }
  return grid;
}

function checkInputs(state: Pick<PreprocessingState, "voxels">, energies: ArrayLike<number>, showers: ArrayLike<number>, caller: string): number {
  const n = energies.length;
  if (showers.length !== n * state.voxels) {
    throw new Error(`${caller}: showers has ${showers.length} values; expected ${n} showers x ${state.voxels} voxels`);
  }
  for (let i = 0; i < n; i += 1) {
    if (!(energies[i] > 0)) throw new Error(`${caller}: incident energy ${i} is ${energies[i]} MeV; expected a positive value`);
  }
  return n;
}

/**
 * Computes the logit values u [n, modelSize] (before standardisation) of showers [n, voxels].
 * Padding entries are left at 0.
 */
function logitValues(state: PreprocessingState, energies: ArrayLike<number>, showers: Float32Array | Float64Array): Float64Array {
  const n = energies.length;
  const size = state.modelSize;
  const f = state.maxDepositFactor;
  const a = state.logitOffset;
  const u = new Float64Array(n * size);
  const logit = (scaled: number): number => {
    const x = a + (1 - 2 * a) * scaled;
    return Math.log(x / (1 - x));
  };

  if (state.layout === "flat" && state.layerEnergies === true) {
    const voxels = state.voxels;
    const { layerOfVoxel, layers } = layerIndex(state.dataset);
    const layerSums = new Float64Array(layers);
    for (let i = 0; i < n; i += 1) {
      layerSums.fill(0);
      for (let v = 0; v < voxels; v += 1) layerSums[layerOfVoxel[v]] += showers[i * voxels + v];
      const total = layerSums.reduce((sum, value) => sum + value, 0);
      const row = i * size;
      for (let v = 0; v < voxels; v += 1) {
        const layerSum = layerSums[layerOfVoxel[v]];
        u[row + v] = logit(layerSum > 0 ? showers[i * voxels + v] / layerSum : 0);
      }
      u[row + voxels] = logit(total / (f * energies[i]));
      for (let l = 0; l < layers; l += 1) u[row + voxels + 1 + l] = logit(total > 0 ? layerSums[l] / total : 0);
    }
    return u;
  }

  if (state.layout === "flat") {
    const voxels = state.voxels;
    for (let i = 0; i < n; i += 1) {
      let total = 0;
      for (let v = 0; v < voxels; v += 1) total += showers[i * voxels + v];
      const row = i * size;
      for (let v = 0; v < voxels; v += 1) u[row + v] = logit(total > 0 ? showers[i * voxels + v] / total : 0);
      u[row + voxels] = logit(total / (f * energies[i]));
    }
    return u;
  }

  const entries = state.layout === "cartesian" ? toCartesian(gridOf(state), showers, n) : showers;
  for (let i = 0; i < n; i += 1) {
    const scale = 1 / (f * energies[i]);
    const row = i * size;
    for (let k = 0; k < size; k += 1) u[row + k] = logit(entries[row + k] * scale);
  }
  return u;
}

/** Showers per block in the forward pass, which bounds its float64 scratch memory. */
const showersPerBlock = 256;

/** Calls `visit` on consecutive blocks of at most showersPerBlock showers. */
function forEachBlock(
  state: Pick<PreprocessingState, "voxels">,
  energies: ArrayLike<number>,
  showers: Float32Array | Float64Array,
  visit: (energies: Float64Array, showers: Float32Array | Float64Array) => void,
): void {
  const all = Float64Array.from(energies);
  for (let start = 0; start < all.length; start += showersPerBlock) {
    const end = Math.min(start + showersPerBlock, all.length);
    visit(all.subarray(start, end), showers.subarray(start * state.voxels, end * state.voxels));
  }
}

/** Entries of a model row that carry data; the rest is padding. */
function dataEntries(state: Pick<PreprocessingState, "dataset" | "layout" | "voxels" | "modelSize" | "layerEnergies">): number {
  if (state.layout !== "flat") return state.modelSize;
  return state.voxels + 1 + (state.layerEnergies === true ? layerIndex(state.dataset).layers : 0);
}

/** Options of a preprocessing fit. */
export interface PreprocessingOptions {
  /** Dataset 1 only: learn E_layer / E_tot entries and normalise voxels by E_layer. */
  layerEnergies?: boolean;
  /** Fit the mean of each entry as a cubic polynomial of the energy condition. */
  energyDependentMean?: boolean;
  /** Fit the log standard deviation of each entry as a cubic polynomial of the energy condition. */
  energyDependentStd?: boolean;
}

/** Degree of the energy-dependent mean's and log standard deviation's polynomials in the condition. */
const meanDegree = 3;

/** Bins of the condition in which the energy-dependent standard deviation is measured. */
const stdBins = 16;

/**
 * Smallest spread in a bin, as a fraction of the entry's overall spread. An entry that is constant
 * at some energies (a voxel that is always empty at 1 GeV) would otherwise pull the polynomial of
 * log std towards minus infinity.
 */
const minimumStdFraction = 0.1;

/** Condition c in float64 for each energy, as energyCondition computes it. */
function conditionsOf(state: Pick<PreprocessingState, "energyMin" | "energyMax">, energies: ArrayLike<number>): Float64Array {
  const scale = Math.log(state.energyMax / state.energyMin);
  return Float64Array.from({ length: energies.length }, (_, i) => Math.log(energies[i] / state.energyMin) / scale);
}

/** Mean of u per entry [modelSize] at condition c: the constant term plus the polynomial in c. */
function meanAt(state: Pick<PreprocessingState, "mean" | "meanCoefficients">, c: number, out: Float64Array): Float64Array {
  for (let k = 0; k < out.length; k += 1) out[k] = state.mean[k];
  const coefficients = state.meanCoefficients;
  if (coefficients === undefined || coefficients === null) return out;
  let power = 1;
  for (const row of coefficients) {
    power *= c;
    for (let k = 0; k < out.length; k += 1) out[k] += row[k] * power;
  }
  return out;
}

/**
 * Returns the sum of log std over the first `entries` model entries for each incident energy [n]
 * in MeV: the standardisation's part of the log-Jacobian of the preprocessing.
 */
export function logStdSums(state: PreprocessingState, incidentEnergies: ArrayLike<number>, entries: number): Float64Array {
  // log std_k(c) = log std_k + sum_p coefficient_pk c^p, so the sum over entries is a polynomial
  // in c whose coefficients are summed once.
  let constant = 0;
  for (let k = 0; k < entries; k += 1) constant += Math.log(state.std[k]);
  const summed = (state.stdCoefficients ?? []).map((row) => row.slice(0, entries).reduce((sum, value) => sum + value, 0));
  return conditionsOf(state, incidentEnergies).map((c) => summed.reduce((sum, coefficient, p) => sum + coefficient * c ** (p + 1), constant));
}

/** Standard deviation of u per entry [modelSize] at condition c. */
function stdAt(state: Pick<PreprocessingState, "std" | "stdCoefficients">, c: number, out: Float64Array): Float64Array {
  for (let k = 0; k < out.length; k += 1) out[k] = state.std[k];
  const coefficients = state.stdCoefficients;
  if (coefficients === undefined || coefficients === null) return out;
  for (let k = 0; k < out.length; k += 1) {
    let exponent = 0;
    for (let p = coefficients.length - 1; p >= 0; p -= 1) exponent = (exponent + coefficients[p][k]) * c;
    out[k] *= Math.exp(exponent);
  }
  return out;
}

/** Solves the symmetric system a x = b (n x n, row-major) by Gaussian elimination with partial pivoting. */
function solve(a: Float64Array, b: Float64Array, n: number): Float64Array {
  const m = Float64Array.from(a);
  const x = Float64Array.from(b);
  for (let col = 0; col < n; col += 1) {
    let pivot = col;
    for (let row = col + 1; row < n; row += 1) if (Math.abs(m[row * n + col]) > Math.abs(m[pivot * n + col])) pivot = row;
    if (pivot !== col) {
      for (let j = 0; j < n; j += 1) [m[col * n + j], m[pivot * n + j]] = [m[pivot * n + j], m[col * n + j]];
      [x[col], x[pivot]] = [x[pivot], x[col]];
    }
    for (let row = col + 1; row < n; row += 1) {
      const factor = m[row * n + col] / m[col * n + col];
      for (let j = col; j < n; j += 1) m[row * n + j] -= factor * m[col * n + j];
      x[row] -= factor * x[col];
    }
  }
  for (let row = n - 1; row >= 0; row -= 1) {
    let value = x[row];
    for (let j = row + 1; j < n; j += 1) value -= m[row * n + j] * x[j];
    x[row] = value / m[row * n + row];
  }
  return x;
}

/** Sums over the showers whose condition falls in one bin, for the energy-dependent standard deviation. */
interface ConditionBin {
  count: number;
  /** Sums of c^p, p = 0 .. 2 meanDegree. */
  powerSums: Float64Array;
  /** Sums of u^2 per entry. */
  squares: Float64Array;
  /** Sums of u c^p per entry, p = 0 .. meanDegree. */
  crossSums: Float64Array[];
}

/**
 * Accumulates the statistics of a preprocessing fit block by block, so the fit can cover more
 * showers than fit in memory at once (dataset 3 has 40500 voxels per shower).
 */
export class PreprocessingFitter {
  private readonly state: PreprocessingState;
  private readonly sum: Float64Array;
  private readonly sumSquares: Float64Array;
  /** Sums of c^p (p = 0 .. 2 meanDegree) and of u c^p per entry (p = 1 .. meanDegree), for the energy-dependent mean. */
  private readonly powerSums: Float64Array | null;
  private readonly crossSums: Float64Array[] | null;
  private readonly bins: ConditionBin[] | null;
  private readonly priorSum: Float64Array | null;
  private count = 0;

  constructor(dataset: DatasetName, layout: ModelLayout, options: PreprocessingOptions = {}) {
    const flat = dataset === "1-photons" || dataset === "1-pions";
    const layerEnergies = options.layerEnergies === true;
    if (layerEnergies && !flat) throw new Error(`layer-energy entries apply to dataset 1 only, found dataset ${dataset}`);
    const gridSize = !flat && layout === "cartesian" ? defaultGridSize(loadGeometry(dataset)) : null;
    const modelShape = modelShapeFor(dataset, layout, gridSize ?? 0, layerEnergies);
    const modelSize = modelShape.reduce((product, extent) => product * extent, 1);
    const range = incidentEnergyRange[dataset];
    this.state = {
      version: 1,
      dataset,
      layout: flat ? "flat" : layout,
      voxels: voxelCounts[dataset],
      modelShape,
      modelSize,
      maxDepositFactor: maxDepositFactor(dataset),
      logitOffset,
      energyMin: range.min,
      energyMax: range.max,
      layerEnergies,
      mean: [],
      std: [],
      gridSize,
      voxelPrior: null,
      voxelThreshold: voxelThreshold(dataset),
      fittedShowers: 0,
    };
    this.sum = new Float64Array(modelSize);
    this.sumSquares = new Float64Array(modelSize);
    const dependent = options.energyDependentMean === true;
    this.powerSums = dependent ? new Float64Array(2 * meanDegree + 1) : null;
    this.crossSums = dependent ? Array.from({ length: meanDegree }, () => new Float64Array(modelSize)) : null;
    this.bins =
      options.energyDependentStd === true
        ? Array.from({ length: stdBins }, () => ({
            count: 0,
            powerSums: new Float64Array(2 * meanDegree + 1),
            squares: new Float64Array(modelSize),
            crossSums: Array.from({ length: meanDegree + 1 }, () => new Float64Array(modelSize)),
          }))
        : null;
    this.priorSum = gridSize !== null ? new Float64Array(this.state.voxels) : null;
  }

  /** Adds showers [n, voxels] in MeV with incident energies [n] in MeV to the fit. */
  add(energies: ArrayLike<number>, showers: Float32Array | Float64Array): void {
    const n = checkInputs(this.state, energies, showers, "fitPreprocessing");
    const size = this.state.modelSize;
    forEachBlock(this.state, energies, showers, (blockEnergies, blockShowers) => {
      const u = logitValues(this.state, blockEnergies, blockShowers);
      const conditions = this.powerSums !== null || this.bins !== null ? conditionsOf(this.state, blockEnergies) : null;
      for (let row = 0, i = 0; row < u.length; row += size, i += 1) {
        for (let k = 0; k < size; k += 1) {
          const value = u[row + k];
          this.sum[k] += value;
          this.sumSquares[k] += value * value;
        }
        if (conditions === null) continue;
        const c = conditions[i];
        if (this.powerSums !== null && this.crossSums !== null) {
          for (let p = 0, power = 1; p <= 2 * meanDegree; p += 1, power *= c) this.powerSums[p] += power;
          let power = 1;
          for (const cross of this.crossSums) {
            power *= c;
            for (let k = 0; k < size; k += 1) cross[k] += u[row + k] * power;
          }
        }
        if (this.bins !== null) {
          const bin = this.bins[Math.min(stdBins - 1, Math.max(0, Math.floor(c * stdBins)))];
          bin.count += 1;
          for (let p = 0, power = 1; p <= 2 * meanDegree; p += 1, power *= c) bin.powerSums[p] += power;
          for (let k = 0; k < size; k += 1) bin.squares[k] += u[row + k] * u[row + k];
          for (let p = 0, power = 1; p <= meanDegree; p += 1, power *= c) {
            const cross = bin.crossSums[p];
            for (let k = 0; k < size; k += 1) cross[k] += u[row + k] * power;
          }
        }
      }
    });
    if (this.priorSum !== null) {
      const voxels = this.state.voxels;
      for (let i = 0; i < n; i += 1) {
        const inverse = 1 / energies[i];
        for (let v = 0; v < voxels; v += 1) this.priorSum[v] += showers[i * voxels + v] * inverse;
      }
    }
    this.count += n;
  }

  /** Returns the fitted state; needs at least one shower. */
  finish(): PreprocessingState {
    if (this.count === 0) throw new Error("fitPreprocessing: no showers to fit the standardisation on");
    const data = dataEntries(this.state);
    const size = this.state.modelSize;
    const voxelPrior = this.priorSum === null ? null : Array.from(this.priorSum, (value) => value / this.count);
    // Polynomial of the mean per entry, [meanDegree + 1][modelSize]: the constant term, then c, c^2, c^3.
    const beta = Array.from({ length: meanDegree + 1 }, () => new Float64Array(size));
    const variance = new Float64Array(size);
    if (this.powerSums === null || this.crossSums === null) {
      for (let k = 0; k < data; k += 1) {
        beta[0][k] = this.sum[k] / this.count;
        variance[k] = this.sumSquares[k] / this.count - beta[0][k] * beta[0][k];
      }
    } else {
      this.fitMean(this.powerSums, this.crossSums, data, beta, variance);
    }

    const mean = Array.from(beta[0]);
    const std: number[] = new Array<number>(size).fill(1);
    for (let k = 0; k < data; k += 1) {
      const spread = Math.sqrt(Math.max(variance[k], 0));
      if (spread > minimumStd) std[k] = spread;
    }
    const meanCoefficients = this.powerSums === null ? null : beta.slice(1).map((row) => Array.from(row));
    const stdCoefficients = this.bins === null ? null : this.fitStd(this.bins, data, beta, variance, std);
    return { ...this.state, mean, std, voxelPrior, meanCoefficients, stdCoefficients, fittedShowers: this.count };
  }

  /**
   * Least squares per entry of u on 1, c, c^2, c^3: fills beta and the mean squared residual. The
   * normal equations share the matrix of moments of c. A small ridge on the non-constant terms keeps
   * them defined when the showers have fewer than four distinct energies, and it then leaves the
   * mean constant.
   */
  private fitMean(powerSums: Float64Array, crossSums: Float64Array[], data: number, beta: Float64Array[], variance: Float64Array): void {
    const n = meanDegree + 1;
    const moments = new Float64Array(n * n);
    for (let i = 0; i < n; i += 1) for (let j = 0; j < n; j += 1) moments[i * n + j] = powerSums[i + j] / this.count;
    const regularised = Float64Array.from(moments);
    for (let i = 1; i < n; i += 1) regularised[i * n + i] += 1e-9;
    const rhs = new Float64Array(n);
    for (let k = 0; k < data; k += 1) {
      rhs[0] = this.sum[k] / this.count;
      for (let p = 1; p < n; p += 1) rhs[p] = crossSums[p - 1][k] / this.count;
      const solution = solve(regularised, rhs, n);
      // Mean squared residual: E[u^2] - 2 beta . E[u c^p] + beta' M beta.
      let fitted = 0;
      for (let i = 0; i < n; i += 1) {
        fitted -= 2 * solution[i] * rhs[i];
        for (let j = 0; j < n; j += 1) fitted += solution[i] * moments[i * n + j] * solution[j];
      }
      for (let p = 0; p < n; p += 1) beta[p][k] = solution[p];
      variance[k] = this.sumSquares[k] / this.count + fitted;
    }
  }

  /**
   * Fits log std per entry as a cubic in c, weighted by the showers per bin, to the log of the
   * spread about the mean in each bin with at least two showers. Sets std to the value at c = 0
   * and returns the coefficients of c, c^2 and c^3. Entries that never vary keep std 1.
   */
  private fitStd(bins: ConditionBin[], data: number, beta: Float64Array[], variance: Float64Array, std: number[]): number[][] {
    const n = meanDegree + 1;
    const used = bins.filter((bin) => bin.count >= 2);
    const coefficients = Array.from({ length: meanDegree }, () => new Array<number>(this.state.modelSize).fill(0));
    // Without a bin of two showers there is no spread to fit, and std stays constant.
    if (used.length === 0) return coefficients;

    // The weighted normal equations share their matrix across entries.
    const total = used.reduce((sum, bin) => sum + bin.count, 0);
    const design = used.map((bin) => Float64Array.from({ length: n }, (_, p) => (bin.powerSums[1] / bin.count) ** p));
    const matrix = new Float64Array(n * n);
    used.forEach((bin, b) => {
      for (let i = 0; i < n; i += 1) for (let j = 0; j < n; j += 1) matrix[i * n + j] += (bin.count / total) * design[b][i] * design[b][j];
    });
    for (let i = 1; i < n; i += 1) matrix[i * n + i] += 1e-9;

    const rhs = new Float64Array(n);
    for (let k = 0; k < data; k += 1) {
      const overall = Math.sqrt(Math.max(variance[k], 0));
      if (!(overall > minimumStd)) continue;
      rhs.fill(0);
      used.forEach((bin, b) => {
        // Mean squared residual in the bin: E_b[u^2] - 2 sum_p beta_p E_b[u c^p] + sum_pq beta_p beta_q E_b[c^(p+q)].
        let residual = bin.squares[k];
        for (let p = 0; p < n; p += 1) {
          residual -= 2 * beta[p][k] * bin.crossSums[p][k];
          for (let q = 0; q < n; q += 1) residual += beta[p][k] * beta[q][k] * bin.powerSums[p + q];
        }
        const floor = minimumStdFraction * overall;
        const logSpread = 0.5 * Math.log(Math.max(residual / bin.count, floor * floor));
        for (let i = 0; i < n; i += 1) rhs[i] += (bin.count / total) * design[b][i] * logSpread;
      });
      const solution = solve(matrix, rhs, n);
      std[k] = Math.exp(solution[0]);
      for (let p = 1; p < n; p += 1) coefficients[p - 1][k] = solution[p];
    }
    return coefficients;
  }
}

/**
 * Returns the loss weight per model entry [modelSize]: `weight` for the E_tot entry and the
 * layer-share entries of dataset 1, 1 for the others, scaled so the weights average 1. Returns
 * null for weight 1 or a layout without those entries.
 */
export function lossWeights(state: PreprocessingState, weight: number): Float32Array | null {
  if (weight === 1 || state.layout !== "flat") return null;
  const weights = new Float32Array(state.modelSize).fill(1);
  for (let k = state.voxels; k < dataEntries(state); k += 1) weights[k] = weight;
  const mean = weights.reduce((sum, value) => sum + value, 0) / weights.length;
  return weights.map((value) => value / mean);
}

/**
 * Fits the preprocessing on training showers [n, voxels] (MeV) with incident energies [n] (MeV).
 * Dataset 1 always uses the 1D layout, whatever `layout` is.
 */
export function fitPreprocessing(
  dataset: DatasetName,
  layout: ModelLayout,
  energies: ArrayLike<number>,
  showers: Float32Array | Float64Array,
  options: PreprocessingOptions = {},
): PreprocessingState {
  const fitter = new PreprocessingFitter(dataset, layout, options);
  fitter.add(energies, showers);
  return fitter.finish();
}

/**
 * Maps showers [n, voxels] (MeV) with incident energies [n] (MeV) to the model's inputs:
 * condition [n] and x [n, ...modelShape] as one float32 array.
 */
export function forwardPreprocess(state: PreprocessingState, energies: ArrayLike<number>, showers: Float32Array | Float64Array): { condition: Float32Array; x: Float32Array } {
  const n = checkInputs(state, energies, showers, "forwardPreprocess");
  const size = state.modelSize;
  const data = dataEntries(state);
  const x = new Float32Array(n * size);
  let offset = 0;
  const means = new Float64Array(data);
  const stds = new Float64Array(data);
  forEachBlock(state, energies, showers, (blockEnergies, blockShowers) => {
    const u = logitValues(state, blockEnergies, blockShowers);
    const conditions = conditionsOf(state, blockEnergies);
    for (let row = 0, i = 0; row < u.length; row += size, i += 1) {
      meanAt(state, conditions[i], means);
      stdAt(state, conditions[i], stds);
      for (let k = 0; k < data; k += 1) x[offset + row + k] = (u[row + k] - means[k]) / stds[k];
    }
    offset += u.length;
  });
  return { condition: energyCondition(state, energies), x };
}

/**
 * Maps model outputs x [n, ...modelShape] with incident energies [n] (MeV) back to showers
 * [n, voxels] in MeV in the file's voxel order. Values outside the valid range are clipped
 * (E' into [0, 1]), and voxels below the dataset's threshold are set to 0.
 */
export function inversePreprocess(state: PreprocessingState, energies: ArrayLike<number>, x: Float32Array | Float64Array): Float32Array {
  const n = energies.length;
  const size = state.modelSize;
  if (x.length !== n * size) throw new Error(`inversePreprocess: x has ${x.length} values; expected ${n} x ${size} (model shape ${state.modelShape.join("x")})`);
  const f = state.maxDepositFactor;
  const a = state.logitOffset;
  const voxels = state.voxels;
  const threshold = state.voxelThreshold;

  // Inverts z -> u -> x -> E' and clips E' into [0, 1], with the means and standard deviations
  // of the current shower (standardise sets them).
  const conditions = conditionsOf(state, energies);
  const means = new Float64Array(dataEntries(state));
  const stds = new Float64Array(dataEntries(state));
  const standardise = (i: number) => {
    meanAt(state, conditions[i], means);
    stdAt(state, conditions[i], stds);
  };
  const scaled = (value: number, k: number): number => {
    const u = value * stds[k] + means[k];
    const sigmoid = 1 / (1 + Math.exp(-u));
    const result = (sigmoid - a) / (1 - 2 * a);
    return Number.isNaN(result) ? 0 : Math.min(1, Math.max(0, result));
  };

  const showers = new Float32Array(n * voxels);
  if (state.layout === "flat" && state.layerEnergies === true) {
    const { layerOfVoxel, layers } = layerIndex(state.dataset);
    const fractions = new Float64Array(voxels);
    const voxelSums = new Float64Array(layers);
    const shares = new Float64Array(layers);
    for (let i = 0; i < n; i += 1) {
      const row = i * size;
      standardise(i);
      voxelSums.fill(0);
      for (let v = 0; v < voxels; v += 1) {
        fractions[v] = scaled(x[row + v], v);
        voxelSums[layerOfVoxel[v]] += fractions[v];
      }
      // Voxel fractions are renormalised within each layer and the layer shares across layers,
      // leaving out layers whose voxels are all 0, so the layers add up to the predicted total.
      let shareSum = 0;
      for (let l = 0; l < layers; l += 1) {
        shares[l] = voxelSums[l] > 0 ? scaled(x[row + voxels + 1 + l], voxels + 1 + l) : 0;
        shareSum += shares[l];
      }
      const total = scaled(x[row + voxels], voxels) * f * energies[i];
      for (let v = 0; v < voxels; v += 1) {
        const l = layerOfVoxel[v];
        showers[i * voxels + v] = shares[l] > 0 ? (total * shares[l] * fractions[v]) / (shareSum * voxelSums[l]) : 0;
      }
    }
  } else if (state.layout === "flat") {
    const fractions = new Float64Array(voxels);
    for (let i = 0; i < n; i += 1) {
      const row = i * size;
      standardise(i);
      let sum = 0;
      for (let v = 0; v < voxels; v += 1) {
        fractions[v] = scaled(x[row + v], v);
        sum += fractions[v];
      }
      // The model predicts the total separately, so the voxel fractions are renormalised to sum to 1.
      const total = scaled(x[row + voxels], voxels) * f * energies[i];
      const factor = sum > 0 ? total / sum : 0;
      for (let v = 0; v < voxels; v += 1) showers[i * voxels + v] = fractions[v] * factor;
    }
  } else {
    const entries = new Float64Array(n * size);
    for (let i = 0; i < n; i += 1) {
      const row = i * size;
      standardise(i);
      const scale = f * energies[i];
      for (let k = 0; k < size; k += 1) entries[row + k] = scaled(x[row + k], k) * scale;
    }
    if (state.layout === "cartesian") {
      const grid = gridOf(state);
      showers.set(fromCartesian(grid, entries, n, cellShares(grid, state.voxelPrior ?? undefined)));
    } else {
      showers.set(entries);
    }
  }

  for (let k = 0; k < showers.length; k += 1) {
    if (showers[k] < threshold) showers[k] = 0;
  }
  return showers;
}
