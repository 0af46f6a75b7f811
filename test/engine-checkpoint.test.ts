// safetensors checkpoints: NumPy reads what the engine writes, loadStateDict names the tensor
// that does not fit, and writes replace the file atomically.
import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, test } from "node:test";
import {
  disposeAll,
  Generator,
  loadCheckpoint,
  nn,
  randn,
  saveCheckpoint,
  Tensor,
  tensor,
  tidy,
  writeFileAtomic,
  zeros,
} from "../src/torch";
import { makeTemporaryFolder, pythonSafetensors, runPython } from "./helpers/engine";

/** One tensor of every dtype that safetensors files support, plus a scalar and an empty tensor. */
function sampleTensors(): Map<string, Tensor> {
  return new Map<string, Tensor>([
    ["weights.float32", randn([3, 4], { generator: new Generator(1) })],
    ["weights.float64", randn([5], { dtype: "float64", generator: new Generator(2) }).mul(1e10)],
    ["counts.int64", tensor(new BigInt64Array([-(2n ** 40n), 0n, 7n, 2n ** 53n - 1n]), [2, 2])],
    ["counts.int32", tensor(new Int32Array([-5, 2147483647, 3]), [3])],
    ["bytes.uint8", tensor(new Uint8Array([0, 1, 255]), [3])],
    ["mask.bool", tensor(new Uint8Array([1, 0, 1, 1]), [2, 2], { dtype: "bool" })],
    ["scalar", tensor(new Float32Array([Math.PI]), [])],
    ["empty", zeros([0, 3])],
  ]);
}

class TwoLayer extends nn.Module {
  readonly first: nn.Linear;
  readonly norm: nn.BatchNorm;
  constructor() {
    super();
    this.first = this.child("first", new nn.Linear(3, 2, true, { generator: new Generator(3) }));
    this.norm = this.child("norm", new nn.BatchNorm(2));
  }
}

describe("engine checkpoints", () => {
  let folder: string;
  before(() => {
    folder = makeTemporaryFolder("checkpoint");
  });
  after(() => {
    fs.rmSync(folder, { recursive: true, force: true });
  });

  test("NumPy reads the engine's safetensors with identical values", () => {
    const tensors = sampleTensors();
    try {
      const file = path.join(folder, "numpy.safetensors");
      saveCheckpoint(file, tensors, { epoch: 3 });
      const script = [
        pythonSafetensors,
        "with open(sys.argv[1], 'rb') as f:",
        "    (length,) = struct.unpack('<Q', f.read(8))",
        "    header = json.loads(f.read(length))",
        "arrays = read_safetensors(sys.argv[1])",
        "print(json.dumps({'aligned': (8 + length) % 8 == 0, 'metadata': header.get('__metadata__', {}),",
        "    'tensors': {k: {'dtype': str(v.dtype), 'shape': list(v.shape), 'values': v.ravel().tolist()} for k, v in arrays.items()}}))",
      ].join("\n");
      const report = JSON.parse(runPython(script, [file])) as {
        aligned: boolean;
        metadata: Record<string, string>;
        tensors: Record<string, { dtype: string; shape: number[]; values: (number | boolean)[] }>;
      };

      assert.equal(report.aligned, true, "tensor data starts 8-byte aligned");
      assert.deepEqual(JSON.parse(report.metadata.sidecar), { epoch: 3 });
      const numpyDtypes: Record<string, string> = {
        float32: "float32",
        float64: "float64",
        int64: "int64",
        int32: "int32",
        uint8: "uint8",
        bool: "bool",
      };
      assert.deepEqual(Object.keys(report.tensors).sort(), [...tensors.keys()].sort());
      for (const [name, t] of tensors) {
        const entry = report.tensors[name];
        assert.equal(entry.dtype, numpyDtypes[t.dtype], `${name} dtype`);
        assert.deepEqual(entry.shape, t.shape, `${name} shape`);
        const values = t.dtype === "bool" ? Array.from(t.toFloat64(), (v) => v === 1) : Array.from(t.toFloat64());
        assert.deepEqual(entry.values, values, `${name} values`);
      }
    } finally {
      disposeAll(tensors);
    }
  });

  test("saveCheckpoint and loadCheckpoint round-trip values and sidecar", () => {
    const tensors = sampleTensors();
    const file = path.join(folder, "roundtrip.safetensors");
    saveCheckpoint(file, tensors, { step: 12, lr: 0.001 });
    const loaded = loadCheckpoint(file);
    try {
      assert.deepEqual(loaded.sidecar, { step: 12, lr: 0.001 });
      assert.deepEqual(JSON.parse(fs.readFileSync(path.join(folder, "roundtrip.json"), "utf8")), { step: 12, lr: 0.001 });
      for (const [name, t] of tensors) {
        const copy = loaded.tensors.get(name);
        assert.ok(copy !== undefined, `${name} missing after loading`);
        assert.equal(copy.dtype, t.dtype, `${name} dtype`);
        assert.deepEqual(copy.shape, t.shape, `${name} shape`);
        assert.deepEqual(copy.data(), t.data(), `${name} values`);
      }
      assert.deepEqual(
        fs.readdirSync(folder).filter((f) => f.startsWith("roundtrip")).sort(),
        ["roundtrip.json", "roundtrip.safetensors"],
        "no temporary file remains",
      );
    } finally {
      disposeAll(tensors);
      disposeAll(loaded.tensors);
    }
  });

  test("loadCheckpoint names a missing or truncated file", () => {
    assert.throws(() => loadCheckpoint(path.join(folder, "absent.safetensors")), /checkpoint .*absent\.safetensors not found/);
    const file = path.join(folder, "truncated.safetensors");
    const tensors = sampleTensors();
    try {
      saveCheckpoint(file, tensors, {});
    } finally {
      disposeAll(tensors);
    }
    const bytes = fs.readFileSync(file);
    fs.writeFileSync(file, bytes.subarray(0, bytes.length - 8));
    assert.throws(() => loadCheckpoint(file), /truncated\.safetensors is truncated: tensor '.*' ends past the end of the file/);
  });

  test("loadStateDict names the tensor that does not fit", () => {
    const model = new TwoLayer();
    const good = model.stateDict();
    const check = (edit: (state: Map<string, Tensor>) => void, pattern: RegExp): void => {
      tidy(() => {
        const state = new Map(good);
        edit(state);
        assert.throws(() => model.loadStateDict(state, "run/model.safetensors"), pattern);
      });
    };
    try {
      assert.deepEqual([...good.keys()], ["first.weight", "first.bias", "norm.weight", "norm.bias", "norm.running_mean", "norm.running_var"]);
      check((s) => s.delete("norm.running_var"), /run\/model\.safetensors is missing tensor 'norm\.running_var' \(shape \[2\]\)/);
      check((s) => s.set("extra.weight", zeros([1])), /run\/model\.safetensors has tensor 'extra\.weight', which this model does not have/);
      check(
        (s) => s.set("first.weight", zeros([3, 2])),
        /run\/model\.safetensors tensor 'first\.weight' has shape \[3, 2\]; the model expects \[2, 3\]/,
      );
      check(
        (s) => s.set("first.bias", zeros([2], { dtype: "float64" })),
        /run\/model\.safetensors tensor 'first\.bias' has dtype float64; the model expects float32/,
      );

      // A state dict that fits is copied into the parameters.
      tidy(() => {
        const state = new Map(good);
        const weight = randn([2, 3], { generator: new Generator(9) });
        state.set("first.weight", weight);
        model.loadStateDict(state);
        assert.deepEqual(Array.from(model.first.weight.toFloat32()), Array.from(weight.toFloat32()));
      });
    } finally {
      model.dispose();
    }
  });

  test("a failed write leaves the existing file and no temporary file", () => {
    const file = path.join(folder, "survivor.safetensors");
    const original = tidy(() => {
      const small = new Map([["w", zeros([4])]]);
      saveCheckpoint(file, small, { version: 1 });
      return fs.readFileSync(file);
    });

    // A file-size limit of 64 KiB makes the first write of a 400 KB checkpoint short and the
    // next one fail with EFBIG, as a full disk would.
    const source = `
      const torch = require(${JSON.stringify(require.resolve("../src/torch"))});
      const big = new Map([["w", torch.zeros([100000])]]);
      try {
        torch.saveCheckpoint(${JSON.stringify(file)}, big, { version: 2 });
        console.log("written");
      } catch (error) {
        console.log(error.code);
      }
    `;
    const child = spawnSync("bash", ["-c", 'ulimit -f 64 && exec "$0" -e "$1"', process.execPath, source], { encoding: "utf8" });
    assert.equal(child.status, 0, child.stderr);
    assert.equal(child.stdout.trim(), "EFBIG");
    assert.deepEqual(fs.readFileSync(file), original, "the existing checkpoint is unchanged");
    assert.deepEqual(
      fs.readdirSync(folder).filter((f) => f.startsWith("survivor")).sort(),
      ["survivor.json", "survivor.safetensors"],
      "no temporary file remains",
    );
  });

  test("a tensor that cannot be encoded leaves the existing file", () => {
    const file = path.join(folder, "encode.safetensors");
    writeFileAtomic(file, "previous contents");
    tidy(() => {
      const state = new Map([["half", zeros([2], { dtype: "bfloat16" })]]);
      assert.throws(() => saveCheckpoint(file, state, {}), /cannot save tensor 'half' of dtype bfloat16 to safetensors/);
    });
    assert.equal(fs.readFileSync(file, "utf8"), "previous contents");
    assert.deepEqual(fs.readdirSync(folder).filter((f) => f.startsWith("encode")), ["encode.safetensors"]);
  });

  test("writeFileAtomic replaces a file and cleans up after a failed open", () => {
    const file = path.join(folder, "atomic.txt");
    writeFileAtomic(file, "first");
    writeFileAtomic(file, new Uint8Array([115, 101, 99, 111, 110, 100]));
    assert.equal(fs.readFileSync(file, "utf8"), "second");

    // A folder in place of the temporary name makes the open fail before anything is written.
    const blocker = `${file}.tmp-${process.pid}`;
    fs.mkdirSync(blocker);
    assert.throws(() => writeFileAtomic(file, "third"), /EISDIR/);
    assert.equal(fs.readFileSync(file, "utf8"), "second");
    fs.rmdirSync(blocker);
  });
});
