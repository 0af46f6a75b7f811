import { before, test } from "node:test";
import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

import { loadGeometry } from "../src/calo/binning";
import { computeFeatures, evaluationCut, hitThreshold } from "../src/calo/features";
import { initHdf5, openShowerFile, readArray } from "../src/calo/hdf5";
import { writeFixture } from "./helpers/caloFixtures";
import { runPython, temporaryFolder } from "./helpers/caloPython";

const folder = temporaryFolder("caloscore-cli-");
const cli = path.resolve(__dirname, "../../bin/caloscore.js");

before(async () => {
  await initHdf5();
});

function caloscore(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [cli, ...args], { encoding: "utf8", timeout: 120_000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

test("info describes a valid file", () => {
  const file = writeFixture(folder, "info.h5", { dataset: "2", count: 50, seed: 5 });
  const result = caloscore("info", file);
  assert.equal(result.status, 0, result.stderr);
  assert.match(result.stdout, /dataset\s+2 \(recognised from the voxel count; binning_dataset_2\.xml, 45 layers, 6480 voxels\)/);
  assert.match(result.stdout, /showers\s+50\n/);
  assert.match(result.stdout, /memory\s+1\.3 MB to load all showers as float32/);
  assert.match(result.stdout, /validation\s+passed/);
});

test("info reports an invalid file", () => {
  const file = writeFixture(folder, "info-nan.h5", { dataset: "2", count: 30, defect: "nan-shower" });
  const result = caloscore("info", file, "--dataset", "2");
  assert.equal(result.status, 1);
  assert.match(result.stdout, /validation\s+FAILED: showers in .*info-nan\.h5 is NaN at shower 15, voxel 7/);
  const quick = caloscore("info", file, "--quick");
  assert.equal(quick.status, 0);
  assert.match(quick.stdout, /shower values not read/);
  const wrong = caloscore("info", file, "--dataset", "3");
  assert.equal(wrong.status, 1);
  assert.match(wrong.stdout, /has 6480 voxels per shower; binning_dataset_3\.xml expects 40500/);
});

test("features command writes the contract datasets", () => {
  const file = writeFixture(folder, "features.h5", { dataset: "1-photons", count: 80, seed: 9 });
  const out = path.join(folder, "out", "features.h5");
  const result = caloscore("features", file, "--dataset", "1", "--out", out);
  assert.equal(result.status, 0, result.stderr);
  assert.ok(!fs.existsSync(`${out}.partial`));

  const script = `
import sys, json, h5py
with h5py.File(sys.argv[1], "r") as f:
    print(json.dumps({k: [list(f[k].shape), f[k].dtype.str] for k in f}))
`;
  const layout = JSON.parse(runPython(script, [out])) as Record<string, [number[], string]>;
  for (const name of ["E_inc", "E_tot"]) assert.deepEqual(layout[name], [[80], "<f8"], name);
  for (const name of ["E_layer", "EC_eta", "EC_phi", "width_eta", "width_phi", "sparsity"]) {
    assert.deepEqual(layout[name], [[80, 5], "<f8"], name);
  }

  const shower = openShowerFile(file);
  const geometry = loadGeometry("1-photons");
  const options = { threshold: hitThreshold("1-photons"), cut: evaluationCut("1-photons") };
  const expected = computeFeatures(geometry, shower.readEnergies(), shower.readShowers(0, 80), options);
  shower.close();
  const ecEta = readArray(out, "EC_eta").data;
  for (let i = 0; i < ecEta.length; i += 1) {
    if (Number.isNaN(expected.ecEta[i])) assert.ok(Number.isNaN(ecEta[i]), `EC_eta[${i}] is NaN`);
    else assert.equal(ecEta[i], expected.ecEta[i], `EC_eta[${i}]`);
  }
  assert.deepEqual(Array.from(readArray(out, "E_tot").data), Array.from(expected.eTot));
});
