// Distances between a reference and a generated sample. The module covers histograms on shared
// bins, the 1-Wasserstein distance, the CaloChallenge separation power and the rank-based AUC.
// It also computes the Frechet and kernel physics distances (FPD, KPD) on high-level features,
// as the JetNet library's fpd and kpd define them.
import { Generator, noGrad, randint, Tensor, tensor, tidy } from "../torch";
import { choleskySemidefinite, symmetricEigenvalues } from "./linalg";

export type Sample = ArrayLike<number>;

/** Finite values of a sample, as float64 (NaN and infinities dropped). */
export function finiteValues(sample: Sample): Float64Array {
  const out = new Float64Array(sample.length);
  let count = 0;
  for (let i = 0; i < sample.length; i++) {
    const x = sample[i];
    if (Number.isFinite(x)) out[count++] = x;
  }
  return count === out.length ? out : out.slice(0, count);
}

function sortedFinite(sample: Sample): Float64Array {
  return finiteValues(sample).sort();
}

// ---------------------------------------------------------------------------------------------
// Histograms

export interface BinningOptions {
  bins?: number;
  /** "log" spaces edges evenly in log10 and ignores values at or below zero. */
  scale?: "linear" | "log";
  /** Fixed [low, high]; otherwise the range of the reference sample. */
  range?: [number, number];
}

/**
 * Computes bin edges shared by every sample of one quantity (bins + 1 values). The range comes
 * from the reference alone, so that a generator with wild outliers cannot squeeze the reference
 * into a few bins. Values outside it are not counted.
 */
export function histogramEdges(reference: Sample, options: BinningOptions = {}): Float64Array {
  const bins = options.bins ?? 40;
  const log = options.scale === "log";
  let low: number;
  let high: number;
  if (options.range !== undefined) {
    [low, high] = options.range;
  } else {
    low = Infinity;
    high = -Infinity;
    for (let i = 0; i < reference.length; i++) {
      const x = reference[i];
      if (!Number.isFinite(x) || (log && x <= 0)) continue;
      low = Math.min(low, x);
      high = Math.max(high, x);
    }
    if (low === Infinity) [low, high] = log ? [1e-3, 1] : [0, 1];
  }
  if (log && !(low > 0)) throw new Error(`log-scale histogram range must be positive, found [${low}, ${high}]`);
  if (high <= low) {
    // A constant sample still needs a bin of non-zero width around its value.
    const pad = log ? low * 0.1 : Math.max(Math.abs(low) * 0.05, 1e-9);
    low -= pad;
    high += pad;
  }
  const edges = new Float64Array(bins + 1);
  for (let i = 0; i <= bins; i++) {
    const f = i / bins;
    edges[i] = log ? 10 ** (Math.log10(low) + f * (Math.log10(high) - Math.log10(low))) : low + f * (high - low);
  }
  edges[bins] = high;
  return edges;
}

/**
 * Counts of a sample in bins [edges[i], edges[i+1]); the last bin includes its upper edge, as
 * numpy.histogram. Non-finite values and values outside the edges are not counted.
 */
export function histogram(sample: Sample, edges: Float64Array, weights?: Sample): Float64Array {
  const bins = edges.length - 1;
  const counts = new Float64Array(bins);
  const low = edges[0];
  const high = edges[bins];
  for (let i = 0; i < sample.length; i++) {
    const x = sample[i];
    if (!(x >= low && x <= high)) continue;
    // Binary search for the last edge at or below x.
    let lo = 0;
    let hi = bins;
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (edges[mid] <= x) lo = mid;
      else hi = mid;
    }
    counts[lo] += weights === undefined ? 1 : weights[i];
  }
  return counts;
}

/** Counts divided by their sum (all zeros stay zeros). */
export function normalise(counts: Float64Array): Float64Array {
  let total = 0;
  for (const c of counts) total += c;
  return total > 0 ? counts.map((c) => c / total) : counts.slice();
}

/**
 * Separation power of two histograms on the same bins, as the CaloChallenge evaluation defines
 * it: 1/2 sum_i (h1_i - h2_i)^2 / (h1_i + h2_i) over histograms normalised to unit sum, skipping
 * bins empty in both. It is 0 for identical shapes and 1 for disjoint ones.
 */
export function separationPower(counts1: Float64Array, counts2: Float64Array): number {
  if (counts1.length !== counts2.length) {
    throw new Error(`separation power needs histograms on the same bins, found ${counts1.length} and ${counts2.length} bins`);
  }
  const h1 = normalise(counts1);
  const h2 = normalise(counts2);
  let sum = 0;
  for (let i = 0; i < h1.length; i++) {
    const s = h1[i] + h2[i];
    if (s > 0) sum += ((h1[i] - h2[i]) * (h1[i] - h2[i])) / s;
  }
  return 0.5 * sum;
}

// ---------------------------------------------------------------------------------------------
// One-dimensional distances

/**
 * 1-Wasserstein distance (earth mover's distance) between the empirical distributions of two
 * samples: the integral of |F_a(x) - F_b(x)| over x, exact from the sorted samples (as
 * scipy.stats.wasserstein_distance). Non-finite values are dropped; NaN if either is empty.
 */
export function wasserstein1(a: Sample, b: Sample): number {
  const x = sortedFinite(a);
  const y = sortedFinite(b);
  if (x.length === 0 || y.length === 0) return NaN;
  let i = 0;
  let j = 0;
  let previous = Math.min(x[0], y[0]);
  let distance = 0;
  while (i < x.length || j < y.length) {
    const next = j >= y.length || (i < x.length && x[i] <= y[j]) ? x[i] : y[j];
    distance += Math.abs(i / x.length - j / y.length) * (next - previous);
    previous = next;
    while (i < x.length && x[i] === next) i++;
    while (j < y.length && y[j] === next) j++;
  }
  return distance;
}

/**
 * Area under the ROC curve of scores for positives against negatives, exact from ranks
 * (Mann-Whitney U, ties counted one half). 0.5 when the scores do not separate the classes.
 */
export function rocAuc(positiveScores: Sample, negativeScores: Sample): number {
  const n1 = positiveScores.length;
  const n0 = negativeScores.length;
  if (n1 === 0 || n0 === 0) return NaN;
  const scores = new Float64Array(n1 + n0);
  for (let i = 0; i < n1; i++) scores[i] = positiveScores[i];
  for (let i = 0; i < n0; i++) scores[n1 + i] = negativeScores[i];
  const order = Array.from(scores.keys()).sort((p, q) => scores[p] - scores[q]);

  // Sum of the (1-based, tie-averaged) ranks of the positives.
  let rankSum = 0;
  for (let start = 0; start < order.length; ) {
    let end = start + 1;
    while (end < order.length && scores[order[end]] === scores[order[start]]) end++;
    const averageRank = (start + 1 + end) / 2;
    for (let k = start; k < end; k++) if (order[k] < n1) rankSum += averageRank;
    start = end;
  }
  return (rankSum - (n1 * (n1 + 1)) / 2) / (n1 * n0);
}

// ---------------------------------------------------------------------------------------------
// Feature-space distances (FPD, KPD)

/** A feature matrix: row-major values of `rows` showers times `columns` features. */
export interface FeatureMatrix {
  values: Float32Array;
  rows: number;
  columns: number;
}

/**
 * Frechet distance between the Gaussians N(mu1, sigma1) and N(mu2, sigma2):
 * |mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)). The trace of the matrix square
 * root is the sum of square roots of the eigenvalues of L^T sigma2 L, where L L^T = sigma1, which
 * are those of sigma1 sigma2.
 */
export function frechetDistance(mu1: Float64Array, sigma1: Float64Array, mu2: Float64Array, sigma2: Float64Array): number {
  const d = mu1.length;
  let meanTerm = 0;
  for (let i = 0; i < d; i++) meanTerm += (mu1[i] - mu2[i]) ** 2;
  let traceTerm = 0;
  for (let i = 0; i < d; i++) traceTerm += sigma1[i * d + i] + sigma2[i * d + i];

  const l = choleskySemidefinite(sigma1, d);
  const product = noGrad(() =>
    tidy(() => {
      const lower = tensor(l, [d, d]);
      return lower.transpose(0, 1).matmul(tensor(sigma2, [d, d])).matmul(lower).contiguous().data() as Float64Array;
    }),
  );
  // Symmetrise against rounding before the symmetric eigenvalue solver.
  for (let i = 0; i < d; i++) {
    for (let j = i + 1; j < d; j++) {
      const mean = 0.5 * (product[i * d + j] + product[j * d + i]);
      product[i * d + j] = mean;
      product[j * d + i] = mean;
    }
  }
  let traceRoot = 0;
  for (const lambda of symmetricEigenvalues(product, d)) traceRoot += Math.sqrt(Math.max(lambda, 0));
  return meanTerm + traceTerm - 2 * traceRoot;
}

/**
 * Divides both feature matrices column by column by the maximum absolute value of the
 * reference column, as JetNet normalises features. Columns that are zero in the reference are
 * left as they are.
 */
export function normaliseFeatures(reference: FeatureMatrix, generated: FeatureMatrix): [FeatureMatrix, FeatureMatrix] {
  if (reference.columns !== generated.columns) {
    throw new Error(`feature matrices differ in width: reference ${reference.columns}, generated ${generated.columns}`);
  }
  const columns = reference.columns;
  const maxAbs = new Float64Array(columns);
  for (let r = 0; r < reference.rows; r++) {
    for (let c = 0; c < columns; c++) maxAbs[c] = Math.max(maxAbs[c], Math.abs(reference.values[r * columns + c]));
  }
  const scale = (m: FeatureMatrix): FeatureMatrix => {
    const values = new Float32Array(m.values.length);
    for (let r = 0; r < m.rows; r++) {
      for (let c = 0; c < columns; c++) {
        const i = r * columns + c;
        values[i] = maxAbs[c] > 0 ? m.values[i] / maxAbs[c] : m.values[i];
      }
    }
    return { values, rows: m.rows, columns };
  };
  return [scale(reference), scale(generated)];
}

function toTensor(m: FeatureMatrix): Tensor {
  return tensor(m.values, [m.rows, m.columns]);
}

/** Mean and covariance (n - 1 denominator, as numpy.cov) of the rows of x, as float64 arrays. */
function meanAndCovariance(x: Tensor): { mean: Float64Array; covariance: Float64Array } {
  return tidy(() => {
    const mean = x.mean([0], true);
    const centred = x.sub(mean);
    const covariance = centred.transpose(0, 1).matmul(centred).div(x.shape[0] - 1);
    return { mean: Float64Array.from(mean.data() as Float32Array), covariance: Float64Array.from(covariance.data() as Float32Array) };
  });
}

export interface FpdOptions {
  /** Smallest and largest batch size; each is capped at the smaller sample's size. */
  minSamples?: number;
  maxSamples?: number;
  /** Number of batch sizes between them, evenly spaced in 1/N. */
  points?: number;
  /** Batches drawn (with replacement) per batch size; their Frechet distances are averaged. */
  batches?: number;
  seed?: number;
  /** Apply normaliseFeatures first (JetNet's default). */
  normalise?: boolean;
}

/** A distance with its uncertainty. */
export interface Estimate {
  value: number;
  error: number;
}

/**
 * Least squares y = intercept + slope x with both parameters at or above zero (scipy's
 * curve_fit with bounds [0, inf) for JetNet's FPD). The error is the square root of the
 * intercept's variance, (J^T J)^-1 scaled by the residual variance, as curve_fit reports it.
 */
export function fitNonNegativeLine(x: Float64Array, y: Float64Array): { intercept: number; slope: number; interceptError: number } {
  const n = x.length;
  let sx = 0;
  let sy = 0;
  let sxx = 0;
  let sxy = 0;
  for (let i = 0; i < n; i++) {
    sx += x[i];
    sy += y[i];
    sxx += x[i] * x[i];
    sxy += x[i] * y[i];
  }
  const determinant = n * sxx - sx * sx;
  const candidates: [number, number][] = [];
  if (determinant > 0) candidates.push([(sxx * sy - sx * sxy) / determinant, (n * sxy - sx * sy) / determinant]);
  // The bounded optimum lies on a boundary when the free one is infeasible.
  candidates.push([0, sxx > 0 ? Math.max(sxy / sxx, 0) : 0]);
  candidates.push([Math.max(sy / n, 0), 0]);
  candidates.push([0, 0]);
  const residual = ([a, b]: [number, number]) => {
    let sum = 0;
    for (let i = 0; i < n; i++) sum += (y[i] - a - b * x[i]) ** 2;
    return sum;
  };
  let best: [number, number] = [0, 0];
  let bestResidual = Infinity;
  for (const candidate of candidates) {
    if (candidate[0] < 0 || candidate[1] < 0) continue;
    const r = residual(candidate);
    if (r < bestResidual) {
      best = candidate;
      bestResidual = r;
    }
  }
  const residualVariance = n > 2 ? bestResidual / (n - 2) : NaN;
  const interceptError = determinant > 0 ? Math.sqrt((sxx / determinant) * residualVariance) : NaN;
  return { intercept: best[0], slope: best[1], interceptError };
}

/**
 * Computes the Frechet physics distance: the Frechet distance between Gaussian fits to batches of
 * the two feature samples, averaged over `batches` draws per batch size N, fitted linearly
 * against 1/N and extrapolated to 1/N = 0. The defaults are those of jetnet.evaluation.fpd: N
 * from 20000 to 50000 in 10 steps, 20 batches each, seed 42. Batches come from libtorch's
 * generator, so values differ from JetNet's by sampling noise.
 */
export function fpd(reference: FeatureMatrix, generated: FeatureMatrix, options: FpdOptions = {}): Estimate {
  const [x, y] = options.normalise === false ? [reference, generated] : normaliseFeatures(reference, generated);
  const available = Math.min(x.rows, y.rows);
  const maxSamples = Math.min(options.maxSamples ?? 50000, available);
  const minSamples = Math.min(options.minSamples ?? 20000, Math.floor(maxSamples / 2.5));
  const points = options.points ?? 10;
  const batches = options.batches ?? 20;
  if (minSamples < 2) throw new Error(`FPD needs at least 5 showers per sample, found ${available}`);
  const generator = new Generator(options.seed ?? 42);

  const inverseSizes = new Float64Array(points);
  const distances = new Float64Array(points);
  noGrad(() =>
    tidy(() => {
      const xs = toTensor(x);
      const ys = toTensor(y);
      for (let p = 0; p < points; p++) {
        // Batch sizes at regular intervals in 1/N, truncated to integers as JetNet does.
        const inverse = 1 / minSamples + ((1 / maxSamples - 1 / minSamples) * p) / Math.max(points - 1, 1);
        const size = Math.floor(1 / inverse + 1e-9);
        let sum = 0;
        for (let b = 0; b < batches; b++) {
          const [first, second] = tidy(() => {
            const i1 = randint(0, x.rows, [size], { generator });
            const i2 = randint(0, y.rows, [size], { generator });
            return [xs.indexSelect(0, i1), ys.indexSelect(0, i2)];
          });
          const a = meanAndCovariance(first);
          const c = meanAndCovariance(second);
          first.dispose();
          second.dispose();
          sum += frechetDistance(a.mean, a.covariance, c.mean, c.covariance);
        }
        inverseSizes[p] = 1 / size;
        distances[p] = sum / batches;
      }
    }),
  );
  const fit = fitNonNegativeLine(inverseSizes, distances);
  return { value: fit.intercept, error: fit.interceptError };
}

export interface KpdOptions {
  /** Degree of the polynomial kernel (JetNet's kpd uses 4). */
  degree?: number;
  batches?: number;
  /** Showers per batch, capped at the smaller sample's size. */
  batchSize?: number;
  seed?: number;
  normalise?: boolean;
}

/**
 * Computes the unbiased estimate of the squared maximum mean discrepancy between two batches with
 * the polynomial kernel k(x, y) = (x . y / d + 1)^degree: the kernel means within each batch
 * without the diagonal, minus twice the mean across batches.
 */
export function mmdPolynomialUnbiased(x: Tensor, y: Tensor, degree = 4): number {
  return noGrad(() =>
    tidy(() => {
      const n = x.shape[0];
      const m = y.shape[0];
      const d = x.shape[1];
      // The kernel values are float32 and their sums float64, because the result is a small
      // difference of kernel means of order one.
      const kernelSum = (a: Tensor, b: Tensor) => a.matmul(b.transpose(0, 1)).div(d).add(1).pow(degree).to({ dtype: "float64" }).sum().item();
      const diagonalSum = (a: Tensor) => a.to({ dtype: "float64" }).square().sum([1]).div(d).add(1).pow(degree).sum().item();
      const within = (kernelSum(x, x) - diagonalSum(x)) / (n * (n - 1)) + (kernelSum(y, y) - diagonalSum(y)) / (m * (m - 1));
      return within - (2 * kernelSum(x, y)) / (n * m);
    }),
  );
}

/** Returns the q-th percentile (0..100) of sorted values with linear interpolation, as numpy.percentile. */
export function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  const position = (q / 100) * (sorted.length - 1);
  const below = Math.floor(position);
  const above = Math.min(below + 1, sorted.length - 1);
  return sorted[below] + (position - below) * (sorted[above] - sorted[below]);
}

/**
 * Computes the kernel physics distance: the median over `batches` of the unbiased
 * polynomial-kernel MMD between batches drawn with replacement, with half the 16.275 to 83.725
 * percentile spread as its error. The defaults are those of jetnet.evaluation.kpd (JetNet's
 * gen_metrics.py): 10 batches of 5000, kernel degree 4, seed 42.
 */
export function kpd(reference: FeatureMatrix, generated: FeatureMatrix, options: KpdOptions = {}): Estimate {
  const [x, y] = options.normalise === false ? [reference, generated] : normaliseFeatures(reference, generated);
  const batches = options.batches ?? 10;
  const batchSize = Math.min(options.batchSize ?? 5000, x.rows, y.rows);
  if (batchSize < 2) throw new Error(`KPD needs at least 2 showers per sample, found ${Math.min(x.rows, y.rows)}`);
  const generator = new Generator(options.seed ?? 42);
  const values = new Float64Array(batches);
  noGrad(() =>
    tidy(() => {
      const xs = toTensor(x);
      const ys = toTensor(y);
      for (let b = 0; b < batches; b++) {
        values[b] = tidy(() => {
          const first = xs.indexSelect(0, randint(0, x.rows, [batchSize], { generator }));
          const second = ys.indexSelect(0, randint(0, y.rows, [batchSize], { generator }));
          return mmdPolynomialUnbiased(first, second, options.degree ?? 4);
        });
      }
    }),
  );
  const sorted = values.slice().sort();
  return { value: percentile(sorted, 50), error: (percentile(sorted, 83.725) - percentile(sorted, 16.275)) / 2 };
}

/**
 * 1-Wasserstein distance between two weighted distributions on the same discrete positions
 * (e.g. mean energy per layer, as distributions over layer index): the integral of |F_a - F_b|
 * with each weight vector normalised to unit sum. NaN if either has no positive weight.
 */
export function weightedWasserstein1(positions: ArrayLike<number>, weightsA: ArrayLike<number>, weightsB: ArrayLike<number>): number {
  if (positions.length !== weightsA.length || positions.length !== weightsB.length) {
    throw new Error(`weighted EMD needs one weight per position, found ${positions.length} positions and ${weightsA.length}, ${weightsB.length} weights`);
  }
  const order = Array.from({ length: positions.length }, (_, i) => i).sort((p, q) => positions[p] - positions[q]);
  let totalA = 0;
  let totalB = 0;
  for (let i = 0; i < positions.length; i++) {
    totalA += weightsA[i];
    totalB += weightsB[i];
  }
  if (!(totalA > 0) || !(totalB > 0)) return NaN;
  let cumulativeA = 0;
  let cumulativeB = 0;
  let distance = 0;
  for (let k = 0; k + 1 < order.length; k++) {
    cumulativeA += weightsA[order[k]] / totalA;
    cumulativeB += weightsB[order[k]] / totalB;
    distance += Math.abs(cumulativeA - cumulativeB) * (positions[order[k + 1]] - positions[order[k]]);
  }
  return distance;
}
