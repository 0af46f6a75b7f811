// Layouts of a shower for a convolutional model.
//
// Cartesian: each layer becomes a size x size grid of square cells covering [-R, R] in x and y.
// R is the layer's outer radius (41.85 mm in datasets 2 and 3), so the grid is the square that
// circumscribes the readout disc. A cylindrical voxel's energy goes to the cell that contains
// its centre (x, y) = (r cos alpha, r sin alpha). The inverse divides each cell's energy among the
// voxels whose centres lie in it, in proportion to a per-voxel prior (the mean training deposit,
// or equal shares without one). Some cells contain no voxel centre: the corners outside the disc,
// and, in dataset 2, cells near the axis that the innermost ring skips. Energy that a model puts
// there goes to the nearest cell that has voxels, so every layer's energy is kept exactly.
// NOTE: the round trip is lossy within a cell. On the synthetic dataset 2 showers of bench/data.ts
// the relative L1 voxel error is 0.11 with the mean-deposit prior and 0.17 with equal shares.
//
// Cylindrical: the file's own voxel order is already [layers, alpha, r], so that layout is the
// identity; the model treats alpha as periodic (circular padding).
import type { Geometry } from "./binning";

/** Cartesian cells per side for each dataset, as in CaloScore: 12 (dataset 2) and 32 (dataset 3). */
export function defaultGridSize(geometry: Geometry): number {
  if (geometry.dataset === "2") return 12;
  if (geometry.dataset === "3") return 32;
  throw new Error(`no Cartesian grid for dataset ${geometry.dataset}: its layers have different binnings; use the 1D layout`);
}

/** Mapping between a geometry's cylindrical voxels and a Cartesian grid, [layers, size (y), size (x)]. */
export interface CartesianGrid {
  geometry: Geometry;
  /** Cells per side. */
  size: number;
  /** Half width of the grid in mm: the outer radius. */
  halfWidth: number;
  layers: number;
  /** layers x size x size. */
  cellCount: number;
  /** Cell of each voxel (global index into [layers, size, size]). */
  cellOfVoxel: Int32Array;
  /**
   * Cell whose voxels receive each cell's energy in the inverse: itself when voxel centres lie
   * in it, otherwise the nearest cell in the same layer that has voxels.
   */
  receivingCell: Int32Array;
  /** Voxels per cell. */
  voxelsInCell: Int32Array;
}

/** Builds the Cartesian grid for a geometry whose layers all share one binning (datasets 2 and 3). */
export function cartesianGrid(geometry: Geometry, size = defaultGridSize(geometry)): CartesianGrid {
  const reference = geometry.layers[0];
  for (const layer of geometry.layers) {
    const same = layer.alphaBins === reference.alphaBins && layer.rEdges.join(",") === reference.rEdges.join(",");
    if (!same) throw new Error(`${geometry.file}: layer ${layer.id} binning differs from layer ${reference.id}; a Cartesian grid needs one binning for all layers`);
  }
  if (!Number.isInteger(size) || size < 1) throw new Error(`Cartesian grid size must be a positive integer, found ${size}`);

  const halfWidth = reference.rEdges[reference.rEdges.length - 1];
  const cellWidth = (2 * halfWidth) / size;
  const layers = geometry.layers.length;
  const cellsPerLayer = size * size;
  const cellOfVoxel = new Int32Array(geometry.voxelCount);
  const voxelsInCell = new Int32Array(layers * cellsPerLayer);

  // In dataset 3 some centres lie exactly on cell edges (x = 0, y = -10.4625 mm) up to rounding of
  // cos and sin. Rounding the cell coordinate to 1e-9 first sends every such centre to the cell
  // above the edge (larger x or y), whatever the rounding.
  const clampIndex = (value: number): number => {
    const position = Math.round(((value + halfWidth) / cellWidth) * 1e9) / 1e9;
    return Math.min(size - 1, Math.max(0, Math.floor(position)));
  };
  for (let v = 0; v < geometry.voxelCount; v += 1) {
    const cell = geometry.layerOfVoxel[v] * cellsPerLayer + clampIndex(geometry.y[v]) * size + clampIndex(geometry.x[v]);
    cellOfVoxel[v] = cell;
    voxelsInCell[cell] += 1;
  }

  // Every layer has the same binning, so the nearest occupied cell is found on layer 0 and reused.
  const nearest = new Int32Array(cellsPerLayer);
  for (let cell = 0; cell < cellsPerLayer; cell += 1) {
    if (voxelsInCell[cell] > 0) {
      nearest[cell] = cell;
      continue;
    }
    let best = -1;
    let bestDistance = Infinity;
    for (let other = 0; other < cellsPerLayer; other += 1) {
      if (voxelsInCell[other] === 0) continue;
      const dy = Math.floor(other / size) - Math.floor(cell / size);
      const dx = (other % size) - (cell % size);
      const distance = dx * dx + dy * dy;
      if (distance < bestDistance) {
        best = other;
        bestDistance = distance;
      }
    }
    nearest[cell] = best;
  }
  const receivingCell = new Int32Array(layers * cellsPerLayer);
  for (let l = 0; l < layers; l += 1) {
    for (let cell = 0; cell < cellsPerLayer; cell += 1) receivingCell[l * cellsPerLayer + cell] = l * cellsPerLayer + nearest[cell];
  }

  return { geometry, size, halfWidth, layers, cellCount: layers * cellsPerLayer, cellOfVoxel, receivingCell, voxelsInCell };
}

/** Sums showers [n, voxels] into Cartesian cells, returning [n, layers, size, size]. */
export function toCartesian(grid: CartesianGrid, showers: Float32Array | Float64Array, n: number): Float32Array {
  const voxels = grid.geometry.voxelCount;
  if (showers.length !== n * voxels) throw new Error(`toCartesian: showers has ${showers.length} values; expected ${n} x ${voxels}`);
  const cells = grid.cellCount;
  const result = new Float32Array(n * cells);
  const sums = new Float64Array(cells);
  for (let i = 0; i < n; i += 1) {
    sums.fill(0);
    const base = i * voxels;
    for (let v = 0; v < voxels; v += 1) sums[grid.cellOfVoxel[v]] += showers[base + v];
    result.set(sums, i * cells);
  }
  return result;
}

/**
 * Normalised shares for the inverse: share[v] = prior[v] / (sum of prior over the voxels of v's
 * cell). Cells whose prior sums to zero (or with no prior) split equally.
 */
export function cellShares(grid: CartesianGrid, prior?: ArrayLike<number>): Float64Array {
  const voxels = grid.geometry.voxelCount;
  if (prior !== undefined && prior.length !== voxels) throw new Error(`cellShares: prior has ${prior.length} entries; expected ${voxels}`);
  const totals = new Float64Array(grid.cellCount);
  if (prior !== undefined) {
    for (let v = 0; v < voxels; v += 1) {
      if (!(prior[v] >= 0)) throw new Error(`cellShares: prior[${v}] is ${prior[v]}; expected a finite value >= 0`);
      totals[grid.cellOfVoxel[v]] += prior[v];
    }
  }
  const shares = new Float64Array(voxels);
  for (let v = 0; v < voxels; v += 1) {
    const cell = grid.cellOfVoxel[v];
    shares[v] = prior !== undefined && totals[cell] > 0 ? prior[v] / totals[cell] : 1 / grid.voxelsInCell[cell];
  }
  return shares;
}

/**
 * Returns Cartesian showers [n, layers, size, size] to the file's voxel order [n, voxels]. Each
 * cell's energy, plus that of empty cells assigned to it, is split among its voxels by `shares`
 * (from cellShares), so the energy of every layer is kept up to float32 rounding.
 */
export function fromCartesian(grid: CartesianGrid, cartesian: Float32Array | Float64Array, n: number, shares: Float64Array): Float32Array {
  const voxels = grid.geometry.voxelCount;
  const cells = grid.cellCount;
  if (cartesian.length !== n * cells) throw new Error(`fromCartesian: input has ${cartesian.length} values; expected ${n} x ${cells}`);
  if (shares.length !== voxels) throw new Error(`fromCartesian: shares has ${shares.length} entries; expected ${voxels}`);
  const result = new Float32Array(n * voxels);
  const gathered = new Float64Array(cells);
  for (let i = 0; i < n; i += 1) {
    gathered.fill(0);
    const base = i * cells;
    for (let cell = 0; cell < cells; cell += 1) gathered[grid.receivingCell[cell]] += cartesian[base + cell];
    const out = i * voxels;
    for (let v = 0; v < voxels; v += 1) result[out + v] = gathered[grid.cellOfVoxel[v]] * shares[v];
  }
  return result;
}

/**
 * Model shape of the cylindrical layout, [layers, alpha, r]. The file's voxel order is this
 * layout already, so showers need no reordering.
 */
export function cylindricalShape(geometry: Geometry): [number, number, number] {
  const reference = geometry.layers[0];
  for (const layer of geometry.layers) {
    if (layer.alphaBins !== reference.alphaBins || layer.rEdges.length !== reference.rEdges.length) {
      throw new Error(`${geometry.file}: layer ${layer.id} has ${layer.alphaBins} x ${layer.rEdges.length - 1} voxels, layer ${reference.id} ${reference.alphaBins} x ${reference.rEdges.length - 1}; the cylindrical layout needs the same counts in every layer`);
    }
  }
  return [geometry.layers.length, reference.alphaBins, reference.rEdges.length - 1];
}
