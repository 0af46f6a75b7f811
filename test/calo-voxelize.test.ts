import { before, test } from "node:test";
import * as assert from "node:assert/strict";

import { loadGeometry } from "../src/calo/binning";
import { initHdf5, openShowerFile } from "../src/calo/hdf5";
import { cartesianGrid, cellShares, cylindricalShape, fromCartesian, toCartesian } from "../src/calo/voxelize";
import { writeFixture } from "./helpers/caloFixtures";
import { runPython, temporaryFolder } from "./helpers/caloPython";

const folder = temporaryFolder("caloscore-voxelize-");

before(async () => {
  await initHdf5();
});

// Cell of each voxel centre with numpy, sending centres on an edge to the cell above it.
const cellScript = `
import sys, json
import numpy as np
spec = json.loads(sys.stdin.read())
x, y, layer = np.array(spec["x"]), np.array(spec["y"]), np.array(spec["layer"])
width = 2 * spec["R"] / spec["size"]
ix = np.clip(np.floor(np.round((x + spec["R"]) / width, 9)), 0, spec["size"] - 1).astype(int)
iy = np.clip(np.floor(np.round((y + spec["R"]) / width, 9)), 0, spec["size"] - 1).astype(int)
print(json.dumps((layer * spec["size"] ** 2 + iy * spec["size"] + ix).tolist()))
`;

test("voxel cells match numpy", () => {
  for (const dataset of ["2", "3"] as const) {
    const geometry = loadGeometry(dataset);
    const grid = cartesianGrid(geometry);
    const spec = { x: Array.from(geometry.x), y: Array.from(geometry.y), layer: Array.from(geometry.layerOfVoxel), R: 41.85, size: grid.size };
    const expected = JSON.parse(runPython(cellScript, [], 60_000, JSON.stringify(spec))) as number[];
    assert.deepEqual(Array.from(grid.cellOfVoxel), expected, `dataset ${dataset}`);
  }
  // Dataset 3 voxel 220 (layer 0, alpha -pi/2, r = 10.4625 mm) sits on the edges x = 0 and
  // y = -10.4625 mm, so it belongs to column 16 and row 12.
  assert.equal(cartesianGrid(loadGeometry("3")).cellOfVoxel[220], 12 * 32 + 16);
});

test("dataset 2 grid facts", () => {
  const grid = cartesianGrid(loadGeometry("2"));
  assert.equal(grid.size, 12);
  assert.equal(grid.halfWidth, 41.85);
  assert.equal(grid.cellCount, 45 * 144);
  // The 16 voxels of the innermost ring (r = 2.325 mm) fall into the 4 central cells.
  const central = new Set([5 * 12 + 5, 5 * 12 + 6, 6 * 12 + 5, 6 * 12 + 6]);
  for (let a = 0; a < 16; a += 1) assert.ok(central.has(grid.cellOfVoxel[a * 9]), `ring 0, alpha ${a}`);
  // Corner cells contain no voxel and pass their energy to an occupied cell of the same layer.
  assert.equal(grid.voxelsInCell[0], 0);
  const receiver = grid.receivingCell[144 + 0];
  assert.ok(receiver >= 144 && receiver < 288);
  assert.ok(grid.voxelsInCell[receiver] > 0);
});

test("cartesian round trip conserves layers", () => {
  const geometry = loadGeometry("2");
  const grid = cartesianGrid(geometry);
  const n = 3;
  const showers = new Float32Array(n * 6480);
  for (let i = 0; i < showers.length; i += 1) showers[i] = ((i * 7919) % 101) / 10;
  const cartesian = toCartesian(grid, showers, n);

  // Energy put into empty corner cells must also arrive in the layer.
  cartesian[0] += 5;
  cartesian[6480 + 143] += 2.5;
  const prior = Float64Array.from({ length: 6480 }, (_, v) => (v % 9) + 1);
  for (const shares of [cellShares(grid), cellShares(grid, prior)]) {
    const back = fromCartesian(grid, cartesian, n, shares);
    for (let i = 0; i < n; i += 1) {
      for (let l = 0; l < 45; l += 1) {
        let before = 0;
        let after = 0;
        for (let k = 0; k < 144; k += 1) before += cartesian[i * 6480 + l * 144 + k];
        for (let v = 0; v < 144; v += 1) after += back[i * 6480 + l * 144 + v];
        assert.ok(Math.abs(after - before) <= 1e-5 * before, `shower ${i} layer ${l}: ${after} != ${before}`);
      }
    }
  }
});

test("prior shares split a cell", () => {
  const geometry = loadGeometry("2");
  const grid = cartesianGrid(geometry);
  const prior = new Float64Array(6480);
  const cell = grid.cellOfVoxel[0];
  const members = [];
  for (let v = 0; v < 144; v += 1) if (grid.cellOfVoxel[v] === cell) members.push(v);
  assert.ok(members.length > 1);
  prior[members[0]] = 3;
  prior[members[1]] = 1;
  const shares = cellShares(grid, prior);
  assert.equal(shares[members[0]], 0.75);
  assert.equal(shares[members[1]], 0.25);
  // A cell whose prior is all zero splits equally.
  const other = grid.cellOfVoxel[144];
  const count = grid.voxelsInCell[other];
  assert.equal(shares[144], 1 / count);
});

test("cartesian round trip error on realistic showers", () => {
  const file = writeFixture(folder, "voxelize.h5", { dataset: "2", count: 200, seed: 11 });
  const shower = openShowerFile(file);
  const showers = shower.readShowers(0, 200);
  const energies = shower.readEnergies();
  shower.close();
  const grid = cartesianGrid(loadGeometry("2"));
  const prior = new Float64Array(6480);
  for (let i = 0; i < 100; i += 1) for (let v = 0; v < 6480; v += 1) prior[v] += showers[i * 6480 + v] / energies[i] / 100;

  const test = showers.subarray(100 * 6480);
  const cartesian = toCartesian(grid, test, 100);
  const results: string[] = [];
  for (const [name, shares] of [["equal", cellShares(grid)], ["prior", cellShares(grid, prior)]] as const) {
    const back = fromCartesian(grid, cartesian, 100, shares);
    let error = 0;
    let total = 0;
    for (let i = 0; i < test.length; i += 1) {
      error += Math.abs(back[i] - test[i]);
      total += test[i];
    }
    results.push(`${name} shares ${(error / total).toFixed(4)}`);
    assert.ok(error / total < 0.5, `${name}: relative L1 error ${error / total}`);
  }
  console.log(`# dataset 2 cartesian round trip, relative L1 voxel error: ${results.join(", ")}`);
});

test("cylindrical layout shapes", () => {
  assert.deepEqual(cylindricalShape(loadGeometry("2")), [45, 16, 9]);
  assert.deepEqual(cylindricalShape(loadGeometry("3")), [45, 50, 18]);
  assert.throws(() => cylindricalShape(loadGeometry("1-photons")), /same counts in every layer/);
  assert.throws(() => cartesianGrid(loadGeometry("1-photons")), /no Cartesian grid for dataset 1-photons/);
});
