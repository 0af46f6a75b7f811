// Physics and file tests of the GFlash-style simulator: closed forms of the parametrisation,
// shower maximum, lateral containment, energy resolution, response, occupancy, file format and
// reproducibility.
import { before, test } from "node:test";
import * as assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

import { loadGeometry } from "../src/calo/binning";
import { initHdf5 } from "../src/calo/hdf5";
import { prepareRun, simulateBatch } from "../src/simulate/batch";
import { Calorimeter, SILICON, TUNGSTEN, calorimeterFor, effectiveMedium } from "../src/simulate/detector";
import { DATASET1_COUNTS, DATASET1_ENERGIES_MEV, apportion } from "../src/simulate/energies";
import { longitudinalDistribution, radialContainment, radialProfile, showerShape } from "../src/simulate/gflash";
import { predictProfiles } from "../src/simulate/prediction";
import { Rng, showerRng } from "../src/simulate/random";
import { simulateToFile } from "../src/simulate/run";
import { ShowerSimulator, VoxelLayout } from "../src/simulate/shower";
import { logGamma, regularizedGammaP } from "../src/simulate/special";
import { runPython, temporaryFolder } from "./helpers/caloPython";

const folder = temporaryFolder("caloscore-simulate-");

before(async () => {
  await initHdf5();
});

/** Layout with one voxel per (readout layer, r bin) and the given r edges in every layer. */
function ringLayout(calorimeter: Calorimeter, rEdges: number[]): VoxelLayout {
  const rBins = rEdges.length - 1;
  const layers = calorimeter.ranges.map((range, index) => ({ id: range.layer, rEdges, alphaBins: 1, firstVoxel: index * rBins }));
  return { layers, voxelCount: layers.length * rBins };
}

/** Simulates `count` showers of one energy into a fresh buffer [count, voxels]. */
function simulateFixed(simulator: ShowerSimulator, energyMeV: number, count: number, seed: number): Float32Array {
  const out = new Float32Array(count * simulator.voxelCount);
  for (let i = 0; i < count; i++) simulator.simulate(energyMeV, showerRng(seed, i), out, i * simulator.voxelCount);
  return out;
}

function rowSums(showers: Float32Array, voxels: number): Float64Array {
  const sums = new Float64Array(showers.length / voxels);
  for (let i = 0; i < sums.length; i++) {
    let sum = 0;
    for (let v = 0; v < voxels; v++) sum += showers[i * voxels + v];
    sums[i] = sum;
  }
  return sums;
}

function mean(values: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < values.length; i++) sum += values[i];
  return sum / values.length;
}

function standardDeviation(values: ArrayLike<number>): number {
  const average = mean(values);
  let sum = 0;
  for (let i = 0; i < values.length; i++) sum += (values[i] - average) ** 2;
  return Math.sqrt(sum / (values.length - 1));
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle] : 0.5 * (sorted[middle - 1] + sorted[middle]);
}

/** Least-squares line y = offset + slope x. */
function fitLine(x: number[], y: number[], weights: number[] = x.map(() => 1)): { offset: number; slope: number } {
  let sw = 0;
  let sx = 0;
  let sy = 0;
  let sxx = 0;
  let sxy = 0;
  for (let i = 0; i < x.length; i++) {
    sw += weights[i];
    sx += weights[i] * x[i];
    sy += weights[i] * y[i];
    sxx += weights[i] * x[i] * x[i];
    sxy += weights[i] * x[i] * y[i];
  }
  const slope = (sw * sxy - sx * sy) / (sw * sxx - sx * sx);
  return { offset: (sy - slope * sx) / sw, slope };
}

test("special functions match closed forms", () => {
  for (const n of [1, 2, 5, 10, 30]) {
    let logFactorial = 0;
    for (let k = 2; k < n; k++) logFactorial += Math.log(k);
    assert.ok(Math.abs(logGamma(n) - logFactorial) < 1e-10, `logGamma(${n}) = ${logGamma(n)}, expected ${logFactorial}`);
  }
  assert.ok(Math.abs(logGamma(0.5) - 0.5 * Math.log(Math.PI)) < 1e-10, "logGamma(1/2) = ln sqrt(pi)");

  // P(n, x) = 1 - exp(-x) sum_{k < n} x^k / k! for integer n.
  for (const n of [1, 2, 3, 7]) {
    for (const x of [0.1, 1, 3, 8, 20]) {
      let sum = 0;
      let term = 1;
      for (let k = 0; k < n; k++) {
        sum += term;
        term *= x / (k + 1);
      }
      const expected = 1 - Math.exp(-x) * sum;
      const actual = regularizedGammaP(n, x);
      assert.ok(Math.abs(actual - expected) < 1e-12, `P(${n}, ${x}) = ${actual}, expected ${expected}`);
    }
  }
});

test("random variates have the right moments", () => {
  const rng = new Rng(12345);
  const count = 200_000;
  const normals = new Float64Array(count);
  const gammas = new Float64Array(count);
  const smallGammas = new Float64Array(count);
  const smallPoissons = new Float64Array(count);
  const largePoissons = new Float64Array(count);
  for (let i = 0; i < count; i++) {
    normals[i] = rng.normal();
    gammas[i] = rng.gamma(3.5);
    smallGammas[i] = rng.gamma(0.3);
    smallPoissons[i] = rng.poisson(4);
    largePoissons[i] = rng.poisson(100);
  }
  // Tolerances are about 5 standard errors of each estimate.
  assert.ok(Math.abs(mean(normals)) < 0.012, `normal mean ${mean(normals)}`);
  assert.ok(Math.abs(standardDeviation(normals) - 1) < 0.01, `normal sd ${standardDeviation(normals)}`);
  assert.ok(Math.abs(mean(gammas) - 3.5) < 0.025, `Gamma(3.5) mean ${mean(gammas)}`);
  assert.ok(Math.abs(standardDeviation(gammas) ** 2 - 3.5) < 0.1, `Gamma(3.5) variance ${standardDeviation(gammas) ** 2}`);
  assert.ok(Math.abs(mean(smallGammas) - 0.3) < 0.007, `Gamma(0.3) mean ${mean(smallGammas)}`);
  assert.ok(Math.abs(standardDeviation(smallGammas) ** 2 - 0.3) < 0.02, `Gamma(0.3) variance ${standardDeviation(smallGammas) ** 2}`);
  assert.ok(Math.abs(mean(smallPoissons) - 4) < 0.025, `Poisson(4) mean ${mean(smallPoissons)}`);
  assert.ok(Math.abs(standardDeviation(smallPoissons) ** 2 - 4) < 0.1, `Poisson(4) variance ${standardDeviation(smallPoissons) ** 2}`);
  assert.ok(Math.abs(mean(largePoissons) - 100) < 0.12, `Poisson(100) mean ${mean(largePoissons)}`);
  assert.ok(Math.abs(standardDeviation(largePoissons) ** 2 - 100) < 2.5, `Poisson(100) variance ${standardDeviation(largePoissons) ** 2}`);

  const first = showerRng(7, 0).nextUint32();
  assert.equal(showerRng(7, 0).nextUint32(), first, "the same (seed, index) repeats its stream");
  assert.notEqual(showerRng(7, 1).nextUint32(), first, "another index starts another stream");
  assert.notEqual(showerRng(8, 0).nextUint32(), first, "another seed starts another stream");
});

test("W/Si effective medium matches the mass rule", () => {
  const medium = effectiveMedium(TUNGSTEN, 1.4, SILICON, 0.3);
  // The same quantities through mass fractions and g/cm^2, the form of hep-ex/0001020.
  const massW = 1.4 * TUNGSTEN.density;
  const massSi = 0.3 * SILICON.density;
  const wW = massW / (massW + massSi);
  const wSi = massSi / (massW + massSi);
  const meanDensity = (massW + massSi) / 1.7;
  const x0Mass = 1 / (wW / (TUNGSTEN.radiationLength * TUNGSTEN.density) + wSi / (SILICON.radiationLength * SILICON.density));
  const rmMass = 1 / (wW / (TUNGSTEN.moliereRadius * TUNGSTEN.density) + wSi / (SILICON.moliereRadius * SILICON.density));
  assert.ok(Math.abs(medium.radiationLength - x0Mass / meanDensity) < 1e-9, `X0_eff ${medium.radiationLength} mm`);
  assert.ok(Math.abs(medium.moliereRadius - rmMass / meanDensity) < 1e-9, `R_M,eff ${medium.moliereRadius} mm`);
  assert.ok(Math.abs(medium.z - (74 * wW + 14 * wSi)) < 1e-9, `Z_eff ${medium.z}`);
  // Hand-computed values: X0 4.221 mm, R_M 10.886 mm, F_S = 4.221 / 1.7, e/mip = 1 / 1.42.
  assert.ok(Math.abs(medium.radiationLength - 4.221) < 1e-3, `X0_eff ${medium.radiationLength} mm, expected 4.221`);
  assert.ok(Math.abs(medium.moliereRadius - 10.886) < 1e-3, `R_M,eff ${medium.moliereRadius} mm, expected 10.886`);
  assert.ok(Math.abs(medium.samplingFrequency - 4.221 / 1.7) < 1e-3, `F_S ${medium.samplingFrequency}`);
  assert.ok(Math.abs(medium.electronToMip - 1 / 1.42) < 1e-12, `e/mip ${medium.electronToMip}`);
});

/**
 * Depth of the maximum of one shower from its binned depth profile: for a gamma profile
 * T = (alpha - 1) / beta = mean - variance / mean, with Sheppard's correction (width^2 / 12)
 * for the binning.
 */
function depthOfMaximum(layerEnergies: Float64Array, layerWidth: number): number {
  let total = 0;
  let first = 0;
  let second = 0;
  for (let l = 0; l < layerEnergies.length; l++) {
    const depth = (l + 0.5) * layerWidth;
    total += layerEnergies[l];
    first += layerEnergies[l] * depth;
    second += layerEnergies[l] * depth * depth;
  }
  const average = first / total;
  const variance = second / total - average * average - (layerWidth * layerWidth) / 12;
  return average - variance / average;
}

test("shower maximum grows as ln E", () => {
  const calorimeter = calorimeterFor("2");
  const medium = calorimeter.medium;
  const layerWidth = calorimeter.ranges[0].end - calorimeter.ranges[0].start;
  // One ring per layer out to 1 km, so that no energy leaks sideways.
  const simulator = new ShowerSimulator(calorimeter, ringLayout(calorimeter, [0, 1e6]));
  const energiesGeV = [2, 8, 32, 128];
  const logEnergies = energiesGeV.map(Math.log);
  const medians: number[] = [];
  for (const energy of energiesGeV) {
    const showers = simulateFixed(simulator, energy * 1000, 600, 11);
    const depths: number[] = [];
    for (let i = 0; i < 600; i++) depths.push(depthOfMaximum(Float64Array.from(showers.subarray(i * 45, (i + 1) * 45)), layerWidth));
    medians.push(median(depths));
  }
  const fit = fitLine(logEnergies, medians);

  // GFlash: ln T is normal around ln T_sam, so the median T is
  // T_sam = ln(E / E_c) - 0.812 - 0.55 / F_S - 0.69 (1 - e/mip): slope 1 X0 per e-fold of E.
  const offset = Math.log(1000 / medium.criticalEnergy) - 0.812 - 0.55 / medium.samplingFrequency - 0.69 * (1 - medium.electronToMip);
  assert.ok(Math.abs(fit.slope - 1) < 0.05, `slope ${fit.slope.toFixed(3)} X0 per e-fold, expected 1`);
  assert.ok(Math.abs(fit.offset - offset) < 0.15, `T at 1 GeV ${fit.offset.toFixed(3)} X0, expected ${offset.toFixed(3)}`);
});

/**
 * Computes the fraction of the energy inside `radiusMm` that the parametrisation predicts. Each
 * depth range contributes its radial containment, weighted by its share of the longitudinal
 * profile. The (ln T, ln alpha) fluctuations are averaged by quadrature on a grid of normals.
 */
function predictedContainment(calorimeter: Calorimeter, energyMeV: number, radiusMm: number): number {
  const medium = calorimeter.medium;
  const distribution = longitudinalDistribution(medium, energyMeV);
  const profile = { coreRadius: 0, tailRadius: 0, coreWeight: 0 };
  let inside = 0;
  let total = 0;
  for (let i = -24; i <= 24; i++) {
    for (let j = -24; j <= 24; j++) {
      const z1 = i / 4;
      const z2 = j / 4;
      const weight = Math.exp(-0.5 * (z1 * z1 + z2 * z2));
      const shape = showerShape(medium, distribution, z1, z2);
      for (const range of calorimeter.ranges) {
        const fraction = regularizedGammaP(shape.alpha, shape.beta * range.end) - regularizedGammaP(shape.alpha, shape.beta * range.start);
        const tau = 0.5 * (range.start + range.end) * shape.tauPerX0;
        inside += weight * fraction * radialContainment(radialProfile(medium, energyMeV, tau, profile), radiusMm);
        total += weight * fraction;
      }
    }
  }
  return inside / total;
}

test("containment in 1 and 2 Moliere radii", () => {
  const calorimeter = calorimeterFor("2");
  const moliere = calorimeter.medium.moliereRadius;
  const simulator = new ShowerSimulator(calorimeter, ringLayout(calorimeter, [0, moliere, 2 * moliere, 1e6]));
  for (const energyGeV of [5, 50]) {
    const showers = simulateFixed(simulator, energyGeV * 1000, 800, 23);
    const rings = new Float64Array(3);
    for (let v = 0; v < showers.length; v++) rings[v % 3] += showers[v];
    const total = rings[0] + rings[1] + rings[2];
    const simulated = [rings[0] / total, (rings[0] + rings[1]) / total];
    const predicted = [predictedContainment(calorimeter, energyGeV * 1000, moliere), predictedContainment(calorimeter, energyGeV * 1000, 2 * moliere)];
    for (let k = 0; k < 2; k++) {
      assert.ok(
        Math.abs(simulated[k] - predicted[k]) < 0.002,
        `${energyGeV} GeV: fraction inside ${k + 1} R_M is ${simulated[k].toFixed(4)}, parametrisation ${predicted[k].toFixed(4)}`,
      );
    }
    // A shower keeps most of its energy within 1 R_M and about 95% within 2 R_M.
    assert.ok(predicted[0] > 0.75, `${energyGeV} GeV: predicted 1 R_M containment ${predicted[0]} is above 0.75`);
    assert.ok(predicted[0] < 0.95, `${energyGeV} GeV: predicted 1 R_M containment ${predicted[0]} is below 0.95`);
    assert.ok(predicted[1] > 0.9, `${energyGeV} GeV: predicted 2 R_M containment ${predicted[1]} is above 0.9`);
    assert.ok(predicted[1] < 0.99, `${energyGeV} GeV: predicted 2 R_M containment ${predicted[1]} is below 0.99`);
  }
});

test("energy resolution follows a / sqrt(E) + b", () => {
  const calorimeter = calorimeterFor("2");
  const simulator = new ShowerSimulator(calorimeter, loadGeometry("2"));
  const energiesGeV = [1, 4, 16, 64, 256, 1000];
  const count = 500;
  const inverseEnergies: number[] = [];
  const variances: number[] = [];
  const weights: number[] = [];
  for (const energy of energiesGeV) {
    const totals = rowSums(simulateFixed(simulator, energy * 1000, count, 31), simulator.voxelCount);
    const relative = standardDeviation(totals) / mean(totals);
    inverseEnergies.push(1 / energy);
    variances.push(relative * relative);
    // The variance of a sample variance is about 2 sigma^4 / n, so weight by 1 / sigma^4.
    weights.push(1 / (relative * relative * relative * relative));
  }
  // (sigma / E)^2 = a^2 / E + b^2 is linear in 1 / E.
  const fit = fitLine(inverseEnergies, variances, weights);
  const a = Math.sqrt(fit.slope);
  const b = Math.sqrt(fit.offset);
  assert.ok(Math.abs(a / calorimeter.stochasticTerm - 1) < 0.1, `fitted a = ${a.toFixed(4)}, set ${calorimeter.stochasticTerm}`);
  assert.ok(Math.abs(b / calorimeter.constantTerm - 1) < 0.1, `fitted b = ${b.toFixed(4)}, set ${calorimeter.constantTerm}`);
});

test("response of datasets 2 and 3 is near 1", () => {
  for (const [dataset, count] of [["2", 2000], ["3", 400]] as const) {
    const run = prepareRun({ dataset, events: count, seed: 5 });
    const batch = simulateBatch(run, 0, count);
    const totals = rowSums(batch.showers, run.simulator.voxelCount);
    let inside = 0;
    for (let i = 0; i < count; i++) {
      const ratio = totals[i] / batch.energies[i];
      if (ratio >= 0.5 && ratio <= 1.5) inside += 1;
    }
    assert.ok(inside / count >= 0.99, `dataset ${dataset}: ${inside} of ${count} showers have E_tot / E_inc in [0.5, 1.5]`);
  }
});

test("mean number of hits grows with energy", () => {
  const calorimeter = calorimeterFor("2");
  const simulator = new ShowerSimulator(calorimeter, loadGeometry("2"));
  let previous = 0;
  for (const energyGeV of [1, 10, 100, 1000]) {
    const showers = simulateFixed(simulator, energyGeV * 1000, 100, 3);
    let hits = 0;
    for (const value of showers) if (value > 0) hits += 1;
    const meanHits = hits / 100;
    assert.ok(meanHits > previous * 1.2, `${energyGeV} GeV: mean hits ${meanHits}, previous energy ${previous}`);
    assert.ok(meanHits < simulator.voxelCount, `${energyGeV} GeV: mean hits ${meanHits} below the voxel count`);
    previous = meanHits;
  }
});

const inspectScript = `
import sys, json
import numpy as np
import h5py
with h5py.File(sys.argv[1], "r") as f:
    e = f["incident_energies"]
    s = f["showers"]
    energies = e[:, 0]
    showers = s[:]
    print(json.dumps({
        "keys": sorted(f.keys()),
        "energyShape": list(e.shape), "showerShape": list(s.shape),
        "energyType": str(e.dtype), "showerType": str(s.dtype),
        "compression": s.compression,
        "finite": bool(np.isfinite(showers).all()),
        "minimum": float(showers.min()),
        "minimumPositive": float(showers[showers > 0].min()),
        "energies": sorted(set(float(x) for x in energies)) if len(set(energies.tolist())) < 20 else None,
        "energyRange": [float(energies.min()), float(energies.max())],
        "response": float(np.median(showers.sum(1) / energies)),
    }))
`;

test("files are valid for all three datasets", async () => {
  const cases = [
    { dataset: "1-photons", events: 242, voxels: 368 },
    { dataset: "2", events: 60, voxels: 6480 },
    { dataset: "3", events: 20, voxels: 40500 },
  ] as const;
  for (const { dataset, events, voxels } of cases) {
    const file = path.join(folder, `valid-${dataset}.h5`);
    await simulateToFile({ dataset, events, seed: 1 }, file, { chunk: 16, threads: 1 });
    assert.ok(!fs.existsSync(`${file}.partial`), `${file}.partial is renamed when complete`);
    const info = JSON.parse(runPython(inspectScript, [file]));
    assert.deepEqual(info.keys, ["incident_energies", "showers"]);
    assert.deepEqual(info.energyShape, [events, 1]);
    assert.deepEqual(info.showerShape, [events, voxels]);
    assert.equal(info.energyType, "float32");
    assert.equal(info.showerType, "float32");
    assert.equal(info.compression, "gzip");
    assert.equal(info.finite, true);
    assert.ok(info.minimum >= 0, `dataset ${dataset}: minimum voxel energy ${info.minimum}`);
    if (dataset === "1-photons") {
      // 242 = 2 x 121 showers: the real shares give 20 per energy up to 262 GeV, then 10, 6, 4, 2.
      assert.deepEqual(apportion(events, DATASET1_COUNTS), [...Array<number>(11).fill(20), 10, 6, 4, 2]);
      assert.deepEqual(info.energies, DATASET1_ENERGIES_MEV);
      // Dead material in front of the presampler and between the layers absorbs part of the energy.
      assert.ok(info.response > 0.7, `dataset 1 median E_tot / E_inc ${info.response} is above 0.7`);
      assert.ok(info.response < 1, `dataset 1 median E_tot / E_inc ${info.response} is below 1`);
    } else {
      assert.ok(info.minimumPositive >= 0.5e-3 / 0.033 - 1e-9, `dataset ${dataset}: smallest hit ${info.minimumPositive} MeV is above the threshold`);
      assert.ok(info.energyRange[0] >= 1000, `dataset ${dataset}: lowest energy ${info.energyRange[0]} MeV is at least 1 GeV`);
      assert.ok(info.energyRange[1] <= 1e6, `dataset ${dataset}: highest energy ${info.energyRange[1]} MeV is at most 1 TeV`);
      assert.ok(info.response > 0.9, `dataset ${dataset}: median E_tot / E_inc ${info.response} is above 0.9`);
      assert.ok(info.response < 1.05, `dataset ${dataset}: median E_tot / E_inc ${info.response} is below 1.05`);
    }
  }
});

test("same seed gives identical files", async () => {
  const request = { dataset: "2" as const, events: 90, seed: 42 };
  const first = path.join(folder, "repeat-1.h5");
  const second = path.join(folder, "repeat-2.h5");
  const split = path.join(folder, "repeat-split.h5");
  await simulateToFile(request, first, { chunk: 25, threads: 1 });
  // HDF5 object headers hold times in whole seconds, so the second run starts in another second.
  await new Promise((resolve) => setTimeout(resolve, 1100));
  await simulateToFile(request, second, { chunk: 25, threads: 1 });
  assert.ok(fs.readFileSync(first).equals(fs.readFileSync(second)), "two runs with seed 42 give the same bytes");

  // Two worker threads with the same chunk: the same bytes.
  const threaded = path.join(folder, "repeat-threads.h5");
  await simulateToFile(request, threaded, { chunk: 25, threads: 2 });
  assert.ok(fs.readFileSync(first).equals(fs.readFileSync(threaded)), "two threads give the same bytes as one");

  // Other chunking and two worker threads: the same arrays (appending other pieces changes the HDF5 layout).
  await simulateToFile(request, split, { chunk: 7, threads: 2 });
  const compare = `
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
print(all(np.array_equal(a[k][:], b[k][:]) for k in ("incident_energies", "showers")))
`;
  assert.equal(runPython(compare, [first, split]).trim(), "True", "chunk 7 on two threads gives the same showers as chunk 25 on one");

  const other = path.join(folder, "repeat-other.h5");
  await simulateToFile({ ...request, seed: 43 }, other, { chunk: 25, threads: 1 });
  assert.equal(runPython(compare, [first, other]).trim(), "False", "another seed gives other showers");
});

const cli = path.join(__dirname, "..", "..", "bin", "caloscore.js");

test("simulate command writes requested energies", () => {
  const file = path.join(folder, "cli-energies.h5");
  execFileSync(process.execPath, [cli, "simulate", "--dataset", "2", "--events", "6", "--seed", "9", "--out", file, "--energies", "5000,20000"], {
    encoding: "utf8",
    stdio: "pipe",
  });
  const info = JSON.parse(runPython(inspectScript, [file]));
  assert.deepEqual(info.showerShape, [6, 6480]);
  assert.deepEqual(info.energies, [5000, 20000]);
});

test("simulate command rejects invalid options", () => {
  const cases: [string[], RegExp][] = [
    [["--dataset", "4", "--events", "2", "--seed", "1", "--out", "x.h5"], /--dataset must be one of 1-photons, 2, 3, found '4'/],
    [["--dataset", "2", "--seed", "1", "--out", "x.h5"], /missing required option --events/],
    [["--dataset", "2", "--events", "2", "--seed=-1", "--out", "x.h5"], /--seed must be at least 0/],
    [["--dataset", "2", "--events", "2.5", "--seed", "1", "--out", "x.h5"], /--events must be an integer/],
    [["--dataset", "2", "--events", "2", "--seed", "1", "--out", "x.h5", "--energies", "5000,abc"], /--energies must be positive numbers of MeV/],
    [["--dataset", "2", "--events", "2", "--seed", "1", "--out", "x.h5", "--energies", "500"], /500 MeV is outside the range of dataset 2, 1000 to 1000000 MeV/],
  ];
  for (const [options, message] of cases) {
    const result = spawnSync(process.execPath, [cli, "simulate", ...options], { encoding: "utf8", cwd: folder });
    assert.equal(result.status, 1, `exit status for ${options.join(" ")}`);
    assert.match(result.stderr, message);
  }
  assert.ok(!fs.existsSync(path.join(folder, "x.h5")), "no file is written for invalid options");
});

test("worker failure removes the partial file", async () => {
  const file = path.join(folder, "worker-failure.h5");
  await assert.rejects(
    simulateToFile({ dataset: "2", events: 8, seed: 1, energiesMeV: [-5] }, file, { chunk: 4, threads: 2 }),
    /simulation worker failed: --energies: every energy must be a positive number of MeV, found -5/,
  );
  assert.ok(!fs.existsSync(file), `${file} is not written`);
  assert.ok(!fs.existsSync(`${file}.partial`), `${file}.partial is removed`);
});

test("voxel profiles match the prediction", () => {
  // Dataset 2 binning (evenly spaced r edges) and dataset 1 binning (uneven edges, alpha bins,
  // photons with conversion depth and dead material).
  for (const [dataset, energyGeV, count] of [["2", 20, 400], ["1-photons", 65.536, 1500]] as const) {
    const calorimeter = calorimeterFor(dataset);
    const geometry = loadGeometry(dataset);
    const simulator = new ShowerSimulator(calorimeter, geometry);
    const energyMeV = energyGeV * 1000;
    const showers = simulateFixed(simulator, energyMeV, count, 17);

    for (const range of calorimeter.ranges) {
      const layer = geometry.layers.find((candidate) => candidate.id === range.layer);
      assert.ok(layer !== undefined, `dataset ${dataset}: binning has layer ${range.layer}`);
      const rBins = layer.rEdges.length - 1;
      const predicted = predictProfiles({ ...calorimeter, ranges: [range] }, energyMeV, layer.rEdges);

      // Per-shower fractions of the incident energy: the layer total, then each r bin.
      const perShower = Array.from({ length: rBins + 1 }, () => new Float64Array(count));
      for (let i = 0; i < count; i++) {
        for (let v = 0; v < layer.voxelCount; v++) {
          const value = showers[i * geometry.voxelCount + layer.firstVoxel + v] / energyMeV;
          perShower[0][i] += value;
          perShower[1 + (v % rBins)][i] += value;
        }
      }
      const expectations = [predicted.layerFractions[0], ...predicted.radialFractions];
      expectations.forEach((expected, k) => {
        if (expected < 0.005) return;
        const simulated = mean(perShower[k]);
        // Four standard errors of the simulated mean, plus 0.5% for the quadrature grid.
        const tolerance = (4 * standardDeviation(perShower[k])) / Math.sqrt(count) + 0.005 * expected;
        const quantity = k === 0 ? "layer total" : `r bin ${k - 1}`;
        assert.ok(
          Math.abs(simulated - expected) < tolerance,
          `dataset ${dataset} layer ${range.layer} ${quantity}: energy fraction ${simulated.toFixed(5)}, predicted ${expected.toFixed(5)}, tolerance ${tolerance.toFixed(5)}`,
        );
      });
    }
  }
});
