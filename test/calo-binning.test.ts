import { test } from "node:test";
import * as assert from "node:assert/strict";

import { datasetFromVoxelCount, datasetNames, loadGeometry, parseDatasetName, voxelCounts } from "../src/calo/binning";
import { runPython } from "./helpers/caloPython";

// Reference: the CaloChallenge evaluation's convention rewritten with numpy (r centre = bin middle,
// alpha centres = middles of linspace(-pi, pi, n + 1), alpha bins outer and r bins inner per layer).
const referenceScript = `
import sys, json, re
import numpy as np
text = open(sys.argv[1]).read()
ids, r, a, x, y = [], [], [], [], []
for element in re.findall(r"<Layer\\b[^>]*>", text):
    edges = [float(v) for v in re.search(r'r_edges="([^"]*)"', element).group(1).split(",")]
    n_alpha = int(re.search(r'n_bin_alpha="([^"]*)"', element).group(1))
    if len(edges) < 2:
        continue
    edges = np.array(edges)
    mid_r = edges[:-1] + (edges[1:] - edges[:-1]) / 2
    alpha_edges = np.linspace(-np.pi, np.pi, n_alpha + 1)
    mid_a = alpha_edges[:-1] + (alpha_edges[1:] - alpha_edges[:-1]) / 2
    rr = np.tile(mid_r, n_alpha)
    aa = np.repeat(mid_a, len(mid_r))
    ids.append(int(re.search(r'id="([^"]*)"', element).group(1)))
    r += rr.tolist(); a += aa.tolist()
    x += (rr * np.cos(aa)).tolist(); y += (rr * np.sin(aa)).tolist()
print(json.dumps({"ids": ids, "r": r, "a": a, "x": x, "y": y}))
`;

test("geometry voxel counts match the datasets", () => {
  assert.equal(loadGeometry("1-photons").voxelCount, 368);
  assert.equal(loadGeometry("1-pions").voxelCount, 533);
  assert.equal(loadGeometry("2").voxelCount, 6480);
  assert.equal(loadGeometry("3").voxelCount, 40500);
  assert.deepEqual(loadGeometry("1-photons").layers.map((layer) => layer.id), [0, 1, 2, 3, 12]);
  assert.deepEqual(loadGeometry("1-pions").layers.map((layer) => layer.id), [0, 1, 2, 3, 12, 13, 14]);
  assert.equal(loadGeometry("2").layers.length, 45);
  assert.equal(loadGeometry("3").layers[0].alphaBins, 50);
  assert.equal(loadGeometry("3").layers[0].rEdges.length, 19);
});

test("geometry centres match the numpy reference", () => {
  for (const dataset of datasetNames) {
    const geometry = loadGeometry(dataset);
    const reference = JSON.parse(runPython(referenceScript, [geometry.file])) as Record<string, number[]>;
    assert.deepEqual(geometry.layers.map((layer) => layer.id), reference.ids, `${dataset} layer ids`);
    assert.equal(reference.r.length, geometry.voxelCount);
    for (let v = 0; v < geometry.voxelCount; v += 1) {
      assert.ok(Math.abs(geometry.rCentre[v] - reference.r[v]) < 1e-12, `${dataset} r of voxel ${v}`);
      assert.ok(Math.abs(geometry.alphaCentre[v] - reference.a[v]) < 1e-12, `${dataset} alpha of voxel ${v}`);
      assert.ok(Math.abs(geometry.x[v] - reference.x[v]) < 1e-9, `${dataset} x of voxel ${v}`);
      assert.ok(Math.abs(geometry.y[v] - reference.y[v]) < 1e-9, `${dataset} y of voxel ${v}`);
    }
  }
});

test("geometry dataset 2 voxel order", () => {
  const geometry = loadGeometry("2");
  // Voxel 9 is layer 0, alpha bin 1, r bin 0; voxel 6479 is the outermost of the last layer.
  assert.equal(geometry.layerOfVoxel[9], 0);
  assert.ok(Math.abs(geometry.rCentre[9] - 2.325) < 1e-12);
  assert.ok(Math.abs(geometry.alphaCentre[9] - (-Math.PI + 1.5 * (2 * Math.PI) / 16)) < 1e-12);
  assert.equal(geometry.layerOfVoxel[6479], 44);
  assert.ok(Math.abs(geometry.rCentre[6479] - (37.2 + 41.85) / 2) < 1e-12);
  assert.equal(geometry.layers[44].firstVoxel, 44 * 144);
});

test("dataset names from voxel counts and text", () => {
  for (const dataset of datasetNames) assert.equal(datasetFromVoxelCount(voxelCounts[dataset]), dataset);
  assert.throws(() => datasetFromVoxelCount(6400), /6400 voxels.*368 \(1-photons\), 533 \(1-pions\), 6480 \(2\), 40500 \(3\)/);
  assert.equal(parseDatasetName("1"), "1-photons");
  assert.equal(parseDatasetName("1-pions"), "1-pions");
  assert.equal(parseDatasetName("3"), "3");
  assert.throws(() => parseDatasetName("4"), /invalid dataset '4'/);
});
