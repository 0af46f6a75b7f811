// High-level shower features with the definitions of the CaloChallenge evaluation
// (HighLevelFeatures.py): per layer, the energy, the energy-weighted centre and width of the voxel
// centres x = r cos(alpha) ("eta") and y = r sin(alpha) ("phi"), plus radial moments, sparsity,
// hit counts and the largest voxel. All sums run in float64.
import type { DatasetName, Geometry } from "./binning";

/**
 * Features of N showers over the geometry's L layers. Per-layer arrays are [N, L] row-major, with
 * layers in binning-file order. Layers without angular binning (one alpha bin) contain NaN in the
 * eta and phi columns, as the evaluation leaves them undefined there.
 */
export interface ShowerFeatures {
  count: number;
  layers: number;
  /** Layer ids from the binning file, [L]. */
  layerIds: number[];
  /** Incident energy in MeV, [N]. */
  eInc: Float64Array;
  /** Sum of all voxels in MeV, [N]. */
  eTot: Float64Array;
  /** eTot / eInc, [N]. */
  eRatio: Float64Array;
  /** Energy per layer in MeV, [N, L]. */
  eLayer: Float64Array;
  /** Energy-weighted mean of voxel x per layer in mm, [N, L]; 0 for an empty layer. */
  ecEta: Float64Array;
  /** Energy-weighted mean of voxel y per layer in mm, [N, L]; 0 for an empty layer. */
  ecPhi: Float64Array;
  /** Energy-weighted mean of voxel r per layer in mm, [N, L]; 0 for an empty layer. */
  ecR: Float64Array;
  /** Energy-weighted standard deviation of voxel x per layer in mm, [N, L]. */
  widthEta: Float64Array;
  /** Energy-weighted standard deviation of voxel y per layer in mm, [N, L]. */
  widthPhi: Float64Array;
  /** Energy-weighted standard deviation of voxel r per layer in mm, [N, L]. */
  widthR: Float64Array;
  /** Fraction of the layer's voxels at or below the threshold, [N, L]. */
  sparsity: Float64Array;
  /** Number of voxels above the threshold, [N]. */
  hits: Float64Array;
  /** Largest voxel energy over eTot, [N]; 0 for an empty shower. */
  maxVoxelFraction: Float64Array;
  /** Largest voxel energy in the layer over that layer's energy, [N, L]; 0 for an empty layer. */
  maxLayerFraction: Float64Array;
}

export interface FeatureOptions {
  /** Voxel energy in MeV at or below which a voxel counts as empty for sparsity and hits. */
  threshold: number;
  /**
   * Voxels below this energy in MeV are set to zero before any feature is computed, as the
   * CaloChallenge evaluation does. Default 0 (no cut).
   */
  cut?: number;
}

/**
 * Hit threshold in MeV per dataset, from the CaloScore paper: 0.01 keV for dataset 1 and 15.1 keV
 * for datasets 2 and 3.
 */
export function hitThreshold(dataset: DatasetName): number {
  return dataset === "2" || dataset === "3" ? 0.0151 : 1e-5;
}

/**
 * Voxel cut in MeV that the CaloChallenge evaluation applies before computing features: 1 MeV for
 * dataset 1 and 0.5 keV / 0.033 (the sampling fraction) for datasets 2 and 3.
 */
export function evaluationCut(dataset: DatasetName): number {
  return dataset === "2" || dataset === "3" ? 0.5e-3 / 0.033 : 1.0;
}

/** Allocates zeroed features for `count` showers of `geometry`. */
export function allocateFeatures(geometry: Geometry, count: number): ShowerFeatures {
  const layers = geometry.layers.length;
  const perLayer = (): Float64Array => new Float64Array(count * layers);
  return {
    count,
    layers,
    layerIds: geometry.layers.map((layer) => layer.id),
    eInc: new Float64Array(count),
    eTot: new Float64Array(count),
    eRatio: new Float64Array(count),
    eLayer: perLayer(),
    ecEta: perLayer(),
    ecPhi: perLayer(),
    ecR: perLayer(),
    widthEta: perLayer(),
    widthPhi: perLayer(),
    widthR: perLayer(),
    sparsity: perLayer(),
    hits: new Float64Array(count),
    maxVoxelFraction: new Float64Array(count),
    maxLayerFraction: perLayer(),
  };
}

// The evaluation divides by (E + 1e-16), so an empty layer gets a centre and width of 0.
const denominatorOffset = 1e-16;

function width(sumSquares: number, mean: number, denominator: number): number {
  return Math.sqrt(Math.max(sumSquares / denominator - mean * mean, 0));
}

/**
 * Computes features of showers [n, voxels] (MeV) with incident energies [n] (MeV) and writes them
 * into `target` at rows [offset, offset + n), so a file can be processed block by block.
 */
export function computeFeaturesInto(
  target: ShowerFeatures,
  offset: number,
  geometry: Geometry,
  energies: ArrayLike<number>,
  showers: Float32Array | Float64Array,
  options: FeatureOptions,
): void {
  const voxels = geometry.voxelCount;
  const n = energies.length;
  if (showers.length !== n * voxels) {
    throw new Error(`computeFeatures: showers has ${showers.length} values; expected ${n} showers x ${voxels} voxels`);
  }
  if (offset < 0 || offset + n > target.count) {
    throw new Error(`computeFeatures: rows [${offset}, ${offset + n}) do not fit in features for ${target.count} showers`);
  }

  const { x, y, rCentre } = geometry;
  const layerCount = geometry.layers.length;
  const threshold = options.threshold;
  const cut = options.cut ?? 0;

  for (let i = 0; i < n; i += 1) {
    const row = offset + i;
    const base = i * voxels;
    let total = 0;
    let hits = 0;
    let maxVoxel = 0;

    for (let l = 0; l < layerCount; l += 1) {
      const layer = geometry.layers[l];
      const first = layer.firstVoxel;
      const last = first + layer.voxelCount;
      let energy = 0;
      let sumX = 0;
      let sumY = 0;
      let sumR = 0;
      let sumXX = 0;
      let sumYY = 0;
      let sumRR = 0;
      let empty = 0;
      let layerMax = 0;

      for (let v = first; v < last; v += 1) {
        let e = showers[base + v];
        if (e < cut) e = 0;
        if (e <= threshold) empty += 1;
        if (e > layerMax) layerMax = e;
        energy += e;
        const ex = e * x[v];
        const ey = e * y[v];
        const er = e * rCentre[v];
        sumX += ex;
        sumY += ey;
        sumR += er;
        sumXX += ex * x[v];
        sumYY += ey * y[v];
        sumRR += er * rCentre[v];
      }

      const cell = row * layerCount + l;
      const denominator = energy + denominatorOffset;
      const meanR = sumR / denominator;
      target.eLayer[cell] = energy;
      target.ecR[cell] = meanR;
      target.widthR[cell] = width(sumRR, meanR, denominator);
      if (layer.alphaBins > 1) {
        const meanX = sumX / denominator;
        const meanY = sumY / denominator;
        target.ecEta[cell] = meanX;
        target.ecPhi[cell] = meanY;
        target.widthEta[cell] = width(sumXX, meanX, denominator);
        target.widthPhi[cell] = width(sumYY, meanY, denominator);
      } else {
        target.ecEta[cell] = Number.NaN;
        target.ecPhi[cell] = Number.NaN;
        target.widthEta[cell] = Number.NaN;
        target.widthPhi[cell] = Number.NaN;
      }
      target.sparsity[cell] = empty / layer.voxelCount;
      target.maxLayerFraction[cell] = energy > 0 ? layerMax / energy : 0;

      total += energy;
      hits += layer.voxelCount - empty;
      if (layerMax > maxVoxel) maxVoxel = layerMax;
    }

    const eInc = energies[i];
    target.eInc[row] = eInc;
    target.eTot[row] = total;
    target.eRatio[row] = total / eInc;
    target.hits[row] = hits;
    target.maxVoxelFraction[row] = total > 0 ? maxVoxel / total : 0;
  }
}

/** Computes features of showers [n, voxels] in MeV with incident energies [n] in MeV. */
export function computeFeatures(
  geometry: Geometry,
  energies: ArrayLike<number>,
  showers: Float32Array | Float64Array,
  options: FeatureOptions,
): ShowerFeatures {
  const features = allocateFeatures(geometry, energies.length);
  computeFeaturesInto(features, 0, geometry, energies, showers, options);
  return features;
}
