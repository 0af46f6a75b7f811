// libtorch exceptions become JavaScript Errors that carry libtorch's message, the op's name and
// the shapes and dtypes of the tensor arguments. The process survives every one of them.
import * as assert from "node:assert/strict";
import { describe, test } from "node:test";
import { cat, cudaAvailable, DType, Device, F, liveTensors, ones, randn, Tensor, tensor, tidy, zeros } from "../src/torch";
import { runNode, runPython } from "./helpers/engine";

/** Runs fn and returns the Error it throws; fails the test when it returns normally. */
function errorOf(fn: () => unknown): Error {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof Error, `expected an Error, got ${String(error)}`);
    return error;
  }
  assert.fail("expected an error, but the call returned");
}

/**
 * Invalid calls with the same arguments in the engine and in PyTorch. The engine's message must
 * be `${op}(${shapes}): ` followed by PyTorch's message for the same failure.
 */
const libtorchCases: { name: string; op: string; shapes: string; run: () => unknown; python: string }[] = [
  {
    name: "matmul of incompatible shapes",
    op: "matmul",
    shapes: "[2, 3] float32, [4, 5] float32",
    run: () => randn([2, 3]).matmul(randn([4, 5])),
    python: "torch.randn(2, 3) @ torch.randn(4, 5)",
  },
  {
    name: "conv with the wrong channel count",
    op: "conv",
    shapes: "[1, 2, 5, 5, 5] float32, [3, 4, 3, 3, 3] float32",
    run: () => F.conv(randn([1, 2, 5, 5, 5]), randn([3, 4, 3, 3, 3]), null),
    python: "torch.nn.functional.conv3d(torch.randn(1, 2, 5, 5, 5), torch.randn(3, 4, 3, 3, 3))",
  },
  {
    name: "conv kernel larger than the input",
    op: "conv",
    shapes: "[1, 1, 2] float32, [1, 1, 5] float32",
    run: () => F.conv(randn([1, 1, 2]), randn([1, 1, 5]), null),
    python: "torch.nn.functional.conv1d(torch.randn(1, 1, 2), torch.randn(1, 1, 5))",
  },
  {
    name: "cat of mismatched sizes",
    op: "cat",
    shapes: "[2, 3] float32, [2, 4] float32",
    run: () => cat([randn([2, 3]), randn([2, 4])], 0),
    python: "torch.cat([torch.randn(2, 3), torch.randn(2, 4)], 0)",
  },
  {
    name: "add without a broadcast shape",
    op: "add",
    shapes: "[2, 3] float32, [4] float32",
    run: () => randn([2, 3]).add(randn([4])),
    python: "torch.randn(2, 3) + torch.randn(4)",
  },
  {
    name: "reshape to a different element count",
    op: "reshape",
    shapes: "[2, 3] float32",
    run: () => randn([2, 3]).reshape([4]),
    python: "torch.randn(2, 3).reshape(4)",
  },
  {
    name: "matmul of float32 and float64",
    op: "matmul",
    shapes: "[2, 3] float32, [3, 2] float64",
    run: () => randn([2, 3]).matmul(randn([3, 2], { dtype: "float64" })),
    python: "torch.randn(2, 3) @ torch.randn(3, 2, dtype=torch.float64)",
  },
  {
    name: "conv of float64 input and float32 weight",
    op: "conv",
    shapes: "[1, 1, 4] float64, [1, 1, 3] float32",
    run: () => F.conv(randn([1, 1, 4], { dtype: "float64" }), randn([1, 1, 3]), null),
    python: "torch.nn.functional.conv1d(torch.randn(1, 1, 4, dtype=torch.float64), torch.randn(1, 1, 3))",
  },
  {
    name: "index select with a float index",
    op: "indexSelect",
    shapes: "[3] float32, [1] float32",
    run: () => randn([3]).indexSelect(0, tensor(new Float32Array([0]))),
    python: "torch.randn(3).index_select(0, torch.tensor([0.0]))",
  },
  {
    name: "in-place add of a larger tensor",
    op: "add",
    shapes: "[3] float32, [2, 3] float32",
    run: () => zeros([3]).add_(ones([2, 3])),
    python: "torch.zeros(3).add_(torch.ones(2, 3))",
  },
];

describe("engine errors", () => {
  test("libtorch errors carry the op, the shapes and libtorch's message", () => {
    const script = [
      "import json, torch",
      "messages = []",
      ...libtorchCases.flatMap((c) => ["try:", `    ${c.python}`, "    messages.append(None)", "except RuntimeError as e:", "    messages.append(str(e))"]),
      "print(json.dumps(messages))",
    ].join("\n");
    const torchMessages = JSON.parse(runPython(script)) as (string | null)[];

    libtorchCases.forEach((c, i) => {
      const torchMessage = torchMessages[i];
      assert.ok(torchMessage !== null, `PyTorch accepted the call of case '${c.name}'`);
      const error = tidy(() => errorOf(c.run));
      assert.equal(error.message, `${c.op}(${c.shapes}): ${torchMessage}`, c.name);
    });
  });

  test("unknown dtype", () => {
    const error = errorOf(() => zeros([2], { dtype: "complex64" as DType }));
    assert.match(error.message, /^zeros\(\): unknown dtype 'complex64'; expected float32, float64/);
  });

  test("unknown device", () => {
    const error = errorOf(() => zeros([2], { device: "tpu" as Device }));
    assert.match(error.message, /^zeros\(\): unknown device 'tpu'; expected "cpu", "cuda" or "cuda:N"/);
    const moved = tidy(() => errorOf(() => ones([2]).to({ device: "tpu" as Device })));
    assert.match(moved.message, /^to\(\[2\] float32\): unknown device 'tpu'/);
  });

  test("cuda without CUDA gives a clear message in a surviving process", (context) => {
    if (cudaAvailable()) {
      context.skip("this libtorch has a CUDA device");
      return;
    }
    const error = errorOf(() => randn([2], { device: "cuda" }));
    assert.equal(error.message, "randn(): device 'cuda' requested, but this libtorch build has no usable CUDA device");
    const moved = tidy(() => errorOf(() => ones([2]).to({ device: "cuda:1" })));
    assert.match(moved.message, /device 'cuda:1' requested, but this libtorch build has no usable CUDA device/);

    // The same calls in a fresh process, which must exit normally rather than abort.
    const child = runNode(`
      const torch = require(${JSON.stringify(require.resolve("../src/torch"))});
      for (const device of ["cuda", "cuda:0", "tpu"]) {
        try { torch.zeros([2], { device }); console.log("accepted " + device); } catch (error) { console.log(error.message); }
      }
      console.log(torch.ones([2]).add(1).sum().item());
    `);
    assert.equal(child.status, 0, child.stderr);
    const lines = child.stdout.trim().split("\n");
    assert.equal(lines.length, 4, child.stdout);
    assert.match(lines[0], /device 'cuda' requested/);
    assert.match(lines[1], /device 'cuda:0' requested/);
    assert.match(lines[2], /unknown device 'tpu'/);
    assert.equal(lines[3], "4");
  });

  test("disposed tensors", () => {
    const t = randn([2, 2]);
    t.dispose();
    tidy(() => {
      assert.equal(errorOf(() => t.sum()).message, "sum(disposed): argument 0 is a disposed tensor");
      assert.equal(errorOf(() => ones([2, 2]).mul(t)).message, "mul([2, 2] float32, disposed): argument 2 is a disposed tensor");
      assert.equal(errorOf(() => cat([ones([2]), t])).message, "cat([2] float32, disposed): tensors is a disposed tensor");
      assert.match(errorOf(() => ones([2, 2]).copy_(t)).message, /^copy\(\[2, 2\] float32, disposed\): argument 2 is a disposed tensor/);
    });
  });

  test("binding argument checks", () => {
    tidy(() => {
      assert.equal(
        errorOf(() => tensor(new Float32Array(5), [2, 3])).message,
        "fromBuffer(): data has 5 elements but shape needs 6",
      );
      assert.match(errorOf(() => ones([1, 1, 4]).pad([1, 1], "mirror" as "reflect")).message, /^pad\(\[1, 1, 4\] float32\): unknown pad mode 'mirror'/);
      assert.match(errorOf(() => F.conv(ones([4, 4]), ones([1, 1, 3]), null)).message, /^conv\(\[4, 4\] float32, \[1, 1, 3\] float32\): convolution input must have 3, 4 or 5 dimensions/);
      assert.match(errorOf(() => ones([2]).item()).message, /^item\(\[2\] float32\): item\(\) needs a tensor with one element/);
    });
  });

  test("failed allocation raises", () => {
    // 2^48 float32 values are 1 PiB: mmap fails, and so does the fallback to libtorch's allocator.
    const error = errorOf(() => zeros([2 ** 48]));
    assert.match(error.message, /^zeros\(\): .*DefaultCPUAllocator: can't allocate memory: you tried to allocate 1125899906842624 bytes/);
    assert.equal(tidy(() => ones([2]).sum().item()), 2);
  });

  test("the process keeps working after errors", () => {
    for (let i = 0; i < 50; i++) {
      tidy(() => errorOf(() => randn([2, 3]).matmul(randn([4, 5]))));
    }
    const value = tidy(() => ones([3, 3]).matmul(ones([3, 1])).sum().item());
    assert.equal(value, 9);
  });

  test("errors inside tidy free the scope's tensors", () => {
    const before = liveTensors();
    errorOf(() => tidy((): Tensor => randn([2, 3]).exp().matmul(randn([4, 5]))));
    assert.equal(liveTensors(), before);
  });
});
