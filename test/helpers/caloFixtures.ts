// Shower files written by h5py (Debian's /usr/bin/python3) in the CaloChallenge format. The showers
// are realistic and sparse. Energy falls off exponentially with radius and follows a Gaussian
// profile in depth. It arrives in lumps of about 2 MeV, and voxels below the 15.15 keV readout
// threshold are zero.
import * as path from "node:path";

import { DatasetName, loadGeometry } from "../../src/calo/binning";
import { runPython } from "./caloPython";

/** A deliberate defect to write into a fixture file, for validation tests. */
export type FixtureDefect =
  | "none"
  | "nan-shower"
  | "inf-shower"
  | "negative-shower"
  | "nan-energy"
  | "negative-energy"
  | "energy-below-range"
  | "energy-above-range"
  | "integer-showers"
  | "showers-rank-3"
  | "energies-rank-3"
  | "fewer-energies"
  | "missing-showers"
  | "missing-energies"
  | "wrong-voxels";

export interface FixtureOptions {
  dataset: DatasetName;
  count: number;
  seed?: number;
  defect?: FixtureDefect;
  /** Write with compression="gzip" and h5py's default chunking (default true). */
  gzip?: boolean;
}

const fixtureScript = `
import sys, json
import numpy as np
import h5py

spec = json.loads(sys.argv[1])
rng = np.random.default_rng(spec["seed"])
n = spec["count"]
layer_voxels = spec["layers"]   # list of [alpha_bins, r_centres...]
e_min, e_max = spec["energyRange"]
if spec["discreteEnergies"]:
    energies = (2.0 ** rng.integers(8, 23, n)).astype(np.float32)
else:
    energies = np.exp(rng.uniform(np.log(e_min), np.log(e_max), n)).astype(np.float32)

blocks = []
depth_total = len(layer_voxels)
shower_max = rng.uniform(0.25, 0.4, n) * depth_total
for index, (alpha_bins, r_centres) in enumerate(layer_voxels):
    r = np.array(r_centres)
    radial = np.exp(-r / 6.0) * np.maximum(r, 0.5)
    radial = np.tile(radial / radial.sum() / alpha_bins, alpha_bins)
    depth = np.exp(-0.5 * ((index + 0.5 - shower_max) / (0.3 * depth_total + 0.5)) ** 2)
    mean = energies[:, None] * depth[:, None] * radial[None, :] / (0.3 * depth_total + 0.5) / 2.5
    # Gamma with scale 2 MeV: a voxel's energy comes in lumps, so voxels far from the axis are mostly empty.
    block = rng.gamma(np.maximum(mean / 2.0, 1e-12), 2.0)
    block[block < 0.01515] = 0.0
    blocks.append(block)
showers = np.concatenate(blocks, axis=1).astype(np.float32)
energies = energies[:, None]

defect = spec["defect"]
if defect == "nan-shower": showers[n // 2, 7] = np.nan
if defect == "inf-shower": showers[n - 1, 3] = np.inf
if defect == "negative-shower": showers[1, 5] = -2.5
if defect == "nan-energy": energies[2, 0] = np.nan
if defect == "negative-energy": energies[1, 0] = -1000.0
if defect == "energy-below-range": energies[3, 0] = e_min * 0.5
if defect == "energy-above-range": energies[0, 0] = e_max * 2.0
if defect == "wrong-voxels": showers = showers[:, :-80]
if defect == "fewer-energies": energies = energies[:-1]

options = {"compression": "gzip"} if spec["gzip"] else {}
with h5py.File(spec["path"], "w") as f:
    if defect != "missing-energies":
        if defect == "energies-rank-3":
            f.create_dataset("incident_energies", data=energies[:, :, None], **options)
        else:
            f.create_dataset("incident_energies", data=energies, **options)
    if defect != "missing-showers":
        if defect == "integer-showers":
            f.create_dataset("showers", data=np.round(showers).astype(np.int32), **options)
        elif defect == "showers-rank-3":
            f.create_dataset("showers", data=showers.reshape(n, len(layer_voxels), -1), **options)
        else:
            f.create_dataset("showers", data=showers, **options)
    if spec["rawPrefix"]:
        energies.astype("<f4").tofile(spec["rawPrefix"] + ".energies.bin")
        showers.astype("<f4").tofile(spec["rawPrefix"] + ".showers.bin")
`;

/**
 * Writes a fixture file with h5py and returns its path. With `raw`, the exact float32 values are
 * also written to `<file>.energies.bin` and `<file>.showers.bin` (little-endian, row-major).
 */
export function writeFixture(folder: string, name: string, options: FixtureOptions, raw = false): string {
  const geometry = loadGeometry(options.dataset);
  const datasetOne = options.dataset === "1-photons" || options.dataset === "1-pions";
  const file = path.join(folder, name);
  const spec = {
    path: file,
    count: options.count,
    seed: options.seed ?? 1,
    defect: options.defect ?? "none",
    gzip: options.gzip ?? true,
    layers: geometry.layers.map((layer) => [
      layer.alphaBins,
      layer.rEdges.slice(1).map((edge, i) => 0.5 * (edge + layer.rEdges[i])),
    ]),
    energyRange: datasetOne ? [256, 4_194_304] : [1_000, 1_000_000],
    discreteEnergies: datasetOne,
    rawPrefix: raw ? file : "",
  };
  runPython(fixtureScript, [JSON.stringify(spec)]);
  return file;
}
