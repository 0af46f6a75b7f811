// Voxel geometry of the CaloChallenge 2022 datasets, read from the official binning XML files in
// data/binning. Each <Layer> gives radial edges in mm (`r_edges`) and the number of angular bins
// (`n_bin_alpha`). A layer with a single edge has no voxels. Voxels are stored layer by layer,
// and within a layer alpha bin by alpha bin, each alpha bin listing its r bins from the centre out.
import * as fs from "node:fs";
import * as path from "node:path";

export type DatasetName = "1-photons" | "1-pions" | "2" | "3";

export const datasetNames: readonly DatasetName[] = ["1-photons", "1-pions", "2", "3"];

/** One layer that contains voxels (more than one r edge). */
export interface LayerBinning {
  /** Layer id in the binning file; dataset 1 skips ids with no voxels, so ids need not be 0..L-1. */
  id: number;
  /** Radial bin edges in mm, starting at 0. */
  rEdges: number[];
  alphaBins: number;
  /** Index of this layer's first voxel in a shower row. */
  firstVoxel: number;
  /** alphaBins x (rEdges.length - 1). */
  voxelCount: number;
}

/** Geometry of one dataset, with per-voxel arrays indexed in the file's voxel order. */
export interface Geometry {
  dataset: DatasetName;
  /** Absolute path of the binning file. */
  file: string;
  /** Layers that contain voxels, in file order. */
  layers: LayerBinning[];
  voxelCount: number;
  /** Index into `layers` (not the XML id) of each voxel. */
  layerOfVoxel: Int32Array;
  /** Middle of each voxel's r bin, in mm. */
  rCentre: Float64Array;
  /** Middle of each voxel's alpha bin, in rad, within (-pi, pi). */
  alphaCentre: Float64Array;
  /** rCentre cos(alphaCentre), in mm ("eta" in the CaloChallenge evaluation). */
  x: Float64Array;
  /** rCentre sin(alphaCentre), in mm ("phi" in the CaloChallenge evaluation). */
  y: Float64Array;
}

const binningFiles: Record<DatasetName, string> = {
  "1-photons": "binning_dataset_1_photons.xml",
  "1-pions": "binning_dataset_1_pions.xml",
  "2": "binning_dataset_2.xml",
  "3": "binning_dataset_3.xml",
};

/** Voxels per shower of each dataset, as the binning files define them. */
export const voxelCounts: Record<DatasetName, number> = {
  "1-photons": 368,
  "1-pions": 533,
  "2": 6480,
  "3": 40500,
};

/** Finds data/binning by walking up from this module, so it works from src/calo and dist/src/calo. */
function binningDirectory(): string {
  let directory = __dirname;
  for (let depth = 0; depth < 6; depth += 1) {
    const candidate = path.join(directory, "data", "binning");
    if (fs.existsSync(path.join(candidate, binningFiles["2"]))) return candidate;
    directory = path.dirname(directory);
  }
  throw new Error(`binning files not found: no data/binning/${binningFiles["2"]} above ${__dirname}`);
}

/** Returns the absolute path of a dataset's binning file. */
export function binningFile(dataset: DatasetName): string {
  return path.join(binningDirectory(), binningFiles[dataset]);
}

function readAttribute(file: string, element: string, name: string): string {
  const match = new RegExp(`\\b${name}\\s*=\\s*"([^"]*)"`).exec(element);
  if (match === null) throw new Error(`${file}: <Layer> element has no ${name} attribute: ${element}`);
  return match[1];
}

/** Parses the <Layer> elements of a binning file into the layers that contain voxels. */
export function parseBinning(file: string, text: string): LayerBinning[] {
  const layers: LayerBinning[] = [];
  let firstVoxel = 0;
  const elements = text.match(/<Layer\b[^>]*>/g) ?? [];
  if (elements.length === 0) throw new Error(`${file}: expected <Layer> elements, found none`);

  for (const element of elements) {
    const id = Number(readAttribute(file, element, "id"));
    const rEdges = readAttribute(file, element, "r_edges").split(",").map((s) => Number(s.trim()));
    const alphaBins = Number(readAttribute(file, element, "n_bin_alpha"));
    if (!Number.isInteger(id) || !Number.isInteger(alphaBins) || alphaBins < 1 || rEdges.some((r) => !Number.isFinite(r))) {
      throw new Error(`${file}: invalid <Layer> element: ${element}`);
    }
    for (let i = 1; i < rEdges.length; i += 1) {
      if (!(rEdges[i] > rEdges[i - 1])) throw new Error(`${file}: layer ${id} r_edges must increase, found ${rEdges.join(",")}`);
    }
    if (rEdges.length < 2) continue;

    const voxelCount = alphaBins * (rEdges.length - 1);
    layers.push({ id, rEdges, alphaBins, firstVoxel, voxelCount });
    firstVoxel += voxelCount;
  }
  return layers;
}

/**
 * Builds per-voxel centres the way the CaloChallenge evaluation's XMLHandler does. The r centre is
 * the middle of the r bin. Alpha bin i of n spans [-pi + 2 pi i / n, -pi + 2 pi (i + 1) / n], and
 * its centre is the middle of that interval. A layer with one alpha bin thus has alpha = 0, so
 * x = r and y = 0 there.
 */
function buildGeometry(dataset: DatasetName, file: string, layers: LayerBinning[]): Geometry {
  const voxelCount = layers.reduce((sum, layer) => sum + layer.voxelCount, 0);
  const layerOfVoxel = new Int32Array(voxelCount);
  const rCentre = new Float64Array(voxelCount);
  const alphaCentre = new Float64Array(voxelCount);
  const x = new Float64Array(voxelCount);
  const y = new Float64Array(voxelCount);

  layers.forEach((layer, layerIndex) => {
    const rBins = layer.rEdges.length - 1;
    for (let a = 0; a < layer.alphaBins; a += 1) {
      const alpha = -Math.PI + ((a + 0.5) * 2 * Math.PI) / layer.alphaBins;
      for (let r = 0; r < rBins; r += 1) {
        const voxel = layer.firstVoxel + a * rBins + r;
        const radius = 0.5 * (layer.rEdges[r] + layer.rEdges[r + 1]);
        layerOfVoxel[voxel] = layerIndex;
        rCentre[voxel] = radius;
        alphaCentre[voxel] = alpha;
        x[voxel] = radius * Math.cos(alpha);
        y[voxel] = radius * Math.sin(alpha);
      }
    }
  });
  return { dataset, file, layers, voxelCount, layerOfVoxel, rCentre, alphaCentre, x, y };
}

const geometryCache = new Map<DatasetName, Geometry>();

/** Loads a dataset's geometry from its binning file; the result is cached and must not be modified. */
export function loadGeometry(dataset: DatasetName): Geometry {
  const cached = geometryCache.get(dataset);
  if (cached !== undefined) return cached;

  const file = binningFile(dataset);
  const layers = parseBinning(file, fs.readFileSync(file, "utf8"));
  const geometry = buildGeometry(dataset, file, layers);
  if (geometry.voxelCount !== voxelCounts[dataset]) {
    throw new Error(`${file}: defines ${geometry.voxelCount} voxels; dataset ${dataset} expects ${voxelCounts[dataset]}`);
  }
  geometryCache.set(dataset, geometry);
  return geometry;
}

/** Returns the dataset whose showers have `voxels` voxels. */
export function datasetFromVoxelCount(voxels: number): DatasetName {
  for (const name of datasetNames) {
    if (voxelCounts[name] === voxels) return name;
  }
  const expected = datasetNames.map((name) => `${voxelCounts[name]} (${name})`).join(", ");
  throw new Error(`no CaloChallenge dataset has ${voxels} voxels per shower; expected one of ${expected}`);
}

/** Parses a dataset name from the command line or a config; "1" means "1-photons". */
export function parseDatasetName(text: string): DatasetName {
  const normalised = text.trim().toLowerCase();
  if (normalised === "1") return "1-photons";
  if ((datasetNames as readonly string[]).includes(normalised)) return normalised as DatasetName;
  throw new Error(`invalid dataset '${text}': expected one of 1-photons, 1-pions, 2, 3 (1 means 1-photons)`);
}
