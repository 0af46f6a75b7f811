import { before, test } from "node:test";
import * as assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

import { blockRows, createShowerFile, initHdf5, openShowerFile, readArray, writeArrays } from "../src/calo/hdf5";
import { FixtureDefect, writeFixture } from "./helpers/caloFixtures";
import { runPython, temporaryFolder } from "./helpers/caloPython";

const folder = temporaryFolder("caloscore-hdf5-");

before(async () => {
  await initHdf5();
});

function readRaw(file: string): Float32Array {
  const bytes = fs.readFileSync(file);
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}

/** Asserts bitwise equality, reporting the first differing index. */
function assertSameFloats(actual: Float32Array, expected: Float32Array, label: string): void {
  assert.equal(actual.length, expected.length, `${label} length`);
  const a = new Uint32Array(actual.buffer, actual.byteOffset, actual.length);
  const b = new Uint32Array(expected.buffer, expected.byteOffset, expected.length);
  for (let i = 0; i < a.length; i += 1) {
    if (a[i] !== b[i]) assert.fail(`${label} differs at ${i}: ${actual[i]} != ${expected[i]}`);
  }
}

test("h5py dataset 2 file reads identically", () => {
  const file = writeFixture(folder, "ds2.h5", { dataset: "2", count: 300 }, true);
  const showers = readRaw(`${file}.showers.bin`);
  const energies = readRaw(`${file}.energies.bin`);
  const nonzero = showers.reduce((count, value) => count + (value > 0 ? 1 : 0), 0) / showers.length;
  assert.ok(nonzero > 0.05, `fixture occupancy ${nonzero} is above 5%`);
  assert.ok(nonzero < 0.9, `fixture occupancy ${nonzero} is below 90%`);

  const shower = openShowerFile(file, { validate: true });
  assert.equal(shower.count, 300);
  assert.equal(shower.voxels, 6480);
  assert.equal(shower.dataset, "2");
  assertSameFloats(shower.readEnergies(), energies, "energies");
  assertSameFloats(shower.readShowers(0, 300), showers, "showers");
  assertSameFloats(shower.readShowers(17, 123), showers.subarray(17 * 6480, 123 * 6480), "showers 17..123");
  assertSameFloats(shower.readEnergies(5, 9), energies.subarray(5, 9), "energies 5..9");
  assert.equal(shower.readShowers(4, 4).length, 0);
  assert.throws(() => shower.readShowers(0, 301), /invalid row range \[0, 301\); the file has 300 showers/);
  shower.close();
  assert.throws(() => shower.readEnergies(), /is closed/);
});

test("h5py dataset 1 file reads across blocks", () => {
  // 5000 rows exceed the 4096-row read block, so readShowers assembles two blocks.
  const file = writeFixture(folder, "ds1.h5", { dataset: "1-photons", count: 5000, gzip: false }, true);
  const shower = openShowerFile(file, { dataset: "1-photons", validate: true });
  assert.equal(shower.dataset, "1-photons");
  assert.equal(shower.voxels, 368);
  assertSameFloats(shower.readShowers(0, 5000), readRaw(`${file}.showers.bin`), "showers");
  assertSameFloats(shower.readEnergies(), readRaw(`${file}.energies.bin`), "energies");
  shower.close();
});

const checkWrittenScript = `
import sys, json
import numpy as np
import h5py
with h5py.File(sys.argv[1], "r") as f:
    result = {}
    for name in ("incident_energies", "showers"):
        d = f[name]
        result[name] = {"dtype": d.dtype.str, "shape": list(d.shape), "maxshape": list(d.maxshape),
                        "chunks": list(d.chunks) if d.chunks else None, "compression": d.compression,
                        "level": d.compression_opts, "shuffle": d.shuffle}
        d[...].astype("<f4").tofile(sys.argv[1] + "." + name + ".bin")
print(json.dumps(result))
`;

test("written file matches h5py layout and values", () => {
  const target = path.join(folder, "written.h5");
  const voxels = 6480;
  const writer = createShowerFile(target, voxels, { chunkRows: 16 });
  const energies = Float32Array.from({ length: 50 }, (_, i) => 1000 * 1.13 ** i);
  const showers = new Float32Array(50 * voxels);
  for (let i = 0; i < showers.length; i += 1) showers[i] = i % 7 === 0 ? (i % 1013) * 0.37 + 0.015 : 0;
  writer.append(energies.subarray(0, 20), showers.subarray(0, 20 * voxels));
  writer.append(energies.subarray(20, 50), showers.subarray(20 * voxels));
  assert.equal(writer.count, 50);
  assert.ok(!fs.existsSync(target), "the final path stays empty until finish()");
  writer.finish();
  assert.ok(fs.existsSync(target));
  assert.ok(!fs.existsSync(`${target}.partial`));

  const layout = JSON.parse(runPython(checkWrittenScript, [target])) as Record<string, Record<string, unknown>>;
  assert.deepEqual(layout.showers, {
    dtype: "<f4",
    shape: [50, voxels],
    maxshape: [null, voxels],
    chunks: [16, voxels],
    compression: "gzip",
    level: 4,
    shuffle: false,
  });
  assert.equal(layout.incident_energies.dtype, "<f4");
  assert.deepEqual(layout.incident_energies.shape, [50, 1]);
  assert.deepEqual(layout.incident_energies.maxshape, [null, 1]);
  assert.equal(layout.incident_energies.compression, "gzip");
  assertSameFloats(readRaw(`${target}.showers.bin`), showers, "showers read by h5py");
  assertSameFloats(readRaw(`${target}.incident_energies.bin`), energies, "energies read by h5py");
  const reopened = openShowerFile(target);
  assert.equal(reopened.chunkRows, 16);
  reopened.close();

  const fast = path.join(folder, "written-level1.h5");
  const fastWriter = createShowerFile(fast, voxels, { gzipLevel: 1 });
  fastWriter.append(energies, showers);
  fastWriter.finish();
  const fastLayout = JSON.parse(runPython(checkWrittenScript, [fast])) as Record<string, Record<string, unknown>>;
  assert.equal(fastLayout.showers.level, 1);
  assert.deepEqual(fastLayout.showers.chunks, [40, voxels], "default chunks hold about 1 MiB");
  assertSameFloats(readRaw(`${fast}.showers.bin`), showers, "level 1 showers read by h5py");
  assert.throws(() => createShowerFile(fast, voxels, { gzipLevel: 10 }), /gzipLevel must be an integer from 0 to 9, found 10/);
});

test("writer resumes a partial file", () => {
  const target = path.join(folder, "resumed.h5");
  const voxels = 368;
  const hdf5Module = path.resolve(__dirname, "../src/calo/hdf5.js");
  // A child process appends 30 showers and exits without finish(), like an interrupted run.
  const child = `
    const h = require(${JSON.stringify(hdf5Module)});
    h.initHdf5().then(() => {
      const w = h.createShowerFile(${JSON.stringify(target)}, ${voxels});
      for (let b = 0; b < 3; b += 1) {
        const e = new Float32Array(10).map((_, i) => 1000 + 10 * b + i);
        const s = new Float32Array(10 * ${voxels}).map((_, i) => (b * 10 * ${voxels} + i) * 0.001);
        w.append(e, s);
      }
      process.exit(0);
    });`;
  execFileSync(process.execPath, ["-e", child]);
  assert.ok(fs.existsSync(`${target}.partial`));

  const writer = createShowerFile(target, voxels, { resume: true });
  assert.equal(writer.count, 30);
  const energies = Float32Array.from({ length: 5 }, (_, i) => 1030 + i);
  const showers = Float32Array.from({ length: 5 * voxels }, (_, i) => (30 * voxels + i) * 0.001);
  writer.append(energies, showers);
  assert.equal(writer.count, 35);
  writer.finish();

  const file = openShowerFile(target);
  assert.equal(file.count, 35);
  const expected = Float32Array.from({ length: 35 * voxels }, (_, i) => i * 0.001);
  assertSameFloats(file.readShowers(0, 35), expected, "resumed showers");
  assertSameFloats(file.readEnergies(), Float32Array.from({ length: 35 }, (_, i) => 1000 + i), "resumed energies");
  file.close();
});

test("writer without resume starts over", () => {
  const target = path.join(folder, "restart.h5");
  const first = createShowerFile(target, 368);
  first.append(new Float32Array([1000]), new Float32Array(368));
  first.abort();
  assert.ok(!fs.existsSync(`${target}.partial`));
  const second = createShowerFile(target, 368);
  assert.equal(second.count, 0);
  assert.throws(() => second.append(new Float32Array(2), new Float32Array(368)), /expects 2 x 368 = 736 shower values/);
  second.abort();
});

const defectCases: [FixtureDefect, RegExp][] = [
  ["missing-showers", /has no dataset 'showers'; expected incident_energies and showers, found incident_energies/],
  ["missing-energies", /has no dataset 'incident_energies'/],
  ["integer-showers", /showers in .*bad-integer-showers\.h5 has dtype integer32; expected float32/],
  ["showers-rank-3", /showers in .* has shape \(40, 45, 144\); expected rank 2/],
  ["energies-rank-3", /incident_energies in .* has shape \(40, 1, 1\); expected \(N, 1\)/],
  ["fewer-energies", /has 39 incident_energies but 40 showers; expected equal counts/],
  ["wrong-voxels", /showers in .*bad-wrong-voxels\.h5 has 6400 voxels per shower; binning_dataset_2\.xml expects 6480/],
  ["nan-energy", /incident_energies in .* is NaN at shower 2; expected finite values/],
  ["negative-energy", /incident_energies in .* is negative \(-1000 MeV\) at shower 1; expected positive energies/],
  ["energy-below-range", /incident_energies in .* is 500 MeV at shower 3; dataset 2 expects 1000 to 1000000 MeV/],
  ["energy-above-range", /incident_energies in .* is 2000000 MeV at shower 0; dataset 2 expects 1000 to 1000000 MeV/],
  ["nan-shower", /showers in .* is NaN at shower 20, voxel 7; expected finite values/],
  ["inf-shower", /showers in .* is Inf at shower 39, voxel 3; expected finite values/],
  ["negative-shower", /showers in .* is -2\.5 at shower 1, voxel 5; expected energies >= 0 MeV/],
];

test("validation names file, field and finding", () => {
  for (const [defect, message] of defectCases) {
    const file = writeFixture(folder, `bad-${defect}.h5`, { dataset: "2", count: 40, defect });
    assert.throws(() => openShowerFile(file, { dataset: "2", validate: true }), message, defect);
  }
});

test("shower values are only scanned with validate", () => {
  const file = path.join(folder, "bad-nan-shower.h5");
  const shower = openShowerFile(file);
  assert.equal(shower.count, 40);
  shower.close();
});

test("voxel count without dataset names the options", () => {
  const file = path.join(folder, "bad-wrong-voxels.h5");
  assert.throws(() => openShowerFile(file), /showers in .*: no CaloChallenge dataset has 6400 voxels per shower; expected one of 368/);
});

test("dataset 1 energy range and dataset mismatch", () => {
  const file = writeFixture(folder, "ds1-range.h5", { dataset: "1-photons", count: 30, defect: "energy-above-range" });
  assert.throws(() => openShowerFile(file), /is 8388608 MeV at shower 0; dataset 1-photons expects 256 to 4194304 MeV/);
  const good = path.join(folder, "ds1.h5");
  assert.throws(() => openShowerFile(good, { dataset: "1-pions" }), /has 368 voxels per shower; binning_dataset_1_pions\.xml expects 533/);
});

test("non-HDF5, missing and truncated files", () => {
  const text = path.join(folder, "notes.h5");
  fs.writeFileSync(text, "not an HDF5 file, just text\n".repeat(100));
  assert.throws(() => openShowerFile(text), /notes\.h5: not an HDF5 file \(no HDF5 signature found in its 2800 bytes\)/);
  assert.throws(() => openShowerFile(path.join(folder, "absent.h5")), /absent\.h5: file not found/);

  const source = path.join(folder, "ds2.h5");
  const truncated = path.join(folder, "truncated.h5");
  fs.copyFileSync(source, truncated);
  fs.truncateSync(truncated, Math.floor(fs.statSync(source).size / 2));
  assert.throws(() => openShowerFile(truncated), /truncated\.h5: failed to open the HDF5 file: .*truncated/);
});

test("named arrays round trip through h5py", () => {
  const target = path.join(folder, "arrays.h5");
  const matrix = Float64Array.from({ length: 12 }, (_, i) => (i === 5 ? Number.NaN : i * 0.25 - 1));
  writeArrays(target, { E_tot: { data: Float64Array.from([1.5, 2.5, 3.5]), shape: [3] }, E_layer: { data: matrix, shape: [3, 4] } });
  const script = `
import sys, json, h5py, numpy as np
with h5py.File(sys.argv[1], "r") as f:
    m = f["E_layer"][...]
    print(json.dumps({"shape": list(m.shape), "dtype": f["E_layer"].dtype.str, "nan": bool(np.isnan(m[1, 1])),
                      "sum": float(np.nansum(m)), "tot": f["E_tot"][...].tolist()}))
`;
  const result = JSON.parse(runPython(script, [target])) as { shape: number[]; dtype: string; nan: boolean; sum: number; tot: number[] };
  assert.deepEqual(result.shape, [3, 4]);
  assert.equal(result.dtype, "<f8");
  assert.equal(result.nan, true);
  assert.equal(result.sum, 16.5 - 12 - 0.25);
  assert.deepEqual(result.tot, [1.5, 2.5, 3.5]);
  const back = readArray(target, "E_layer");
  assert.deepEqual(back.shape, [3, 4]);
  assert.ok(Number.isNaN(back.data[5]));
  assert.equal(back.data[11], 1.75);
});

test("read blocks align to chunks", () => {
  assert.equal(blockRows({ voxels: 6480, chunkRows: 157 }), 7 * 157);
  assert.equal(blockRows({ voxels: 6480, chunkRows: 0 }), 1024);
  assert.equal(blockRows({ voxels: 40500, chunkRows: 6 }), 171 * 6);
  assert.equal(blockRows({ voxels: 368, chunkRows: 1000 }), 1000);
  // A chunk taller than the 256 MiB read limit cannot be aligned to; the limit wins.
  assert.equal(blockRows({ voxels: 40500, chunkRows: 5000 }, 5000), Math.floor(256 * 2 ** 20 / (4 * 40500)));
});
