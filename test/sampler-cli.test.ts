import { before, test } from "node:test";
import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

import { initHdf5, openShowerFile } from "../src/calo/hdf5";
import { writeFixture } from "./helpers/caloFixtures";
import { temporaryFolder } from "./helpers/caloPython";

const folder = temporaryFolder("caloscore-sample-");
const cli = path.resolve(__dirname, "../../bin/caloscore.js");
const runDir = path.join(folder, "run");
let dataFile = "";

function caloscore(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [cli, ...args], {
    encoding: "utf8",
    timeout: 120_000,
    env: { ...process.env, CALOSCORE_THREADS: "1" },
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

function readFile(file: string): { energies: Float32Array; showers: Float32Array; count: number; voxels: number } {
  const opened = openShowerFile(file);
  try {
    return { energies: opened.readEnergies(0, opened.count), showers: opened.readShowers(0, opened.count), count: opened.count, voxels: opened.voxels };
  } finally {
    opened.close();
  }
}

// A tiny 1D U-Net trained for one epoch on 300 dataset-1 showers: enough for a loadable run.
before(async () => {
  await initHdf5();
  dataFile = writeFixture(folder, "train.h5", { dataset: "1-photons", count: 300, seed: 5 });
  const config = {
    description: "test: tiny 1D U-Net for dataset 1 photons",
    dataset: "1-photons",
    layout: "cartesian",
    network: { channels: [8, 16], kernel: 3, pooling: [4], embedding: 16, dropout: 0, fourierScale: 16 },
    training: { batchSize: 64, learningRate: 0.001, maxEpochs: 1, validationFraction: 0.2, seed: 1 },
    sampling: { steps: 25, snr: 0.2, batchSize: 4 },
  };
  const configFile = path.join(folder, "tiny.json");
  fs.writeFileSync(configFile, JSON.stringify(config));
  const result = caloscore("train", "--config", configFile, "--sde", "subVP", "--data", dataFile, "--out", runDir);
  assert.equal(result.status, 0, result.stderr);
});

test("sample writes a valid shower file", () => {
  const out = path.join(folder, "full.h5");
  const result = caloscore("sample", "--run", runDir, "--events", "10", "--out", out);
  assert.equal(result.status, 0, result.stderr);
  assert.match(result.stdout, /chunk 3\/3: 2 showers/);
  assert.ok(!fs.existsSync(`${out}.partial`), "partial file left behind");
  assert.ok(!fs.existsSync(`${out}.partial.json`), "settings file left behind");

  const written = readFile(out);
  assert.equal(written.count, 10);
  assert.equal(written.voxels, 368);
  assert.ok(written.showers.every((v) => Number.isFinite(v) && v >= 0), "showers contain negative or non-finite values");
  const stored = new Set((JSON.parse(fs.readFileSync(path.join(runDir, "energies.json"), "utf8")) as { energies: number[] }).energies.map((e) => Math.fround(e)));
  for (const energy of written.energies) assert.ok(stored.has(energy), `incident energy ${energy} MeV is not among the training energies`);
});

test("interrupted sample resumes to the same file", () => {
  const reference = path.join(folder, "reference.h5");
  const resumed = path.join(folder, "resumed.h5");
  const options = ["--run", runDir, "--events", "10", "--seed", "7"];
  assert.equal(caloscore("sample", ...options, "--out", reference).status, 0);

  // --minutes 0 stops after the first chunk, like an interruption between chunks.
  const first = caloscore("sample", ...options, "--out", resumed, "--minutes", "0");
  assert.equal(first.status, 0, first.stderr);
  assert.match(first.stdout, /stopped after 0 minutes with 4 of 10 showers/);
  assert.ok(fs.existsSync(`${resumed}.partial`), "no partial file after the stop");

  const changed = caloscore("sample", ...options, "--out", resumed, "--steps", "30");
  assert.equal(changed.status, 1);
  assert.match(changed.stderr, /started with other settings \(steps 25 -> 30\)/);

  const second = caloscore("sample", ...options, "--out", resumed);
  assert.equal(second.status, 0, second.stderr);
  assert.match(second.stdout, /resuming .* after 4 of 10 showers/);
  const a = readFile(reference);
  const b = readFile(resumed);
  assert.deepEqual(b.energies, a.energies);
  assert.deepEqual(b.showers, a.showers);
});

test("sample copies energies from a reference file", () => {
  const out = path.join(folder, "copied.h5");
  const result = caloscore("sample", "--run", runDir, "--events", "6", "--out", out, "--energies-from", dataFile, "--sampler", "ode-rk45", "--rtol", "1e-3", "--atol", "1e-3");
  assert.equal(result.status, 0, result.stderr);
  // 6 of the file's 300 showers, at rows 0, 50, ..., 250.
  const source = readFile(dataFile).energies;
  assert.deepEqual(readFile(out).energies, Float32Array.from([0, 50, 100, 150, 200, 250], (row) => source[row]));

  const tooMany = caloscore("sample", "--run", runDir, "--events", "301", "--out", out, "--energies-from", dataFile);
  assert.equal(tooMany.status, 1);
  assert.match(tooMany.stderr, /has 300 showers; --events 301 needs at least as many/);
});

test("likelihood writes per-shower values", () => {
  const out = path.join(folder, "likelihood.json");
  const result = caloscore("likelihood", "--run", runDir, "--data", dataFile, "--events", "5", "--probes", "2", "--batch", "3", "--out", out);
  assert.equal(result.status, 0, result.stderr);
  const report = JSON.parse(fs.readFileSync(out, "utf8")) as {
    events: number;
    dimensions: number;
    probes: number;
    showers: { logLikelihood: number[]; bitsPerDimension: number[]; dataLogLikelihood: number[] | null };
    summary: { logLikelihood: { mean: number } };
    note: string | null;
  };
  assert.equal(report.events, 5);
  assert.equal(report.dimensions, 384);
  assert.equal(report.probes, 2);
  assert.equal(report.showers.logLikelihood.length, 5);
  report.showers.logLikelihood.forEach((logp, i) => {
    assert.ok(Number.isFinite(logp), `shower ${i}: log-likelihood ${logp}`);
    assert.ok(Math.abs(report.showers.bitsPerDimension[i] + logp / (384 * Math.LN2)) < 1e-9, `shower ${i}: bits per dimension`);
  });
  const mean = report.showers.logLikelihood.reduce((sum, v) => sum + v, 0) / 5;
  assert.ok(Math.abs(report.summary.logLikelihood.mean - mean) < 1e-9);
  assert.equal(report.showers.dataLogLikelihood, null);
  assert.match(report.note ?? "", /flat layout is not a bijection/);

  const conflict = caloscore("likelihood", "--run", runDir, "--data", dataFile, "--out", out, "--exact", "--probes", "3");
  assert.equal(conflict.status, 1);
  assert.match(conflict.stderr, /--exact and --probes exclude each other/);
});
