// `caloscore info`: describes a CaloChallenge shower file and checks it.
import * as fs from "node:fs";
import * as path from "node:path";

import { DatasetName, loadGeometry, parseDatasetName } from "../../calo/binning";
import { ShowerFile, incidentEnergyRange, blockRows, initHdf5, openShowerFile } from "../../calo/hdf5";
import { flag, optionalString, parseOptions } from "../args";

export const summary = "describe a shower file: counts, energies, dataset, memory needed, validation";

const help = `usage: caloscore info FILE.h5 [--dataset D] [--quick]

Prints the number of showers, the incident energy range, the recognised dataset, the memory
needed to load all showers, and a validation verdict. Exits with 1 when the file is invalid.

options:
  --dataset D   expected dataset (1-photons, 1-pions, 2, 3; 1 means 1-photons); default: recognised
                from the number of voxels per shower
  --quick       check structure and incident energies only, without reading every shower`;

function formatBytes(bytes: number): string {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

function formatEnergy(mev: number): string {
  return mev >= 1000 ? `${(mev / 1000).toPrecision(5)} GeV` : `${mev.toPrecision(5)} MeV`;
}

interface ScanResult {
  /** Mean of E_tot / E_inc. */
  meanRatio: number;
  /** Fraction of voxels above zero. */
  occupancy: number;
  seconds: number;
}

/** Reads every shower block by block for E_tot / E_inc and occupancy. */
function scanShowers(file: ShowerFile, energies: Float32Array): ScanResult {
  const started = performance.now();
  const rows = blockRows(file);
  let ratioSum = 0;
  let nonzero = 0;
  for (let start = 0; start < file.count; start += rows) {
    const end = Math.min(start + rows, file.count);
    const block = file.readShowers(start, end);
    for (let i = 0; i < end - start; i += 1) {
      let total = 0;
      const base = i * file.voxels;
      for (let v = 0; v < file.voxels; v += 1) {
        const value = block[base + v];
        total += value;
        if (value > 0) nonzero += 1;
      }
      ratioSum += total / energies[start + i];
    }
  }
  return {
    meanRatio: ratioSum / Math.max(1, file.count),
    occupancy: nonzero / Math.max(1, file.count * file.voxels),
    seconds: (performance.now() - started) / 1000,
  };
}

export async function run(args: string[]): Promise<number> {
  const parsed = parseOptions("info", args, { dataset: { type: "string" }, quick: { type: "boolean" } }, true);
  if (parsed.values.help) {
    console.log(help);
    return 0;
  }
  if (parsed.positionals.length !== 1) {
    console.error(`info: expected one FILE.h5 argument, found ${parsed.positionals.length}\n\n${help}`);
    return 2;
  }
  const filePath = parsed.positionals[0];
  const datasetText = optionalString(parsed, "dataset");
  const expected: DatasetName | undefined = datasetText === undefined ? undefined : parseDatasetName(datasetText);
  const quick = flag(parsed, "quick");

  await initHdf5();
  let file: ShowerFile;
  try {
    file = openShowerFile(filePath, { dataset: expected });
  } catch (error) {
    console.log(`file        ${filePath}`);
    console.log(`validation  FAILED: ${(error as Error).message}`);
    return 1;
  }

  try {
    const geometry = loadGeometry(file.dataset);
    const energies = file.readEnergies();
    let low = Infinity;
    let high = -Infinity;
    for (const value of energies) {
      low = Math.min(low, value);
      high = Math.max(high, value);
    }
    const range = incidentEnergyRange[file.dataset];
    const origin = expected === undefined ? "recognised from the voxel count" : "as requested";
    const showerBytes = file.count * file.voxels * 4;

    console.log(`file        ${filePath} (${formatBytes(fs.statSync(filePath).size)} on disk)`);
    console.log(`dataset     ${file.dataset} (${origin}; ${path.basename(geometry.file)}, ${geometry.layers.length} layers, ${geometry.voxelCount} voxels)`);
    console.log(`showers     ${file.count}`);
    if (file.count > 0) {
      console.log(`energies    ${formatEnergy(low)} to ${formatEnergy(high)} (dataset range ${formatEnergy(range.min)} to ${formatEnergy(range.max)})`);
    }
    console.log(`memory      ${formatBytes(showerBytes)} to load all showers as float32 (${formatBytes(file.voxels * 4)} per shower)`);
    file.close();

    if (quick) {
      console.log("validation  structure and incident energies passed; shower values not read (--quick)");
      return 0;
    }
    // Reopening with validate scans every value for NaN, Inf and negatives, block by block.
    const checked = openShowerFile(filePath, { dataset: file.dataset, validate: true });
    try {
      const scan = scanShowers(checked, energies);
      console.log(`showers     mean E_tot/E_inc ${scan.meanRatio.toFixed(4)}; ${(100 * scan.occupancy).toFixed(1)}% of voxels above 0 (read in ${scan.seconds.toFixed(1)} s)`);
    } finally {
      checked.close();
    }
    console.log("validation  passed: structure, dtypes, incident energy range, no NaN, Inf or negative voxel energies");
    return 0;
  } catch (error) {
    file.close();
    console.log(`validation  FAILED: ${(error as Error).message}`);
    return 1;
  }
}
