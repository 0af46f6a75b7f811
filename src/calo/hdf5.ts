// CaloChallenge shower files: HDF5 with float32 `incident_energies` (N, 1) and `showers`
// (N, voxels), both in MeV, gzip-compressed as h5py writes them. Files are read and written with
// h5wasm's Node build, which accesses the host file system directly, so a file is read in row
// blocks and never loaded whole.
import * as fs from "node:fs";
// The module object itself (not TypeScript's read-only namespace copy), so writeSync can be swapped.
import fsModule = require("node:fs");
import * as path from "node:path";
import type * as H5 from "h5wasm";

import { DatasetName, binningFile, datasetFromVoxelCount, voxelCounts } from "./binning";

type H5Module = typeof H5;

let h5: H5Module | null = null;

// TypeScript compiles `import()` to `require()` under CommonJS, and h5wasm ships only an ES module,
// so the import expression is built at run time.
const importModule = new Function("specifier", "return import(specifier)") as (specifier: string) => Promise<unknown>;

/** Loads the HDF5 WebAssembly module; call once (it is idempotent) before any other function here. */
export async function initHdf5(): Promise<void> {
  if (h5 !== null) return;
  const loaded = (await importModule("h5wasm/node")) as H5Module;
  await loaded.ready;
  h5 = loaded;
}

function hdf5(): H5Module {
  if (h5 === null) throw new Error("HDF5 is not initialised: await initHdf5() before opening or creating shower files");
  return h5;
}

/**
 * Runs an h5wasm call and turns an HDF5 failure into an error that names the file and HDF5's own
 * reason. The HDF5 library prints its error stack to file descriptor 2, and h5wasm throws a
 * message without the cause, so the stack is captured from fs.writeSync and its last "minor:"
 * lines become the reason.
 */
function withHdf5Errors<T>(file: string, action: string, call: () => T): T {
  const originalWriteSync = fsModule.writeSync;
  let captured = "";
  const capture = function (this: unknown, fd: number, buffer: unknown, ...rest: unknown[]): number {
    if (fd !== 2) return (originalWriteSync as (...args: unknown[]) => number).call(fsModule, fd, buffer, ...rest);
    if (typeof buffer === "string") {
      captured += buffer;
      return Buffer.byteLength(buffer);
    }
    const view = buffer as Uint8Array;
    const offset = typeof rest[0] === "number" ? rest[0] : 0;
    const length = typeof rest[1] === "number" ? rest[1] : view.byteLength - offset;
    if (captured.length < 1 << 20) captured += Buffer.from(view.buffer, view.byteOffset + offset, length).toString("utf8");
    return length;
  };

  (fsModule as { writeSync: unknown }).writeSync = capture;
  try {
    return call();
  } catch (error) {
    const reasons = captured
      .split("\n")
      .filter((line) => line.includes("minor:") || line.includes("truncated"))
      .map((line) => line.replace(/^.*(minor:|in \w+\(\):)\s*/, "").trim())
      .filter((line, index, all) => line !== "" && all.indexOf(line) === index);
    const reason = reasons.length > 0 ? reasons.slice(-3).join("; ") : (error as Error).message;
    throw new Error(`${file}: failed to ${action}: ${reason}`);
  } finally {
    fsModule.writeSync = originalWriteSync;
  }
}

/**
 * Opens an HDF5 file. h5wasm 0.10.3 does not throw when H5Fopen fails but returns a File whose id
 * is negative, so the id is checked here while the HDF5 error stack is still captured.
 */
function openHdf5(file: string, mode: "r" | "a" | "w", action: string): H5.File {
  const module = hdf5();
  return withHdf5Errors(file, action, () => {
    const opened = new module.File(path.resolve(file), mode);
    if (opened.file_id < 0n) throw new Error("H5Fopen failed");
    return opened;
  });
}

const hdf5Signature = Buffer.from([0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]);

/** Checks for the HDF5 signature, which sits at offset 0, 512, 1024, 2048, ... of a file. */
function assertHdf5File(file: string): void {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(file);
  } catch {
    throw new Error(`${file}: file not found`);
  }
  if (!stat.isFile()) throw new Error(`${file}: not a regular file`);

  const descriptor = fs.openSync(file, "r");
  try {
    const header = Buffer.alloc(hdf5Signature.length);
    for (let offset = 0; offset + header.length <= stat.size; offset = offset === 0 ? 512 : offset * 2) {
      fs.readSync(descriptor, header, 0, header.length, offset);
      if (header.equals(hdf5Signature)) return;
    }
  } finally {
    fs.closeSync(descriptor);
  }
  throw new Error(`${file}: not an HDF5 file (no HDF5 signature found in its ${stat.size} bytes)`);
}

/** Incident energy range of each dataset in MeV, as the CaloChallenge datasets were generated. */
export const incidentEnergyRange: Record<DatasetName, { min: number; max: number }> = {
  "1-photons": { min: 256, max: 4_194_304 },
  "1-pions": { min: 256, max: 4_194_304 },
  "2": { min: 1_000, max: 1_000_000 },
  "3": { min: 1_000, max: 1_000_000 },
};

/** Relative tolerance on the incident energy range, wide enough for float32 rounding of the bounds. */
const energyRangeTolerance = 1e-3;

/** Maximum bytes decoded in one h5wasm call, well below the 2 GiB heap of h5wasm 0.10.3's build. */
const maxBytesPerRead = 256 * 1024 * 1024;

/** An open shower file; close() releases it. */
export interface ShowerFile {
  path: string;
  count: number;
  voxels: number;
  dataset: DatasetName;
  /** Rows per HDF5 chunk of `showers`, or 0 when the dataset is not chunked. */
  chunkRows: number;
  close(): void;
  /** Incident energies of showers [start, end) in MeV, shape [end - start]. */
  readEnergies(start?: number, end?: number): Float32Array;
  /** Showers [start, end) in MeV, shape [end - start, voxels], row-major in the file's voxel order. */
  readShowers(start: number, end: number): Float32Array;
}

export interface OpenOptions {
  /** Expected dataset; without it the dataset is recognised from the voxel count (368 means 1-photons). */
  dataset?: DatasetName;
  /**
   * Scans every shower for NaN, infinities and negative values (chunk by chunk). The structure,
   * shapes, dtypes and incident energies are always checked. Default false.
   */
  validate?: boolean;
}

function describeDtype(metadata: H5.Metadata): string {
  const kinds = ["integer", "float", "time", "string", "bitfield", "opaque", "compound", "reference", "enum", "vlen", "array"];
  const kind = kinds[metadata.type] ?? `HDF5 class ${metadata.type}`;
  return `${kind}${metadata.size * 8}`;
}

function isFloat(metadata: H5.Metadata): boolean {
  return metadata.type === 1 && (metadata.size === 4 || metadata.size === 8);
}

function toFloat32(data: unknown): Float32Array {
  if (data instanceof Float32Array) return data;
  if (data instanceof Float64Array) return Float32Array.from(data);
  throw new Error(`expected floating-point data from HDF5, found ${Object.prototype.toString.call(data)}`);
}

/** Returns the first non-finite or negative value in `values`, with its index, or null. */
function findInvalidValue(values: Float32Array): { index: number; value: number } | null {
  for (let i = 0; i < values.length; i += 1) {
    const value = values[i];
    // `!(value >= 0)` is true for negatives and NaN, and Infinity is caught by the second test.
    if (!(value >= 0) || value === Infinity) return { index: i, value };
  }
  return null;
}

function describeValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (!Number.isFinite(value)) return value > 0 ? "Inf" : "-Inf";
  return String(value);
}

class Hdf5ShowerFile implements ShowerFile {
  readonly path: string;
  readonly count: number;
  readonly voxels: number;
  readonly dataset: DatasetName;
  readonly chunkRows: number;
  private readonly file: H5.File;
  private readonly energies: H5.Dataset;
  private readonly showers: H5.Dataset;
  private readonly name: string;
  private closed = false;

  constructor(filePath: string, options: OpenOptions) {
    this.path = filePath;
    this.name = filePath;
    assertHdf5File(filePath);
    this.file = openHdf5(filePath, "r", "open the HDF5 file");

    try {
      this.energies = this.requireDataset("incident_energies");
      this.showers = this.requireDataset("showers");
      const energyShape = this.checkFloat("incident_energies", this.energies);
      const showerShape = this.checkFloat("showers", this.showers);

      const energyShapeValid = energyShape.length === 1 || (energyShape.length === 2 && energyShape[1] === 1);
      if (!energyShapeValid) {
        throw new Error(`incident_energies in ${this.name} has shape (${energyShape.join(", ")}); expected (N, 1)`);
      }
      if (showerShape.length !== 2) {
        throw new Error(`showers in ${this.name} has shape (${showerShape.join(", ")}); expected rank 2 (N, voxels)`);
      }
      this.count = showerShape[0];
      this.voxels = showerShape[1];
      this.chunkRows = this.showers.metadata.chunks?.[0] ?? 0;
      if (energyShape[0] !== this.count) {
        throw new Error(`${this.name} has ${energyShape[0]} incident_energies but ${this.count} showers; expected equal counts`);
      }

      this.dataset = this.recogniseDataset(options.dataset);
      this.checkEnergies();
      if (options.validate === true) this.checkShowers();
    } catch (error) {
      this.close();
      throw error;
    }
  }

  private requireDataset(name: string): H5.Dataset {
    const keys = this.file.keys();
    if (!keys.includes(name)) {
      throw new Error(`${this.name} has no dataset '${name}'; expected incident_energies and showers, found ${keys.join(", ") || "none"}`);
    }
    const entity = this.file.get(name);
    if (entity === null || !(entity instanceof hdf5().Dataset)) {
      throw new Error(`'${name}' in ${this.name} is not a dataset; expected a float32 array`);
    }
    return entity;
  }

  private checkFloat(name: string, dataset: H5.Dataset): number[] {
    const metadata = dataset.metadata;
    if (!isFloat(metadata)) {
      throw new Error(`${name} in ${this.name} has dtype ${describeDtype(metadata)}; expected float32 (float64 is also read)`);
    }
    const shape = metadata.shape;
    if (shape === null) throw new Error(`${name} in ${this.name} has no shape (null dataspace); expected an array`);
    return shape;
  }

  private recogniseDataset(expected: DatasetName | undefined): DatasetName {
    if (expected === undefined) {
      try {
        return datasetFromVoxelCount(this.voxels);
      } catch (error) {
        throw new Error(`showers in ${this.name}: ${(error as Error).message}`);
      }
    }
    if (this.voxels !== voxelCounts[expected]) {
      const binning = path.basename(binningFile(expected));
      throw new Error(`showers in ${this.name} has ${this.voxels} voxels per shower; ${binning} expects ${voxelCounts[expected]}`);
    }
    return expected;
  }

  private checkEnergies(): void {
    const energies = this.readEnergies();
    const range = incidentEnergyRange[this.dataset];
    const low = range.min * (1 - energyRangeTolerance);
    const high = range.max * (1 + energyRangeTolerance);
    for (let i = 0; i < energies.length; i += 1) {
      const value = energies[i];
      if (!Number.isFinite(value)) {
        throw new Error(`incident_energies in ${this.name} is ${describeValue(value)} at shower ${i}; expected finite values`);
      }
      if (value < 0) {
        throw new Error(`incident_energies in ${this.name} is negative (${value} MeV) at shower ${i}; expected positive energies`);
      }
      if (value < low || value > high) {
        throw new Error(
          `incident_energies in ${this.name} is ${value} MeV at shower ${i}; dataset ${this.dataset} expects ` +
            `${range.min} to ${range.max} MeV`,
        );
      }
    }
  }

  private checkShowers(): void {
    const rows = blockRows(this);
    for (let start = 0; start < this.count; start += rows) {
      const end = Math.min(start + rows, this.count);
      const block = this.readShowers(start, end);
      const invalid = findInvalidValue(block);
      if (invalid === null) continue;

      const shower = start + Math.floor(invalid.index / this.voxels);
      const voxel = invalid.index % this.voxels;
      const expectation = Number.isNaN(invalid.value) || !Number.isFinite(invalid.value) ? "finite values" : "energies >= 0 MeV";
      throw new Error(
        `showers in ${this.name} is ${describeValue(invalid.value)} at shower ${shower}, voxel ${voxel}; expected ${expectation}`,
      );
    }
  }

  private checkRange(start: number, end: number, field: string): void {
    if (this.closed) throw new Error(`${this.name} is closed; cannot read ${field}`);
    if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end > this.count || start > end) {
      throw new Error(`${field} in ${this.name}: invalid row range [${start}, ${end}); the file has ${this.count} showers`);
    }
  }

  readEnergies(start = 0, end = this.count): Float32Array {
    this.checkRange(start, end, "incident_energies");
    if (start === end) return new Float32Array(0);
    const rank = this.energies.shape?.length ?? 1;
    const ranges: [number, number][] = rank === 1 ? [[start, end]] : [[start, end], [0, 1]];
    return toFloat32(withHdf5Errors(this.path, "read incident_energies", () => this.energies.slice(ranges)));
  }

  readShowers(start: number, end: number): Float32Array {
    this.checkRange(start, end, "showers");
    const rows = blockRows(this, rowsPerRead(this.voxels));
    if (end - start <= rows) return this.readShowerBlock(start, end);

    // Large requests are assembled from blocks so no single h5wasm call exceeds its heap.
    const result = new Float32Array((end - start) * this.voxels);
    for (let first = start; first < end; first += rows) {
      const last = Math.min(first + rows, end);
      result.set(this.readShowerBlock(first, last), (first - start) * this.voxels);
    }
    return result;
  }

  private readShowerBlock(start: number, end: number): Float32Array {
    if (start === end) return new Float32Array(0);
    return toFloat32(withHdf5Errors(this.path, "read showers", () => this.showers.slice([[start, end], []])));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.file.close();
  }
}

/** Rows per h5wasm read: at most 256 MiB of float32 data and at most 4096 rows. */
export function rowsPerRead(voxels: number): number {
  return Math.max(1, Math.min(4096, Math.floor(maxBytesPerRead / (4 * Math.max(1, voxels)))));
}

/**
 * Returns a block height for reading `file` row block by row block: about `targetRows` rows, at
 * most rowsPerRead, and a multiple of the HDF5 chunk height where possible. Aligned blocks decode
 * each chunk once; unaligned ones decode the chunks they cut twice, as the chunk cache is small.
 */
export function blockRows(file: Pick<ShowerFile, "voxels" | "chunkRows">, targetRows = 1024): number {
  const limit = rowsPerRead(file.voxels);
  const target = Math.max(1, Math.min(targetRows, limit));
  if (file.chunkRows <= 0 || file.chunkRows > limit) return target;
  const chunks = Math.max(1, Math.round(target / file.chunkRows));
  return Math.min(chunks, Math.floor(limit / file.chunkRows)) * file.chunkRows;
}

/** Opens a CaloChallenge shower file and checks its structure (and, with `validate`, every value). */
export function openShowerFile(filePath: string, options: OpenOptions = {}): ShowerFile {
  return new Hdf5ShowerFile(filePath, options);
}

/** Yields consecutive row blocks [start, end) of at most `rows` showers each. */
export function* showerBlocks(file: ShowerFile, rows: number): Generator<{ start: number; end: number }> {
  const step = Math.max(1, Math.floor(rows));
  for (let start = 0; start < file.count; start += step) yield { start, end: Math.min(start + step, file.count) };
}

/** Appends showers to `path + ".partial"`; finish() renames it to `path`. */
export interface ShowerWriter {
  /** Showers in the file so far, including those found when resuming. */
  readonly count: number;
  /** Appends energies [n] and showers [n, voxels] in MeV. */
  append(energies: Float32Array, showers: Float32Array): void;
  /** Closes the file and renames it to its final path. */
  finish(): void;
  /** Closes and deletes the partial file. */
  abort(): void;
}

export interface CreateOptions {
  /** Rows per HDF5 chunk of `showers`; default about 1 MiB of data per chunk. */
  chunkRows?: number;
  /** Reopens an existing `.partial` file and appends after its showers instead of starting over. */
  resume?: boolean;
  /** gzip level 0..9; default 4, the level of h5py's compression="gzip". Level 1 writes faster. */
  gzipLevel?: number;
}

/** gzip level 4, the level h5py uses for compression="gzip" without compression_opts. */
const gzipLevel = 4;

function defaultChunkRows(voxels: number): number {
  return Math.max(1, Math.min(1024, Math.round((1024 * 1024) / (4 * voxels))));
}

class Hdf5ShowerWriter implements ShowerWriter {
  private readonly partialPath: string;
  private readonly name: string;
  private file: H5.File | null;
  private energies: H5.Dataset;
  private showers: H5.Dataset;
  private rows: number;

  constructor(
    private readonly finalPath: string,
    private readonly voxels: number,
    options: CreateOptions,
  ) {
    if (!Number.isInteger(voxels) || voxels < 1) throw new Error(`${finalPath}: voxels per shower must be a positive integer, found ${voxels}`);
    this.partialPath = `${finalPath}.partial`;
    this.name = this.partialPath;
    const absolute = path.resolve(this.partialPath);

    if (options.resume === true && fs.existsSync(this.partialPath)) {
      assertHdf5File(this.partialPath);
      this.file = openHdf5(this.partialPath, "a", "reopen the partial file");
      ({ energies: this.energies, showers: this.showers, rows: this.rows } = this.reopenDatasets());
      return;
    }

    const chunkRows = options.chunkRows ?? defaultChunkRows(voxels);
    const level = options.gzipLevel ?? gzipLevel;
    if (!Number.isInteger(level) || level < 0 || level > 9) throw new Error(`${finalPath}: gzipLevel must be an integer from 0 to 9, found ${level}`);
    if (!Number.isInteger(chunkRows) || chunkRows < 1) throw new Error(`${finalPath}: chunkRows must be a positive integer, found ${chunkRows}`);
    fs.mkdirSync(path.dirname(absolute), { recursive: true });
    this.file = openHdf5(this.partialPath, "w", "create the file");
    const file = this.file;
    this.energies = withHdf5Errors(this.partialPath, "create incident_energies", () =>
      file.create_dataset({
        name: "incident_energies",
        data: new Float32Array(0),
        shape: [0, 1],
        dtype: "<f",
        maxshape: [null, 1],
        chunks: [Math.max(chunkRows, 1024), 1],
        compression: "gzip",
        compression_opts: level,
      }),
    );
    this.showers = withHdf5Errors(this.partialPath, "create showers", () =>
      file.create_dataset({
        name: "showers",
        data: new Float32Array(0),
        shape: [0, voxels],
        dtype: "<f",
        maxshape: [null, voxels],
        chunks: [chunkRows, voxels],
        compression: "gzip",
        compression_opts: level,
      }),
    );
    this.rows = 0;
    file.flush();
  }

  /**
   * Finds both datasets in a partial file. A run stopped between the two resizes of an append can
   * leave one dataset longer than the other, so both are cut back to the shorter length.
   */
  private reopenDatasets(): { energies: H5.Dataset; showers: H5.Dataset; rows: number } {
    const file = this.file as H5.File;
    const energies = file.get("incident_energies");
    const showers = file.get("showers");
    if (!(energies instanceof hdf5().Dataset) || !(showers instanceof hdf5().Dataset)) {
      throw new Error(`${this.name}: cannot resume because incident_energies or showers is missing; delete the file to start over`);
    }
    const energyShape = energies.shape ?? [];
    const showerShape = showers.shape ?? [];
    if (showerShape.length !== 2 || showerShape[1] !== this.voxels) {
      throw new Error(`showers in ${this.name} has shape (${showerShape.join(", ")}); cannot resume with ${this.voxels} voxels per shower`);
    }
    const rows = Math.min(energyShape[0] ?? 0, showerShape[0]);
    if (energyShape[0] !== rows) energies.resize([rows, 1]);
    if (showerShape[0] !== rows) showers.resize([rows, this.voxels]);
    return { energies, showers, rows };
  }

  get count(): number {
    return this.rows;
  }

  append(energies: Float32Array, showers: Float32Array): void {
    const file = this.file;
    if (file === null) throw new Error(`${this.name}: cannot append after finish() or abort()`);
    const n = energies.length;
    if (showers.length !== n * this.voxels) {
      throw new Error(`${this.name}: append expects ${n} x ${this.voxels} = ${n * this.voxels} shower values for ${n} energies, found ${showers.length}`);
    }
    if (n === 0) return;

    const start = this.rows;
    const end = start + n;
    withHdf5Errors(this.partialPath, "append showers", () => {
      this.showers.resize([end, this.voxels]);
      this.showers.write_slice([[start, end], []], showers);
      this.energies.resize([end, 1]);
      this.energies.write_slice([[start, end], []], energies);
      // Flushing after every append keeps the partial file readable if the process stops.
      file.flush();
    });
    this.rows = end;
  }

  finish(): void {
    if (this.file === null) throw new Error(`${this.name}: finish() called twice or after abort()`);
    this.file.close();
    this.file = null;
    fs.renameSync(this.partialPath, this.finalPath);
  }

  abort(): void {
    if (this.file !== null) {
      this.file.close();
      this.file = null;
    }
    fs.rmSync(this.partialPath, { force: true });
  }
}

/**
 * Creates a shower file for appending. Data goes to `path + ".partial"` and finish() renames it,
 * so `path` never contains a partial file.
 */
export function createShowerFile(filePath: string, voxels: number, options: CreateOptions = {}): ShowerWriter {
  return new Hdf5ShowerWriter(filePath, voxels, options);
}

/** One named array for writeArrays: float32 or float64 data with its shape. */
export interface NamedArray {
  data: Float32Array | Float64Array;
  shape: number[];
}

/**
 * Writes named arrays (gzip-compressed, chunked) to a new HDF5 file. The file is written as
 * `path + ".partial"` and then renamed, so `path` never contains a partial file.
 */
export function writeArrays(filePath: string, arrays: Record<string, NamedArray>): void {
  const partialPath = `${filePath}.partial`;
  fs.mkdirSync(path.dirname(path.resolve(filePath)), { recursive: true });
  const file = openHdf5(partialPath, "w", "create the file");
  try {
    for (const [name, array] of Object.entries(arrays)) {
      const size = array.shape.reduce((product, extent) => product * extent, 1);
      if (size !== array.data.length) {
        throw new Error(`${name} for ${filePath}: shape (${array.shape.join(", ")}) needs ${size} values, found ${array.data.length}`);
      }
      const rowValues = array.shape.slice(1).reduce((product, extent) => product * extent, 1);
      const chunkRows = Math.max(1, Math.min(array.shape[0] || 1, Math.floor(65536 / Math.max(1, rowValues))));
      withHdf5Errors(partialPath, `write ${name}`, () =>
        file.create_dataset({
          name,
          data: array.data,
          shape: array.shape,
          dtype: array.data instanceof Float64Array ? "<d" : "<f",
          chunks: size === 0 ? null : [chunkRows, ...array.shape.slice(1)],
          compression: size === 0 ? undefined : "gzip",
          compression_opts: size === 0 ? undefined : gzipLevel,
        }),
      );
    }
    file.close();
  } catch (error) {
    file.close();
    fs.rmSync(partialPath, { force: true });
    throw error;
  }
  fs.renameSync(partialPath, filePath);
}

/** Reads one whole floating-point dataset as float64, with its shape. */
export function readArray(filePath: string, name: string): { data: Float64Array; shape: number[] } {
  assertHdf5File(filePath);
  const module = hdf5();
  const file = openHdf5(filePath, "r", "open the HDF5 file");
  try {
    const entity = file.get(name);
    if (!(entity instanceof module.Dataset)) throw new Error(`${path.basename(filePath)} has no dataset '${name}'`);
    if (!isFloat(entity.metadata)) {
      throw new Error(`${name} in ${path.basename(filePath)} has dtype ${describeDtype(entity.metadata)}; expected float32 or float64`);
    }
    const shape = entity.shape ?? [];
    const values = withHdf5Errors(filePath, `read ${name}`, () => entity.value);
    const data = values instanceof Float64Array ? values : Float64Array.from(values as Float32Array);
    return { data, shape };
  } finally {
    file.close();
  }
}
