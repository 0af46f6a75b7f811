import { before, test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";

import { DatasetName, loadGeometry } from "../src/calo/binning";
import { ShowerFeatures, computeFeatures, evaluationCut, hitThreshold } from "../src/calo/features";
import { initHdf5, openShowerFile } from "../src/calo/hdf5";
import { writeFixture } from "./helpers/caloFixtures";
import { runPython, temporaryFolder } from "./helpers/caloPython";

const folder = temporaryFolder("caloscore-features-");

before(async () => {
  await initHdf5();
});

// The CaloChallenge evaluation's formulas written with numpy in float64: centre = sum(x E) /
// (sum E + 1e-16), width = sqrt(max(sum(x^2 E) / (sum E + 1e-16) - centre^2, 0)).
const referenceScript = `
import sys, json
import numpy as np
import h5py
spec = json.load(open(sys.argv[1]))
with h5py.File(spec["file"], "r") as f:
    showers = f["showers"][...].astype(np.float64)
    e_inc = f["incident_energies"][...].astype(np.float64)[:, 0]
showers[showers < spec["cut"]] = 0.0
out = {"eTot": showers.sum(axis=1), "eRatio": showers.sum(axis=1) / e_inc,
       "hits": (showers > spec["threshold"]).sum(axis=1).astype(np.float64)}
columns = {k: [] for k in ("eLayer", "ecEta", "ecPhi", "ecR", "widthEta", "widthPhi", "widthR", "sparsity", "maxLayerFraction")}
x, y, r = (np.array(spec[k]) for k in ("x", "y", "r"))
for first, count, alpha in spec["layers"]:
    e = showers[:, first:first + count]
    total = e.sum(axis=1)
    columns["eLayer"].append(total)
    for name, coordinate in (("Eta", x), ("Phi", y), ("R", r)):
        c = coordinate[first:first + count]
        centre = (e * c).sum(axis=1) / (total + 1e-16)
        width = np.sqrt(((e * c * c).sum(axis=1) / (total + 1e-16) - centre ** 2).clip(min=0.0))
        if alpha == 1 and name != "R":
            centre = np.full_like(centre, np.nan); width = np.full_like(width, np.nan)
        columns["ec" + name].append(centre); columns["width" + name].append(width)
    columns["sparsity"].append((e <= spec["threshold"]).mean(axis=1))
    columns["maxLayerFraction"].append(np.where(total > 0, e.max(axis=1) / np.where(total > 0, total, 1), 0.0))
for k, v in columns.items():
    out[k] = np.stack(v, axis=1)
out["maxVoxelFraction"] = np.where(out["eTot"] > 0, showers.max(axis=1) / np.where(out["eTot"] > 0, out["eTot"], 1), 0.0)
for k, v in out.items():
    np.ascontiguousarray(v, dtype="<f8").tofile(spec["prefix"] + k + ".bin")
`;

const comparedFields = [
  "eTot",
  "eRatio",
  "hits",
  "eLayer",
  "ecEta",
  "ecPhi",
  "ecR",
  "widthEta",
  "widthPhi",
  "widthR",
  "sparsity",
  "maxLayerFraction",
  "maxVoxelFraction",
] as const;

function compareWithNumpy(dataset: DatasetName, count: number, cut: number): ShowerFeatures {
  const geometry = loadGeometry(dataset);
  const file = writeFixture(folder, `features-${dataset}.h5`, { dataset, count, seed: 7 });
  const threshold = hitThreshold(dataset);
  const prefix = path.join(folder, `reference-${dataset}-${cut}-`);
  const spec = {
    file,
    cut,
    threshold,
    prefix,
    x: Array.from(geometry.x),
    y: Array.from(geometry.y),
    r: Array.from(geometry.rCentre),
    layers: geometry.layers.map((layer) => [layer.firstVoxel, layer.voxelCount, layer.alphaBins]),
  };
  const specFile = `${prefix}spec.json`;
  fs.writeFileSync(specFile, JSON.stringify(spec));
  runPython(referenceScript, [specFile]);

  const shower = openShowerFile(file);
  const features = computeFeatures(geometry, shower.readEnergies(), shower.readShowers(0, shower.count), { threshold, cut });
  shower.close();

  for (const field of comparedFields) {
    const bytes = fs.readFileSync(`${prefix}${field}.bin`);
    const expected = new Float64Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
    const actual = features[field];
    assert.equal(actual.length, expected.length, `${dataset} ${field} length`);
    for (let i = 0; i < expected.length; i += 1) {
      if (Number.isNaN(expected[i])) {
        assert.ok(Number.isNaN(actual[i]), `${dataset} ${field}[${i}] is NaN`);
        continue;
      }
      const tolerance = 1e-9 * Math.max(1, Math.abs(expected[i]));
      if (!(Math.abs(actual[i] - expected[i]) <= tolerance)) {
        assert.fail(`${dataset} ${field}[${i}]: ${actual[i]} != numpy ${expected[i]}`);
      }
    }
  }
  return features;
}

test("features match numpy on dataset 2", () => {
  const features = compareWithNumpy("2", 120, 0);
  assert.equal(features.layers, 45);
  assert.ok(features.sparsity.some((value) => value > 0 && value < 1), "fixture has partly empty layers");
});

test("features match numpy with evaluation cut", () => {
  compareWithNumpy("2", 60, evaluationCut("2"));
});

test("features match numpy on dataset 1", () => {
  const features = compareWithNumpy("1-photons", 200, evaluationCut("1-photons"));
  assert.deepEqual(features.layerIds, [0, 1, 2, 3, 12]);
  // Layers 0, 3 and 12 have one alpha bin, so their eta and phi entries are NaN.
  assert.ok(Number.isNaN(features.ecEta[0]));
  assert.ok(Number.isNaN(features.widthPhi[3]));
  assert.ok(Number.isFinite(features.ecEta[1]));
});

test("features of a single-voxel shower", () => {
  const geometry = loadGeometry("2");
  const showers = new Float32Array(2 * 6480);
  // Shower 0: 50 MeV in layer 3, alpha bin 4, r bin 2. Shower 1: empty.
  const voxel = 3 * 144 + 4 * 9 + 2;
  showers[voxel] = 50;
  const features = computeFeatures(geometry, [1000, 2000], showers, { threshold: 0.0151 });
  const alpha = -Math.PI + (4.5 * 2 * Math.PI) / 16;
  const r = 2.5 * 4.65;
  assert.equal(features.eTot[0], 50);
  assert.equal(features.eRatio[0], 0.05);
  assert.equal(features.hits[0], 1);
  assert.equal(features.eLayer[3], 50);
  assert.ok(Math.abs(features.ecEta[3] - r * Math.cos(alpha)) < 1e-9);
  assert.ok(Math.abs(features.ecPhi[3] - r * Math.sin(alpha)) < 1e-9);
  assert.ok(Math.abs(features.ecR[3] - r) < 1e-9);
  assert.ok(features.widthEta[3] < 1e-6);
  assert.equal(features.sparsity[3], 143 / 144);
  assert.equal(features.sparsity[4], 1);
  assert.equal(features.maxVoxelFraction[0], 1);
  assert.equal(features.maxLayerFraction[3], 1);
  assert.equal(features.eTot[1], 0);
  assert.equal(features.ecEta[45 + 3], 0);
  assert.equal(features.widthR[45 + 3], 0);
  assert.equal(features.maxVoxelFraction[1], 0);
  assert.throws(() => computeFeatures(geometry, [1000], showers, { threshold: 0 }), /expected 1 showers x 6480 voxels/);
});
