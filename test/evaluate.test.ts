import { before, test } from "node:test";
import * as assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

import { loadGeometry } from "../src/calo/binning";
import { createShowerFile, initHdf5 } from "../src/calo/hdf5";
import { evaluate, Metrics } from "../src/evaluate/evaluate";
import { prepareRun, simulateBatch } from "../src/simulate/batch";
import { liveTensors } from "../src/torch";
import { temporaryFolder } from "./helpers/caloPython";

// Dataset 1 photons (5 layers, 368 voxels): simulated showers split into even and odd rows, so
// both halves share the incident-energy spectrum. The odd half is written twice: unchanged, and
// with the energy of one layer scaled by 1.1.
const showers = 6000;
const scaledLayer = 2;
const folder = temporaryFolder("caloscore-evaluate-");
const files = {
  reference: path.join(folder, "reference.h5"),
  same: path.join(folder, "same.h5"),
  scaled: path.join(folder, "scaled.h5"),
};
const reportDir = path.join(folder, "report");
let metrics: Metrics;
let liveBefore = 0;

before(async () => {
  await initHdf5();
  const geometry = loadGeometry("1-photons");
  const batch = simulateBatch(prepareRun({ dataset: "1-photons", events: showers, seed: 11 }), 0, showers);
  const voxels = geometry.voxelCount;
  const half = showers / 2;
  const pick = (parity: number, scale: number) => {
    const energies = new Float32Array(half);
    const rows = new Float32Array(half * voxels);
    const layer = geometry.layers[scaledLayer];
    for (let i = 0; i < half; i++) {
      const source = 2 * i + parity;
      energies[i] = batch.energies[source];
      rows.set(batch.showers.subarray(source * voxels, (source + 1) * voxels), i * voxels);
      for (let v = layer.firstVoxel; v < layer.firstVoxel + layer.voxelCount; v++) rows[i * voxels + v] *= scale;
    }
    return { energies, rows };
  };
  for (const [file, parity, scale] of [
    [files.reference, 0, 1],
    [files.same, 1, 1],
    [files.scaled, 1, 1.1],
  ] as const) {
    const { energies, rows } = pick(parity, scale);
    const writer = createShowerFile(file, voxels);
    writer.append(energies, rows);
    writer.finish();
  }

  liveBefore = liveTensors();
  const started = Date.now();
  metrics = await evaluate({
    dataset: "1-photons",
    reference: files.reference,
    generated: [
      { label: "same", path: files.same },
      { label: "scaled", path: files.scaled },
    ],
    outDir: reportDir,
    classifier: true,
    classifierOptions: { maxEpochs: 12, patience: 3, learningRate: 1e-3 },
    fpdOptions: { batches: 5 },
    kpdOptions: { batchSize: 1500 },
    log: (line) => console.log(`${((Date.now() - started) / 1000).toFixed(1)} s: ${line}`),
  });
});

/** Standard deviation of the test AUC of an uninformative classifier. */
function nullAucStd(testSize: number): number {
  const perClass = testSize / 2;
  return Math.sqrt((2 * perClass + 1) / (12 * perClass * perClass));
}

test("evaluate frees its tensors", () => {
  assert.equal(liveTensors(), liveBefore);
});

test("metrics.json follows the schema", () => {
  const written = JSON.parse(fs.readFileSync(path.join(reportDir, "metrics.json"), "utf8")) as Metrics;
  assert.equal(written.schema, "caloscore-evaluate/1");
  assert.equal(written.dataset, "1-photons");
  assert.deepEqual(written.layer_ids, [0, 1, 2, 3, 12]);
  assert.equal(written.reference.showers, showers / 2);
  assert.deepEqual(Object.keys(written.models), ["same", "scaled"]);
  const model = written.models.same;
  for (const key of ["E_tot", "hits", "max_voxel_over_E_tot", "profile_layer", "profile_r", "profile_x", "profile_y"]) {
    assert.equal(typeof model.emd[key], "number", `emd.${key}`);
  }
  for (const key of ["max_voxel_over_E_layer", "width_eta", "width_phi"]) assert.equal((model.emd[key] as number[]).length, 5, `emd.${key}`);
  assert.equal(typeof model.separation_power.E_tot_over_E_inc, "number");
  for (const key of ["E_layer", "EC_eta", "EC_phi", "width_eta", "width_phi", "sparsity"]) {
    assert.equal((model.separation_power[key] as number[]).length, 5, `separation_power.${key}`);
  }
  for (const key of ["auc_low_level", "jsd_low_level", "auc_high_level", "jsd_high_level", "fpd", "fpd_error", "kpd", "kpd_error"] as const) {
    assert.equal(typeof model[key], "number", key);
  }
});

test("halves of one sample look alike", () => {
  const same = metrics.models.same;
  const lowStd = nullAucStd(same.classifier_low_level!.testSize);
  const highStd = nullAucStd(same.classifier_high_level!.testSize);
  assert.ok(Math.abs(same.auc_low_level! - 0.5) < 3.5 * lowStd, `low-level AUC ${same.auc_low_level}`);
  assert.ok(Math.abs(same.auc_high_level! - 0.5) < 3.5 * highStd, `high-level AUC ${same.auc_high_level}`);
  // EMDs far below the spread of the quantity: E_tot spans 256 MeV .. 4 TeV here.
  assert.ok((same.emd.E_tot as number) < 0.02 * 1e6, `EMD E_tot ${same.emd.E_tot} MeV`);
  assert.ok((same.emd.profile_layer as number) < 0.01, `EMD of the layer profile ${same.emd.profile_layer} layers`);
  assert.ok((same.emd.max_voxel_over_E_tot as number) < 0.01, `EMD max voxel / E_tot ${same.emd.max_voxel_over_E_tot}`);
  assert.ok((same.separation_power.E_tot_over_E_inc as number) < 0.02, `separation power ${same.separation_power.E_tot_over_E_inc}`);
});

test("scaled layer is found", () => {
  const same = metrics.models.same;
  const scaled = metrics.models.scaled;
  const highStd = nullAucStd(scaled.classifier_high_level!.testSize);
  assert.ok(scaled.auc_high_level! > same.auc_high_level! + 4 * highStd, `high-level AUC ${scaled.auc_high_level} vs ${same.auc_high_level}`);
  assert.ok(scaled.auc_low_level! > same.auc_low_level! + 3 * highStd, `low-level AUC ${scaled.auc_low_level} vs ${same.auc_low_level}`);
  const powers = scaled.separation_power.E_layer as number[];
  const largest = powers.indexOf(Math.max(...powers));
  assert.equal(largest, scaledLayer, `E_layer separation powers by layer: ${powers.map((p) => p.toFixed(4)).join(", ")}`);
  assert.ok(scaled.fpd > same.fpd, `FPD ${scaled.fpd} vs ${same.fpd}`);
  assert.ok(scaled.kpd > same.kpd, `KPD ${scaled.kpd} vs ${same.kpd}`);
  // The unchanged layers are identical in both generated files.
  for (let layer = 0; layer < powers.length; layer++) {
    if (layer === scaledLayer) continue;
    assert.equal(powers[layer], (same.separation_power.E_layer as number[])[layer], `layer ${layer}`);
  }
});

test("every plot has an SVG and a PNG", () => {
  const plots = fs.readdirSync(path.join(reportDir, "plots"));
  const svgs = plots.filter((f) => f.endsWith(".svg"));
  assert.ok(svgs.length >= 30, `${svgs.length} SVG plots`);
  for (const svg of svgs) {
    const stem = svg.slice(0, -4);
    assert.ok(fs.readFileSync(path.join(reportDir, "plots", svg), "utf8").startsWith("<svg"), `${svg} is not an SVG document`);
    const png = fs.readFileSync(path.join(reportDir, "plots", `${stem}.png`));
    assert.deepEqual([...png.subarray(1, 4)], [0x50, 0x4e, 0x47], `${stem}.png is not a PNG`);
  }
  const html = fs.readFileSync(path.join(reportDir, "index.html"), "utf8");
  assert.doesNotMatch(html, /(src|href)="(https?:)?\/\//, "index.html refers to another host");
  for (const svg of svgs) assert.ok(html.includes(`src="plots/${svg}"`), `index.html does not show ${svg}`);
});

test("index.html renders every plot in Chromium", () => {
  const userData = fs.mkdtempSync(path.join(folder, "chromium-"));
  const dom = execFileSync(
    "chromium",
    [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      `--user-data-dir=${userData}`,
      "--virtual-time-budget=10000",
      "--dump-dom",
      `file://${path.join(reportDir, "index.html")}`,
    ],
    { encoding: "utf8", timeout: 120_000, stdio: ["ignore", "pipe", "ignore"] },
  );
  const svgs = fs.readdirSync(path.join(reportDir, "plots")).filter((f) => f.endsWith(".svg")).length;
  const match = /data-plots-loaded="(\d+)\/(\d+)"/.exec(dom);
  assert.ok(match !== null, "the page's load check did not run");
  assert.equal(Number(match[2]), svgs);
  assert.equal(Number(match[1]), svgs, `only ${match[1]} of ${svgs} plots decoded`);
});

test("evaluate command rejects unpaired labels", async () => {
  const command = await import("../src/cli/commands/evaluate");
  const args = ["--dataset", "1-photons", "--reference", files.reference, "--generated", files.same, "--generated", files.scaled, "--label", "only-one", "--out", path.join(folder, "unused")];
  await assert.rejects(command.run(args), /found 1 --label for 2 --generated/);
  await assert.rejects(command.run(["--dataset", "1-photons", "--reference", files.reference, "--out", reportDir]), /missing required option --generated/);
  assert.equal(fs.existsSync(path.join(folder, "unused")), false);
});

test("evaluate rejects mismatched voxel counts", async () => {
  await assert.rejects(
    evaluate({ dataset: "2", reference: files.reference, generated: [{ label: "same", path: files.same }], outDir: path.join(folder, "unused"), classifier: false }),
    /reference file: .*reference\.h5/,
  );
});
