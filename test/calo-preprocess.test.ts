import { before, test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";

import { DatasetName, loadGeometry } from "../src/calo/binning";
import { initHdf5, openShowerFile } from "../src/calo/hdf5";
import {
  PreprocessingFitter,
  conditionToEnergy,
  energyCondition,
  fitPreprocessing,
  forwardPreprocess,
  inversePreprocess,
  lossWeights,
} from "../src/calo/preprocess";
import { cartesianGrid, toCartesian } from "../src/calo/voxelize";
import { writeFixture } from "./helpers/caloFixtures";
import { runPython, temporaryFolder } from "./helpers/caloPython";

const folder = temporaryFolder("caloscore-preprocess-");

before(async () => {
  await initHdf5();
});

function loadFixture(dataset: DatasetName, count: number, seed = 3): { energies: Float32Array; showers: Float32Array; file: string } {
  const file = writeFixture(folder, `pre-${dataset}-${count}-${seed}.h5`, { dataset, count, seed });
  const shower = openShowerFile(file);
  const result = { energies: shower.readEnergies(), showers: shower.readShowers(0, shower.count), file };
  shower.close();
  return result;
}

/** Reads a file of little-endian float64 values that a numpy reference script wrote. */
function readFloat64(file: string): Float64Array {
  const bytes = fs.readFileSync(file);
  return new Float64Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}

/** Asserts |actual - expected| <= relative * |expected| + absolute for every element. */
function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, relative: number, absolute: number, label: string): void {
  assert.equal(actual.length, expected.length, `${label} length`);
  for (let i = 0; i < expected.length; i += 1) {
    const tolerance = relative * Math.abs(expected[i]) + absolute;
    if (!(Math.abs(actual[i] - expected[i]) <= tolerance)) assert.fail(`${label}[${i}]: ${actual[i]} != ${expected[i]}`);
  }
}

test("model shapes per dataset and layout", () => {
  const shapes: [DatasetName, "cartesian" | "cylindrical", number[]][] = [
    ["1-photons", "cartesian", [1, 384]],
    ["1-pions", "cylindrical", [1, 576]],
    ["2", "cartesian", [1, 45, 12, 12]],
    ["3", "cartesian", [1, 45, 32, 32]],
    ["2", "cylindrical", [1, 45, 16, 9]],
    ["3", "cylindrical", [1, 45, 50, 18]],
  ];
  for (const [dataset, layout, shape] of shapes) {
    const voxels = loadGeometry(dataset).voxelCount;
    const showers = new Float32Array(voxels).fill(0.5);
    const state = fitPreprocessing(dataset, layout, [5000], showers);
    assert.deepEqual(state.modelShape, shape, `${dataset} ${layout}`);
    assert.equal(state.mean.length, state.modelSize);
  }
});

// The logit values u of the cylindrical layout of dataset 2, written with numpy in float64.
const numpyLogits = `
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r") as f:
    s = f["showers"][...].astype(np.float64)
    e = f["incident_energies"][...].astype(np.float64)[:, 0]
a = 1e-6
x = a + (1 - 2 * a) * s / (2.0 * e[:, None])
u = np.log(x / (1 - x))
`;

// The preprocessing formulas written with numpy, with a constant mean per entry.
const referenceScript = `${numpyLogits}
mean = u.mean(axis=0)
std = u.std(axis=0)
std = np.where(std > 1e-6, std, 1.0)
z = (u - mean) / std
np.ascontiguousarray(z, dtype="<f8").tofile(sys.argv[2])
np.ascontiguousarray(np.log(e / 1000.0) / np.log(1000.0), dtype="<f8").tofile(sys.argv[3])
`;

test("forward matches numpy for dataset 2", () => {
  const { energies, showers, file } = loadFixture("2", 80);
  const state = fitPreprocessing("2", "cylindrical", energies, showers);
  const { condition, x } = forwardPreprocess(state, energies, showers);
  const zFile = path.join(folder, "z.bin");
  const conditionFile = path.join(folder, "condition.bin");
  runPython(referenceScript, [file, zFile, conditionFile]);
  assertClose(x, readFloat64(zFile), 1e-5, 1e-5, "x");
  assertClose(condition, readFloat64(conditionFile), 1e-6, 1e-7, "condition");
  for (const value of condition) assert.ok(value >= 0 && value <= 1, `condition ${value} in [0, 1]`);
});

test("cylindrical round trip to float32 precision", () => {
  const { energies, showers } = loadFixture("2", 60);
  const state = JSON.parse(JSON.stringify(fitPreprocessing("2", "cylindrical", energies, showers)));
  const back = inversePreprocess(state, energies, forwardPreprocess(state, energies, showers).x);
  assertClose(back, showers, 2e-5, 1e-9, "showers");
});

test("dataset 1 round trip to float32 precision", () => {
  // 300 showers span two of the forward pass's 256-shower blocks.
  const { energies, showers } = loadFixture("1-photons", 300);
  const state = JSON.parse(JSON.stringify(fitPreprocessing("1-photons", "cartesian", energies, showers)));
  assert.equal(state.layout, "flat");
  const { x } = forwardPreprocess(state, energies, showers);
  assert.equal(x.length, 300 * 384);
  for (let i = 0; i < 300; i += 1) {
    for (let k = 369; k < 384; k += 1) assert.equal(x[i * 384 + k], 0, "padding entries are 0");
  }
  const back = inversePreprocess(state, energies, x);
  assertClose(back, showers, 2e-5, 1e-9, "showers");
});

test("cartesian round trip keeps cells and layers", () => {
  const { energies, showers } = loadFixture("2", 60);
  const state = fitPreprocessing("2", "cartesian", energies, showers);
  assert.deepEqual(state.modelShape, [1, 45, 12, 12]);
  const { x } = forwardPreprocess(state, energies, showers);

  // Without the threshold, cell sums survive the round trip; voxels within a cell are redistributed by the prior.
  const grid = cartesianGrid(loadGeometry("2"));
  const unthresholded = inversePreprocess({ ...state, voxelThreshold: 0 }, energies, x);
  assertClose(toCartesian(grid, unthresholded, 60), toCartesian(grid, showers, 60), 3e-5, 1e-6, "cell energies");
  const back = inversePreprocess(state, energies, x);
  let error = 0;
  let total = 0;
  for (let i = 0; i < showers.length; i += 1) {
    error += Math.abs(back[i] - showers[i]);
    total += showers[i];
  }
  console.log(`# cartesian round trip, dataset 2 fixture: relative L1 voxel error ${(error / total).toFixed(4)}`);
  assert.ok(error / total < 0.5, `relative voxel error ${error / total} is bounded`);
});

test("inverse clips and applies the threshold", () => {
  const { energies, showers } = loadFixture("2", 20);
  const state = fitPreprocessing("2", "cylindrical", energies, showers);
  const x = new Float32Array(2 * state.modelSize);
  x.fill(-1e6, 0, state.modelSize);
  x.fill(1e6, state.modelSize);
  x[5] = Number.NaN;
  const back = inversePreprocess(state, [1000, 100000], x);
  for (let v = 0; v < state.voxels; v += 1) assert.equal(back[v], 0, `voxel ${v} of a very negative output is 0`);
  // Very large outputs clip to E' = 1, that is E = f E_inc.
  assert.equal(back[state.voxels + 3], 200000);
  const low = inversePreprocess(state, [1000], new Float32Array(state.modelSize).fill(0));
  for (const value of low) assert.ok(value === 0 || value >= 0.01515, `value ${value} is 0 or above the threshold`);
});

test("fitter accumulates blocks like one fit", () => {
  const { energies, showers } = loadFixture("2", 40);
  const whole = fitPreprocessing("2", "cartesian", energies, showers);
  const fitter = new PreprocessingFitter("2", "cartesian");
  fitter.add(energies.subarray(0, 15), showers.subarray(0, 15 * 6480));
  fitter.add(energies.subarray(15), showers.subarray(15 * 6480));
  const blocks = fitter.finish();
  assert.equal(blocks.fittedShowers, 40);
  assertClose(blocks.mean, whole.mean, 1e-12, 1e-12, "mean");
  assertClose(blocks.std, whole.std, 1e-9, 1e-12, "std");
  assertClose(blocks.voxelPrior ?? [], whole.voxelPrior ?? [], 1e-12, 1e-15, "prior");
});

test("condition maps the energy range onto 0..1", () => {
  const state = { energyMin: 1000, energyMax: 1_000_000 };
  assertClose(energyCondition(state, [1000, 31622.7766, 1_000_000]), [0, 0.5, 1], 0, 1e-6, "condition");
  assertClose(conditionToEnergy(state, [0, 0.5, 1]), [1000, 31622.7766, 1_000_000], 1e-6, 0, "energy");
});

/** Layer energies [n, layers] of showers [n, voxels]. */
function layerEnergies(dataset: DatasetName, showers: ArrayLike<number>, n: number): Float64Array {
  const geometry = loadGeometry(dataset);
  const layers = geometry.layers.length;
  const sums = new Float64Array(n * layers);
  for (let i = 0; i < n; i += 1) {
    for (let v = 0; v < geometry.voxelCount; v += 1) sums[i * layers + geometry.layerOfVoxel[v]] += showers[i * geometry.voxelCount + v];
  }
  return sums;
}

for (const dataset of ["1-photons", "1-pions"] as const) {
  test(`layer energies, dataset ${dataset}: closed form and round trip`, () => {
    const { energies, showers } = loadFixture(dataset, 40);
    const geometry = loadGeometry(dataset);
    const voxels = geometry.voxelCount;
    const layers = geometry.layers.length;
    const state = JSON.parse(JSON.stringify(fitPreprocessing(dataset, "cartesian", energies, showers, { layerEnergies: true })));
    assert.equal(state.layerEnergies, true);
    assert.deepEqual(state.modelShape, [1, dataset === "1-photons" ? 384 : 576]);
    const { x } = forwardPreprocess(state, energies, showers);
    const size = state.modelSize;
    const sums = layerEnergies(dataset, showers, 40);
    const logit = (value: number) => {
      const scaled = 1e-6 + (1 - 2e-6) * value;
      return Math.log(scaled / (1 - scaled));
    };
    const u = (i: number, k: number) => x[i * size + k] * state.std[k] + state.mean[k];
    for (let i = 0; i < 40; i += 1) {
      let total = 0;
      for (let l = 0; l < layers; l += 1) total += sums[i * layers + l];
      for (const v of [0, 100, voxels - 1]) {
        const layerSum = sums[i * layers + geometry.layerOfVoxel[v]];
        const expected = logit(layerSum > 0 ? showers[i * voxels + v] / layerSum : 0);
        assert.ok(Math.abs(u(i, v) - expected) < 1e-4 * (1 + Math.abs(expected)), `shower ${i} voxel ${v}: ${u(i, v)} vs ${expected}`);
      }
      const totalExpected = logit(total / (3.1 * energies[i]));
      assert.ok(Math.abs(u(i, voxels) - totalExpected) < 1e-4 * (1 + Math.abs(totalExpected)), `shower ${i} total entry`);
      for (let l = 0; l < layers; l += 1) {
        const expected = logit(sums[i * layers + l] / total);
        assert.ok(Math.abs(u(i, voxels + 1 + l) - expected) < 1e-4 * (1 + Math.abs(expected)), `shower ${i} layer entry ${l}`);
      }
      for (let k = voxels + 1 + layers; k < size; k += 1) assert.equal(x[i * size + k], 0, "padding entries are 0");
    }
    assertClose(inversePreprocess(state, energies, x), showers, 2e-5, 1e-9, "showers");
  });
}

test("layer entries set the inverse's layer energies", () => {
  const { energies, showers } = loadFixture("1-photons", 30);
  const state = fitPreprocessing("1-photons", "cartesian", energies, showers, { layerEnergies: true });
  const { x } = forwardPreprocess(state, energies, showers);
  // Replace every voxel entry by another shower's, so only the total and layer entries stay.
  const size = state.modelSize;
  const scrambled = x.slice();
  for (let i = 0; i < 30; i += 1) scrambled.set(x.subarray(((i + 7) % 30) * size, ((i + 7) % 30) * size + state.voxels), i * size);
  const back = inversePreprocess({ ...state, voxelThreshold: 0 }, energies, scrambled);
  const expected = layerEnergies("1-photons", showers, 30);
  const found = layerEnergies("1-photons", back, 30);
  const layers = loadGeometry("1-photons").layers.length;
  const hasEmptyLayer = (row: number) => Array.from({ length: layers }, (_, l) => expected[row * layers + l]).some((energy) => energy === 0);
  let checked = 0;
  for (let i = 0; i < 30; i += 1) {
    // A layer whose borrowed voxels are all 0 cannot hold energy (the other layers share it), so
    // only showers where neither row has an empty layer are compared.
    const other = (i + 7) % 30;
    if (hasEmptyLayer(i) || hasEmptyLayer(other)) continue;
    checked += 1;
    for (let l = 0; l < layers; l += 1) {
      const relative = Math.abs(found[i * layers + l] / expected[i * layers + l] - 1);
      assert.ok(relative < 1e-4, `shower ${i} layer ${l}: ${found[i * layers + l]} vs ${expected[i * layers + l]}`);
    }
  }
  assert.ok(checked >= 5, `${checked} showers compared`);

  // Layer 0 of the first shower generated empty: the other layers share its energy.
  const emptied = x.slice();
  emptied.fill(-1e6, 0, loadGeometry("1-photons").layers[0].voxelCount);
  const withEmpty = inversePreprocess({ ...state, voxelThreshold: 0 }, energies, emptied);
  assert.ok(withEmpty.every(Number.isFinite), "a layer without voxels gets 0, not NaN");
  const rowSum = (values: ArrayLike<number>) => Array.from({ length: state.voxels }, (_, v) => values[v]).reduce((a, b) => a + b, 0);
  assert.ok(Math.abs(rowSum(withEmpty) / rowSum(showers) - 1) < 1e-4, `total ${rowSum(withEmpty)} vs ${rowSum(showers)}`);
  assert.throws(() => fitPreprocessing("2", "cylindrical", energies.subarray(0, 1), new Float32Array(6480), { layerEnergies: true }), /layer-energy entries apply to dataset 1 only, found dataset 2/);
});

// The energy-dependent mean written with numpy: per-entry least squares on 1, c, c^2, c^3.
const polynomialScript = `${numpyLogits}
c = np.log(e / 1000.0) / np.log(1000.0)
basis = np.vander(c, 4, increasing=True)
beta = np.linalg.lstsq(basis, u, rcond=None)[0]
residual = u - basis @ beta
std = residual.std(axis=0)
std = np.where(std > 1e-6, std, 1.0)
np.ascontiguousarray(residual / std, dtype="<f8").tofile(sys.argv[2])
`;

test("energy-dependent mean matches numpy, dataset 2", () => {
  const { energies, showers, file } = loadFixture("2", 80);
  const state = JSON.parse(JSON.stringify(fitPreprocessing("2", "cylindrical", energies, showers, { energyDependentMean: true })));
  assert.equal(state.meanCoefficients.length, 3);
  const { x } = forwardPreprocess(state, energies, showers);
  const zFile = path.join(folder, "z-polynomial.bin");
  runPython(polynomialScript, [file, zFile]);
  const expected = readFloat64(zFile);
  assertClose(x, expected, 1e-4, 1e-4, "x");
  // The constant-mean fit gives other values wherever an entry's average moves with the energy.
  const constant = forwardPreprocess(fitPreprocessing("2", "cylindrical", energies, showers), energies, showers).x;
  let moved = 0;
  for (let i = 0; i < x.length; i += 1) if (Math.abs(constant[i] - x[i]) > 0.1) moved += 1;
  assert.ok(moved > x.length / 10, `${moved} of ${x.length} entries differ from the constant-mean fit`);
  assertClose(inversePreprocess(state, energies, x), showers, 2e-5, 1e-9, "round trip");
});

test("energy-dependent mean round trip, dataset 1", () => {
  const { energies, showers } = loadFixture("1-photons", 60);
  const state = JSON.parse(JSON.stringify(fitPreprocessing("1-photons", "cartesian", energies, showers, { layerEnergies: true, energyDependentMean: true })));
  const { x } = forwardPreprocess(state, energies, showers);
  assertClose(inversePreprocess(state, energies, x), showers, 2e-5, 1e-9, "showers");
});

// The energy-dependent standard deviation written with numpy: log of the spread about the cubic
// mean in 16 bins of c, floored at a tenth of the overall spread, then weighted least squares of
// a cubic on the bins' mean conditions.
const spreadScript = `${numpyLogits}
c = np.log(e / 1000.0) / np.log(1000.0)
basis = np.vander(c, 4, increasing=True)
residual = u - basis @ np.linalg.lstsq(basis, u, rcond=None)[0]
overall = residual.std(axis=0)
bins = np.clip(np.floor(c * 16), 0, 15)
points, logs, weights = [], [], []
for b in range(16):
    inside = bins == b
    if inside.sum() < 2:
        continue
    spread2 = (residual[inside] ** 2).mean(axis=0)
    logs.append(0.5 * np.log(np.maximum(spread2, (0.1 * overall) ** 2)))
    points.append(c[inside].mean())
    weights.append(inside.sum())
root = np.sqrt(np.array(weights) / np.sum(weights))[:, None]
coefficients = np.linalg.lstsq(np.vander(np.array(points), 4, increasing=True) * root, np.array(logs) * root, rcond=None)[0]
spread = np.where(overall > 1e-6, np.exp(basis @ coefficients), 1.0)
np.ascontiguousarray(residual / spread, dtype="<f8").tofile(sys.argv[2])
`;

test("energy-dependent std matches numpy, dataset 2", () => {
  const { energies, showers, file } = loadFixture("2", 120);
  const options = { energyDependentMean: true, energyDependentStd: true };
  const state = JSON.parse(JSON.stringify(fitPreprocessing("2", "cylindrical", energies, showers, options)));
  assert.equal(state.stdCoefficients.length, 3);
  const { x } = forwardPreprocess(state, energies, showers);
  const zFile = path.join(folder, "z-spread.bin");
  runPython(spreadScript, [file, zFile]);
  const expected = readFloat64(zFile);
  // The ridge of 1e-9 in the mean's fit moves its coefficients in the fifth digit. Where the
  // spread is a tenth of the overall one, that difference shows in z at the 1e-4 level.
  assertClose(x, expected, 1e-3, 1e-3, "x");
  assertClose(inversePreprocess(state, energies, x), showers, 2e-5, 1e-9, "round trip");
});

test("energy-dependent std evens out spreads", () => {
  // The fixture's showers fluctuate less at high energies, like real ones: the spread of the
  // standardised entries over the 15 energies then varies less with the option than without.
  const { energies, showers } = loadFixture("1-photons", 450);
  const spreadRange = (options: { energyDependentStd?: boolean }): number => {
    const state = fitPreprocessing("1-photons", "cartesian", energies, showers, { layerEnergies: true, energyDependentMean: true, ...options });
    const { x } = forwardPreprocess(state, energies, showers);
    const size = state.modelSize;
    const shareEntry = state.voxels + 4;
    const spreads: number[] = [];
    for (const energy of new Set(energies)) {
      const values: number[] = [];
      energies.forEach((value, i) => {
        if (value === energy) values.push(x[i * size + shareEntry]);
      });
      const mean = values.reduce((sum, value) => sum + value, 0) / values.length;
      spreads.push(Math.sqrt(values.reduce((sum, value) => sum + (value - mean) ** 2, 0) / values.length));
    }
    return Math.max(...spreads) / Math.min(...spreads);
  };
  const without = spreadRange({});
  const withOption = spreadRange({ energyDependentStd: true });
  assert.ok(withOption < without / 2, `largest over smallest spread: ${withOption} with the option, ${without} without`);
});

test("energy-dependent std round trip, dataset 1", () => {
  const { energies, showers } = loadFixture("1-photons", 60);
  const options = { layerEnergies: true, energyDependentStd: true };
  const state = JSON.parse(JSON.stringify(fitPreprocessing("1-photons", "cartesian", energies, showers, options)));
  assert.equal(state.meanCoefficients, null);
  const { x } = forwardPreprocess(state, energies, showers);
  assertClose(inversePreprocess(state, energies, x), showers, 2e-5, 1e-9, "showers");
});

// One bin with all the showers: log std is constant, and it is the log of the spread (the floor
// cannot apply). No bin with two showers: the fit keeps the constant std instead of solving an
// empty system.
const constantSpreadCases = [
  { name: "one energy", energies: new Float32Array(20).fill(4194304), stdRelative: 1e-6, stdAbsolute: 1e-9, coefficientTolerance: 1e-6 },
  { name: "sparse bins", energies: new Float32Array([256, 65536, 4194304]), stdRelative: 1e-12, stdAbsolute: 0, coefficientTolerance: 0 },
];
for (const { name, energies, stdRelative, stdAbsolute, coefficientTolerance } of constantSpreadCases) {
  test(`energy-dependent std, ${name}`, () => {
    const { showers } = loadFixture("1-photons", energies.length);
    const state = fitPreprocessing("1-photons", "cartesian", energies, showers, { energyDependentStd: true });
    const plain = fitPreprocessing("1-photons", "cartesian", energies, showers);
    assertClose(state.std, plain.std, stdRelative, stdAbsolute, "std");
    for (const row of state.stdCoefficients ?? []) assertClose(row, new Array<number>(row.length).fill(0), 0, coefficientTolerance, "coefficients");
  });
}

test("energy-dependent mean at one energy", () => {
  const { showers } = loadFixture("1-photons", 20);
  const energies = new Float32Array(20).fill(4194304);
  const state = fitPreprocessing("1-photons", "cartesian", energies, showers, { energyDependentMean: true });
  const plain = fitPreprocessing("1-photons", "cartesian", energies, showers);
  assertClose(state.mean, plain.mean, 1e-6, 1e-6, "mean");
  assertClose(state.std, plain.std, 1e-5, 1e-6, "std");
});

test("loss weights of the energy entries", () => {
  const { energies, showers } = loadFixture("1-photons", 20);
  const state = fitPreprocessing("1-photons", "cartesian", energies, showers, { layerEnergies: true });
  const weights = lossWeights(state, 20);
  assert.ok(weights !== null);
  // 368 voxels, the E_tot entry and 5 layer shares, padded to 384 entries: the mean weight is
  // (378 + 6 x 20) / 384 before scaling.
  const scale = 384 / (378 + 6 * 20);
  assertClose(weights.subarray(0, 368), new Array<number>(368).fill(scale), 1e-6, 0, "voxel weights");
  assertClose(weights.subarray(368, 374), new Array<number>(6).fill(20 * scale), 1e-6, 0, "energy weights");
  assertClose(weights.subarray(374), new Array<number>(10).fill(scale), 1e-6, 0, "padding weights");
  assert.equal(lossWeights(state, 1), null);
  const cylindrical = fitPreprocessing("2", "cylindrical", energies, new Float32Array(20 * 6480));
  assert.equal(lossWeights(cylindrical, 20), null);
});
