// Shared checks for the tensor-engine tests: finite-difference gradients, closeness of arrays,
// temporary folders, child processes, and a bridge that runs a PyTorch script on engine tensors
// through safetensors files.
import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { decodeSafetensors, encodeSafetensors, Generator, grad, noGrad, randn, Tensor, tensor, tidy } from "../../src/torch";

/** Debian's Python, the only one with torch and numpy installed. */
export const systemPython = "/usr/bin/python3";

export interface Tolerance {
  atol?: number;
  rtol?: number;
}

/** Asserts |actual - expected| <= atol + rtol * |expected| elementwise; the message names the first bad element. */
export function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, label: string, tolerance: Tolerance = {}): void {
  const atol = tolerance.atol ?? 1e-6;
  const rtol = tolerance.rtol ?? 1e-5;
  assert.equal(actual.length, expected.length, `${label}: ${actual.length} elements, expected ${expected.length}`);
  let worst = -1;
  let worstExcess = 0;
  for (let i = 0; i < actual.length; i++) {
    const excess = Math.abs(actual[i] - expected[i]) - (atol + rtol * Math.abs(expected[i]));
    if (!(excess <= 0) && (worst < 0 || excess > worstExcess || Number.isNaN(excess))) {
      worst = i;
      worstExcess = excess;
    }
  }
  if (worst >= 0) {
    assert.fail(
      `${label}: element ${worst} is ${actual[worst]}, expected ${expected[worst]} ` +
        `(atol ${atol}, rtol ${rtol}; ${countBad(actual, expected, atol, rtol)} of ${actual.length} elements outside)`,
    );
  }
}

function countBad(actual: ArrayLike<number>, expected: ArrayLike<number>, atol: number, rtol: number): number {
  let bad = 0;
  for (let i = 0; i < actual.length; i++) {
    if (!(Math.abs(actual[i] - expected[i]) <= atol + rtol * Math.abs(expected[i]))) bad++;
  }
  return bad;
}

export interface GradCheckOptions extends Tolerance {
  /** Finite-difference step. */
  eps?: number;
}

/**
 * Checks the autograd gradients of fn against central finite differences in float64. The scalar
 * differentiated is sum(w * fn(...inputs)) with fixed random weights w, so every output element
 * contributes with a different weight. Inputs must be float64; fn must be deterministic.
 */
export function checkGradients(label: string, fn: (...inputs: Tensor[]) => Tensor, inputs: Tensor[], options: GradCheckOptions = {}): void {
  const eps = options.eps ?? 1e-6;
  const tolerance = { atol: options.atol ?? 1e-7, rtol: options.rtol ?? 1e-5 };
  for (const [i, x] of inputs.entries()) {
    assert.equal(x.dtype, "float64", `${label}: input ${i} must be float64 for a gradient check, found ${x.dtype}`);
  }

  tidy(() => {
    const leaves = inputs.map((x) => x.detach().clone().requiresGrad_(true));
    const output = fn(...leaves);
    const weights = randn(output.shape, { dtype: "float64", generator: new Generator(20261204) });
    const analytic = grad(output.mul(weights).sum(), leaves, { allowUnused: true });

    const weightedSum = (perturbed: Tensor[]): number => noGrad(() => tidy(() => fn(...perturbed).mul(weights).sum().item()));

    inputs.forEach((input, i) => {
      const base = input.toFloat64();
      const numeric = new Float64Array(base.length);
      for (let j = 0; j < base.length; j++) {
        numeric[j] = tidy(() => {
          const shifted = (delta: number): Tensor[] => {
            const values = Float64Array.from(base);
            values[j] += delta;
            return inputs.map((x, k) => (k === i ? tensor(values, x.shape, { dtype: "float64" }) : x));
          };
          return (weightedSum(shifted(eps)) - weightedSum(shifted(-eps))) / (2 * eps);
        });
      }
      const gradient = analytic[i];
      const values = gradient === null ? new Float64Array(base.length) : gradient.toFloat64();
      assertClose(values, numeric, `${label}: gradient of input ${i}`, tolerance);
    });
  });
}

/** Float64 tensor of standard normal values from a seeded generator. */
export function randomInput(shape: number[], seed: number): Tensor {
  return randn(shape, { dtype: "float64", generator: new Generator(seed) });
}

/** Creates a folder under the system's temporary folder; remove it with fs.rmSync(dir, {recursive: true}). */
export function makeTemporaryFolder(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `caloscore-${prefix}-`));
}

export interface ProcessResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a Node.js script in a child process with extra environment variables and Node.js flags. */
export function runNode(source: string, env: Record<string, string> = {}, timeoutMs = 60_000, flags: string[] = []): ProcessResult {
  const result = spawnSync(process.execPath, [...flags, "-e", source], {
    env: { ...process.env, ...env },
    encoding: "utf8",
    timeout: timeoutMs,
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** Runs a Python script with Debian's Python and returns its stdout; a non-zero exit fails the test. */
export function runPython(script: string, args: string[] = [], timeoutMs = 120_000): string {
  const result = spawnSync(systemPython, ["-c", script, ...args], { encoding: "utf8", timeout: timeoutMs });
  if (result.error !== undefined) throw new Error(`${systemPython} failed to start: ${result.error.message}`);
  if (result.status !== 0) {
    throw new Error(`${systemPython} exited with status ${result.status}:\n${result.stderr}`);
  }
  return result.stdout;
}

/** Python source that reads and writes safetensors files with NumPy only (no safetensors package). */
export const pythonSafetensors = String.raw`
import json, os, struct, sys
import numpy as np

SAFETENSORS_DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32, "U8": np.uint8, "BOOL": np.bool_}

def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + length])
    start = 8 + length
    arrays = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        dtype = SAFETENSORS_DTYPES[entry["dtype"]]
        arrays[name] = np.frombuffer(raw[start + begin:start + end], dtype=dtype).reshape(entry["shape"])
    return arrays

def write_safetensors(path, arrays):
    codes = {np.dtype(v): k for k, v in SAFETENSORS_DTYPES.items()}
    header, chunks, offset = {}, [], 0
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        data = array.tobytes()
        header[name] = {"dtype": codes[array.dtype], "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))
    os.replace(path + ".tmp", path)
`;

/**
 * Runs `body` in Debian's Python with torch imported, `inputs` bound to a dict of NumPy arrays
 * (the given tensors) and `outputs` bound to an empty dict that the body fills. Returns the
 * outputs as engine tensors in the current tidy scope.
 */
export function runTorch(body: string, inputs: Map<string, Tensor>): Map<string, Tensor> {
  const folder = makeTemporaryFolder("torch");
  try {
    const inputPath = path.join(folder, "inputs.safetensors");
    const outputPath = path.join(folder, "outputs.safetensors");
    fs.writeFileSync(inputPath, encodeSafetensors(inputs));
    const script = [
      pythonSafetensors,
      "import torch",
      "torch.set_num_threads(1)",
      "inputs = read_safetensors(sys.argv[1])",
      "outputs = {}",
      body,
      "write_safetensors(sys.argv[2], {k: (v.detach().numpy() if torch.is_tensor(v) else np.asarray(v)) for k, v in outputs.items()})",
    ].join("\n");
    runPython(script, [inputPath, outputPath]);
    return decodeSafetensors(fs.readFileSync(outputPath), outputPath).tensors;
  } finally {
    fs.rmSync(folder, { recursive: true, force: true });
  }
}
