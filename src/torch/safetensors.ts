// Checkpoints as safetensors files (readable by Python's safetensors and by NumPy) with a JSON
// sidecar. Format: 8-byte little-endian header length, a JSON header mapping each name to
// {dtype, shape, data_offsets}, then the raw little-endian tensor bytes.
import * as fs from "node:fs";
import { DType, Tensor, tensor } from "./tensor";

const dtypeCodes: Record<string, string> = {
  float32: "F32",
  float64: "F64",
  int64: "I64",
  int32: "I32",
  uint8: "U8",
  bool: "BOOL",
};
const codeDtypes: Record<string, DType> = Object.fromEntries(Object.entries(dtypeCodes).map(([k, v]) => [v, k as DType]));

/**
 * Writes `path` atomically: to a temporary name in the same folder, then renamed. On failure the
 * temporary file is removed and an existing file at `path` is left unchanged.
 */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  const temporary = `${path}.tmp-${process.pid}`;
  const bytes = typeof data === "string" ? Buffer.from(data, "utf8") : data;
  const fd = fs.openSync(temporary, "w");
  try {
    try {
      // writeSync may write fewer bytes than requested (a full disk, a file-size limit), and the
      // next call then raises the error.
      let written = 0;
      while (written < bytes.byteLength) written += fs.writeSync(fd, bytes, written);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(temporary, path);
  } catch (error) {
    fs.rmSync(temporary, { force: true });
    throw error;
  }
}

/** Serialises named tensors to safetensors bytes; `metadata` goes under "__metadata__" as strings. */
export function encodeSafetensors(tensors: Map<string, Tensor>, metadata: Record<string, string> = {}): Uint8Array {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of [...tensors].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const code = dtypeCodes[t.dtype];
    if (code === undefined) throw new Error(`cannot save tensor '${name}' of dtype ${t.dtype} to safetensors`);
    const data = t.data();
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    header[name] = { dtype: code, shape: t.shape, data_offsets: [offset, offset + bytes.byteLength] };
    chunks.push(bytes);
    offset += bytes.byteLength;
  }
  let json = JSON.stringify(header);
  // Pad the header with spaces so the data starts 8-byte aligned, as the reference writer does.
  const padding = (8 - ((8 + Buffer.byteLength(json)) % 8)) % 8;
  json += " ".repeat(padding);
  const headerBytes = Buffer.from(json, "utf8");
  const out = new Uint8Array(8 + headerBytes.byteLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.byteLength), true);
  out.set(headerBytes, 8);
  let position = 8 + headerBytes.byteLength;
  for (const c of chunks) {
    out.set(c, position);
    position += c.byteLength;
  }
  return out;
}

export interface SafetensorsContent {
  tensors: Map<string, Tensor>;
  metadata: Record<string, string>;
}

/** Parses safetensors bytes; `source` names the file in error messages. */
export function decodeSafetensors(bytes: Uint8Array, source: string): SafetensorsContent {
  if (bytes.byteLength < 8) throw new Error(`${source} is not a safetensors file: ${bytes.byteLength} bytes, expected at least 8`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = Number(view.getBigUint64(0, true));
  if (headerLength > bytes.byteLength - 8) {
    throw new Error(`${source} is truncated or not a safetensors file: header of ${headerLength} bytes, file has ${bytes.byteLength}`);
  }
  let header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] } | Record<string, string>>;
  try {
    header = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset + 8, headerLength).toString("utf8"));
  } catch (error) {
    throw new Error(`${source} has an invalid safetensors header: ${(error as Error).message}`);
  }
  const dataStart = 8 + headerLength;
  const tensors = new Map<string, Tensor>();
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(header)) {
    if (name === "__metadata__") {
      metadata = entry as Record<string, string>;
      continue;
    }
    const { dtype: code, shape, data_offsets: [begin, end] } = entry as { dtype: string; shape: number[]; data_offsets: [number, number] };
    const dtype = codeDtypes[code];
    if (dtype === undefined) throw new Error(`${source} tensor '${name}' has unsupported dtype ${code}`);
    if (dataStart + end > bytes.byteLength) throw new Error(`${source} is truncated: tensor '${name}' ends past the end of the file`);
    // Copy so the typed array is aligned and owns its buffer (a Buffer from readFileSync may be a pooled view).
    const slice = Uint8Array.prototype.slice.call(bytes, dataStart + begin, dataStart + end);
    const array = typedArrayFor(dtype, slice.buffer);
    tensors.set(name, tensor(array, shape, { dtype }));
  }
  return { tensors, metadata };
}

function typedArrayFor(dtype: DType, buffer: ArrayBuffer): Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array {
  switch (dtype) {
    case "float32":
      return new Float32Array(buffer);
    case "float64":
      return new Float64Array(buffer);
    case "int64":
      return new BigInt64Array(buffer);
    case "int32":
      return new Int32Array(buffer);
    default:
      return new Uint8Array(buffer);
  }
}

/** Saves tensors to `path` (safetensors) and `sidecar` to `path` with .json in place of .safetensors. */
// The sidecar is also embedded in the safetensors metadata (key "sidecar"), so that the tensors
// and the state that goes with them are replaced by one atomic rename; the .json file is a
// readable copy for people and tools.
export function saveCheckpoint(path: string, tensors: Map<string, Tensor>, sidecar: unknown): void {
  const json = JSON.stringify(sidecar, null, 2) + "\n";
  writeFileAtomic(path, encodeSafetensors(tensors, { sidecar: json }));
  writeFileAtomic(sidecarPath(path), json);
}

/** Loads a checkpoint written by saveCheckpoint; the sidecar comes from the tensor file's metadata. */
export function loadCheckpoint(path: string): { tensors: Map<string, Tensor>; sidecar: unknown } {
  if (!fs.existsSync(path)) throw new Error(`checkpoint ${path} not found`);
  const content = decodeSafetensors(fs.readFileSync(path), path);
  let sidecar: unknown = {};
  if (content.metadata.sidecar !== undefined) {
    sidecar = JSON.parse(content.metadata.sidecar);
  } else if (fs.existsSync(sidecarPath(path))) {
    sidecar = JSON.parse(fs.readFileSync(sidecarPath(path), "utf8"));
  }
  return { tensors: content.tensors, sidecar };
}

export function sidecarPath(path: string): string {
  return path.replace(/\.safetensors$/, "") + ".json";
}
