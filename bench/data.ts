// Speed of the CaloChallenge data layer, each figure beside a reference measured in the same run.
//
//   node dist/bench/data.js [--showers N] [--feature-showers N]
//
// 1. Reading a gzip dataset 2 file written by h5py (h5py's default chunking), with h5wasm and with
//    h5py itself, in the same blocks of about 1024 showers aligned to the file's chunks, in MB/s
//    of decoded float32 data. The same showers
//    are also read from a file that caloscore wrote (chunks of whole rows).
// 2. High-level features of --feature-showers dataset 2 showers (default 100000, computed as
//    repeated passes over the showers in memory), beside numpy computing the same features once.
// 3. The Cartesian round trip (voxels -> 12 x 12 cells -> voxels) on the same realistic showers:
//    relative L1 voxel error with equal shares and with the mean-deposit prior.
// Prints one JSON object at the end.
import * as fs from "node:fs";
import * as path from "node:path";

import { loadGeometry } from "../src/calo/binning";
import { allocateFeatures, computeFeaturesInto, hitThreshold } from "../src/calo/features";
import { blockRows, createShowerFile, initHdf5, openShowerFile } from "../src/calo/hdf5";
import { cartesianGrid, cellShares, fromCartesian, toCartesian } from "../src/calo/voxelize";
import { writeFixture } from "../test/helpers/caloFixtures";
import { runPython, temporaryFolder } from "../test/helpers/caloPython";

function argument(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? Number(process.argv[i + 1]) : fallback;
}

const writeRows = 1000;

const h5pyReadScript = `
import sys, time, json, h5py
best = None
for attempt in range(2):
    started = time.perf_counter()
    values = 0
    with h5py.File(sys.argv[1], "r") as f:
        d = f["showers"]
        rows = int(sys.argv[2])
        for start in range(0, d.shape[0], rows):
            values += d[start:start + rows].size
    seconds = time.perf_counter() - started
    best = seconds if best is None else min(best, seconds)
print(json.dumps({"seconds": best, "bytes": values * 4}))
`;

// Writes the showers of argv[1] again with h5py, gzip level 4 and the chunk shape caloscore uses.
const h5pyWriteScript = `
import sys, time, json, h5py
with h5py.File(sys.argv[1], "r") as f:
    s = f["showers"][...]
    e = f["incident_energies"][...]
started = time.perf_counter()
with h5py.File(sys.argv[2], "w") as f:
    f.create_dataset("incident_energies", data=e, compression="gzip", chunks=(1024, 1), maxshape=(None, 1))
    f.create_dataset("showers", data=s, compression="gzip", chunks=(40, s.shape[1]), maxshape=(None, s.shape[1]))
print(json.dumps({"seconds": time.perf_counter() - started, "bytes": s.size * 4}))
`;

const numpyFeaturesScript = `
import sys, time, json, h5py
import numpy as np
with h5py.File(sys.argv[1], "r") as f:
    s = f["showers"][...]
started = time.perf_counter()
s = s.astype(np.float64).reshape(s.shape[0], 45, 144)
x, y = np.array(json.loads(sys.argv[2])), np.array(json.loads(sys.argv[3]))
e = s.sum(axis=2)
cx = (s * x).sum(axis=2) / (e + 1e-16)
cy = (s * y).sum(axis=2) / (e + 1e-16)
wx = np.sqrt(((s * x * x).sum(axis=2) / (e + 1e-16) - cx ** 2).clip(min=0))
wy = np.sqrt(((s * y * y).sum(axis=2) / (e + 1e-16) - cy ** 2).clip(min=0))
sparsity = (s <= 0.0151).mean(axis=2)
print(json.dumps({"seconds": time.perf_counter() - started, "showers": s.shape[0]}))
`;

/** Reads every shower of `file` in blocks of `rows`, twice, and returns the faster pass. */
function readThroughput(file: string, rows: number): { seconds: number; bytes: number } {
  let best = Infinity;
  let bytes = 0;
  for (let attempt = 0; attempt < 2; attempt += 1) {
    const started = performance.now();
    const shower = openShowerFile(file);
    bytes = 0;
    for (let start = 0; start < shower.count; start += rows) {
      bytes += shower.readShowers(start, Math.min(start + rows, shower.count)).byteLength;
    }
    shower.close();
    best = Math.min(best, (performance.now() - started) / 1000);
  }
  return { seconds: best, bytes };
}

async function main(): Promise<void> {
  await initHdf5();
  const showerCount = argument("showers", 10_000);
  const featureShowers = argument("feature-showers", 100_000);
  const folder = temporaryFolder("caloscore-bench-data-");
  const geometry = loadGeometry("2");

  console.log(`writing ${showerCount} dataset 2 showers with h5py (gzip)...`);
  const h5pyFile = writeFixture(folder, "h5py-ds2.h5", { dataset: "2", count: showerCount, seed: 42 });
  const source = openShowerFile(h5pyFile);
  const energies = source.readEnergies();
  const showers = source.readShowers(0, source.count);
  source.close();

  const ownFile = path.join(folder, "caloscore-ds2.h5");
  const writeStarted = performance.now();
  const writer = createShowerFile(ownFile, geometry.voxelCount);
  for (let start = 0; start < showerCount; start += writeRows) {
    const end = Math.min(start + writeRows, showerCount);
    writer.append(energies.subarray(start, end), showers.subarray(start * geometry.voxelCount, end * geometry.voxelCount));
  }
  writer.finish();
  const writeSeconds = (performance.now() - writeStarted) / 1000;
  const h5pyWrite = JSON.parse(runPython(h5pyWriteScript, [h5pyFile, path.join(folder, "h5py-rewrite.h5")], 600_000)) as { seconds: number; bytes: number };
  let nonzero = 0;
  for (const value of showers) if (value > 0) nonzero += 1;

  console.log("reading...");
  // Both readers use the same blocks: about 1024 rows, aligned to the file's HDF5 chunks.
  const rowsOf = (file: string): number => {
    const shower = openShowerFile(file);
    const rows = blockRows(shower);
    shower.close();
    return rows;
  };
  const h5pyRows = rowsOf(h5pyFile);
  const ownRows = rowsOf(ownFile);
  const h5py = JSON.parse(runPython(h5pyReadScript, [h5pyFile, String(h5pyRows)], 600_000)) as { seconds: number; bytes: number };
  const h5wasm = readThroughput(h5pyFile, h5pyRows);
  const h5pyOwn = JSON.parse(runPython(h5pyReadScript, [ownFile, String(ownRows)], 600_000)) as { seconds: number; bytes: number };
  const h5wasmOwn = readThroughput(ownFile, ownRows);
  const rate = (measure: { seconds: number; bytes: number }): number => measure.bytes / measure.seconds / 1e6;

  console.log("features...");
  const features = allocateFeatures(geometry, featureShowers);
  const featureStarted = performance.now();
  for (let offset = 0; offset < featureShowers; offset += showerCount) {
    const n = Math.min(showerCount, featureShowers - offset);
    computeFeaturesInto(features, offset, geometry, energies.subarray(0, n), showers.subarray(0, n * geometry.voxelCount), {
      threshold: hitThreshold("2"),
    });
  }
  const featureSeconds = (performance.now() - featureStarted) / 1000;
  const xs = JSON.stringify(Array.from(geometry.x.subarray(0, 144)));
  const ys = JSON.stringify(Array.from(geometry.y.subarray(0, 144)));
  const numpy = JSON.parse(runPython(numpyFeaturesScript, [h5pyFile, xs, ys], 600_000)) as { seconds: number; showers: number };

  console.log("cartesian round trip...");
  const grid = cartesianGrid(geometry);
  const half = Math.floor(showerCount / 2);
  const prior = new Float64Array(geometry.voxelCount);
  for (let i = 0; i < half; i += 1) {
    for (let v = 0; v < geometry.voxelCount; v += 1) prior[v] += showers[i * geometry.voxelCount + v] / energies[i] / half;
  }
  const held = showers.subarray(half * geometry.voxelCount);
  const heldCount = showerCount - half;
  const cartesian = toCartesian(grid, held, heldCount);
  const roundTrip: Record<string, number> = {};
  for (const [name, shares] of [["equal", cellShares(grid)], ["prior", cellShares(grid, prior)]] as const) {
    const back = fromCartesian(grid, cartesian, heldCount, shares);
    let error = 0;
    let total = 0;
    for (let i = 0; i < held.length; i += 1) {
      error += Math.abs(back[i] - held[i]);
      total += held[i];
    }
    roundTrip[name] = error / total;
  }

  const result = {
    machine: `${process.arch}, node ${process.version}`,
    read: {
      showers: showerCount,
      blockRows: { h5pyFile: h5pyRows, caloscoreFile: ownRows },
      decodedMB: h5wasm.bytes / 1e6,
      h5pyFileMBPerSecond: { h5wasm: rate(h5wasm), h5py: rate(h5py), ratio: rate(h5wasm) / rate(h5py) },
      caloscoreFileMBPerSecond: { h5wasm: rate(h5wasmOwn), h5py: rate(h5pyOwn), ratio: rate(h5wasmOwn) / rate(h5pyOwn) },
      fileMB: { h5py: fs.statSync(h5pyFile).size / 1e6, caloscore: fs.statSync(ownFile).size / 1e6 },
      writeMBPerSecond: { h5wasm: h5wasm.bytes / writeSeconds / 1e6, h5py: rate(h5pyWrite), ratio: h5wasm.bytes / writeSeconds / 1e6 / rate(h5pyWrite) },
      voxelOccupancy: nonzero / showers.length,
    },
    features: {
      showers: featureShowers,
      seconds: featureSeconds,
      showersPerSecond: featureShowers / featureSeconds,
      numpyShowersPerSecond: numpy.showers / numpy.seconds,
      ratio: featureShowers / featureSeconds / (numpy.showers / numpy.seconds),
    },
    cartesianRoundTripRelativeL1: roundTrip,
  };
  console.log(JSON.stringify(result, null, 2));
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
