// Autograd of every op family against central finite differences in float64, second
// derivatives through grad(..., {createGraph: true}) against a closed form, and backward with an
// explicit gradient.
import * as assert from "node:assert/strict";
import { describe, test } from "node:test";
import { cat, F, grad, liveTensors, setNumThreads, stack, tensor, Tensor, tidy, where } from "../src/torch";
import { assertClose, checkGradients, randomInput } from "./helpers/engine";

// The tensors here are tiny, and on a loaded machine OpenMP's waiting threads make each op far
// slower than on one thread.
setNumThreads(1);

/** Float64 values in (low, high): seeded normal values squashed by a sigmoid and scaled. */
function positiveInput(shape: number[], seed: number, low = 0.5, high = 2): Tensor {
  return randomInput(shape, seed).sigmoid().mul(high - low).add(low);
}

describe("engine gradients: elementwise unary", () => {
  const cases: [string, (x: Tensor) => Tensor, boolean][] = [
    ["exp", (x) => x.exp(), false],
    ["log", (x) => x.log(), true],
    ["log1p", (x) => x.log1p(), true],
    ["sqrt", (x) => x.sqrt(), true],
    ["rsqrt", (x) => x.rsqrt(), true],
    ["sin", (x) => x.sin(), false],
    ["cos", (x) => x.cos(), false],
    ["sigmoid", (x) => x.sigmoid(), false],
    ["silu", (x) => x.silu(), false],
    ["tanh", (x) => x.tanh(), false],
    ["softplus", (x) => x.softplus(), false],
    ["abs", (x) => x.abs(), false],
    ["square", (x) => x.square(), false],
    ["neg", (x) => x.neg(), false],
    ["reciprocal", (x) => x.reciprocal(), true],
    ["expm1", (x) => x.expm1(), false],
    ["erf", (x) => x.erf(), false],
    ["pow 3", (x) => x.pow(3), false],
    ["pow 0.7", (x) => x.pow(0.7), true],
    ["clamp both", (x) => x.clamp(-0.5, 0.7), false],
    ["clamp min", (x) => x.clamp(0.1, null), false],
    ["clamp max", (x) => x.clamp(null, -0.2), false],
    ["leaky relu", (x) => x.leakyRelu(0.2), false],
    ["relu", (x) => x.relu(), false],
    ["maximum number", (x) => x.maximum(0.3), false],
    ["rsub number", (x) => x.rsub(2.5), false],
    ["rdiv number", (x) => x.rdiv(1.5), true],
  ];
  for (const [name, fn, positive] of cases) {
    test(name, () => {
      tidy(() => {
        const x = positive ? positiveInput([3, 5], 11) : randomInput([3, 5], 11);
        checkGradients(name, fn, [x]);
      });
    });
  }
});

describe("engine gradients: binary with broadcasting", () => {
  const cases: [string, (a: Tensor, b: Tensor) => Tensor][] = [
    ["add", (a, b) => a.add(b)],
    ["sub", (a, b) => a.sub(b)],
    ["mul", (a, b) => a.mul(b)],
    ["div", (a, b) => a.div(b)],
    ["pow", (a, b) => a.pow(b)],
    ["maximum", (a, b) => a.maximum(b)],
    ["minimum", (a, b) => a.minimum(b)],
    ["atan2", (a, b) => a.atan2(b)],
  ];
  for (const [name, fn] of cases) {
    test(`${name} [3, 1, 4] with [2, 4]`, () => {
      tidy(() => {
        // Positive operands keep pow and div smooth; the broadcast shapes exercise the reduction of the gradient.
        const a = positiveInput([3, 1, 4], 21);
        const b = positiveInput([2, 4], 22, 0.6, 1.8);
        checkGradients(name, fn, [a, b]);
      });
    });
  }
  test("mul by a scalar tensor", () => {
    tidy(() => checkGradients("mul scalar", (a, b) => a.mul(b), [randomInput([2, 3], 23), randomInput([], 24)]));
  });
});

describe("engine gradients: reductions", () => {
  const reductions: [string, (x: Tensor, dims: number[] | null, keepdim: boolean) => Tensor][] = [
    ["sum", (x, dims, keepdim) => x.sum(dims, keepdim)],
    ["mean", (x, dims, keepdim) => x.mean(dims, keepdim)],
    ["max", (x, dims, keepdim) => x.max(dims, keepdim)],
    ["min", (x, dims, keepdim) => x.min(dims, keepdim)],
    ["norm 2", (x, dims, keepdim) => x.norm(2, dims, keepdim)],
    ["norm 1", (x, dims, keepdim) => x.norm(1, dims, keepdim)],
    ["norm 3", (x, dims, keepdim) => x.norm(3, dims, keepdim)],
    ["logsumexp", (x, dims, keepdim) => x.logsumexp(dims, keepdim)],
    ["variance", (x, dims, keepdim) => x.variance(dims, true, keepdim)],
  ];
  const dimChoices: (number[] | null)[] = [null, [1], [0, 2], [-1]];
  for (const [name, fn] of reductions) {
    test(name, () => {
      for (const dims of dimChoices) {
        for (const keepdim of [false, true]) {
          tidy(() => {
            const x = randomInput([2, 3, 4], 31);
            checkGradients(`${name} dims ${JSON.stringify(dims)} keepdim ${keepdim}`, (t) => fn(t, dims, keepdim), [x]);
          });
        }
      }
    });
  }
  test("keepdim keeps reduced axes of size one", () => {
    tidy(() => {
      const x = randomInput([2, 3, 4], 32);
      assert.deepEqual(x.sum([0, 2], true).shape, [1, 3, 1]);
      assert.deepEqual(x.logsumexp([1], false).shape, [2, 4]);
      assert.deepEqual(x.norm(2, null, true).shape, [1, 1, 1]);
    });
  });
  test("cumsum", () => {
    tidy(() => checkGradients("cumsum", (x) => x.cumsum(1), [randomInput([3, 4], 33)]));
  });
});

describe("engine gradients: matmul and linear", () => {
  test("matmul 2D", () => {
    tidy(() => checkGradients("matmul", (a, b) => a.matmul(b), [randomInput([3, 4], 41), randomInput([4, 5], 42)]));
  });
  test("matmul batched with broadcasting", () => {
    tidy(() => checkGradients("batched matmul", (a, b) => a.matmul(b), [randomInput([2, 3, 4], 43), randomInput([4, 2], 44)]));
  });
  test("matmul vector", () => {
    tidy(() => checkGradients("matrix-vector", (a, b) => a.matmul(b), [randomInput([3, 4], 45), randomInput([4], 46)]));
  });
  test("linear with bias", () => {
    tidy(() =>
      checkGradients("linear", (x, w, b) => F.linear(x, w, b), [randomInput([2, 3, 4], 47), randomInput([5, 4], 48), randomInput([5], 49)]),
    );
  });
  test("linear without bias", () => {
    tidy(() => checkGradients("linear no bias", (x, w) => F.linear(x, w, null), [randomInput([3, 4], 50), randomInput([2, 4], 51)]));
  });
});

describe("engine gradients: convolution, pooling, upsampling, padding", () => {
  test("conv 1D with stride, padding and dilation", () => {
    tidy(() =>
      checkGradients(
        "conv1d",
        (x, w, b) => F.conv(x, w, b, { stride: 2, padding: 2, dilation: 2 }),
        [randomInput([2, 3, 9], 61), randomInput([4, 3, 3], 62), randomInput([4], 63)],
      ),
    );
  });
  test("conv 3D with stride, padding and dilation", () => {
    tidy(() =>
      checkGradients(
        "conv3d",
        (x, w, b) => F.conv(x, w, b, { stride: [1, 2, 1], padding: [1, 0, 2], dilation: [1, 1, 2] }),
        [randomInput([1, 2, 4, 5, 5], 64), randomInput([2, 2, 3, 2, 3], 65), randomInput([2], 66)],
      ),
    );
  });
  test("average pooling 1D", () => {
    tidy(() => checkGradients("avgPool1d", (x) => F.avgPool(x, [3], [2]), [randomInput([2, 2, 9], 67)]));
  });
  test("average pooling 3D", () => {
    tidy(() => checkGradients("avgPool3d", (x) => F.avgPool(x, [3, 2, 2]), [randomInput([1, 2, 6, 4, 4], 68)]));
  });
  test("nearest upsampling 1D", () => {
    tidy(() => checkGradients("upsample1d", (x) => F.upsampleNearest(x, [3]), [randomInput([2, 2, 4], 69)]));
  });
  test("nearest upsampling 3D", () => {
    tidy(() => checkGradients("upsample3d", (x) => F.upsampleNearest(x, [3, 2, 2]), [randomInput([1, 2, 2, 3, 2], 70)]));
  });
  test("nearest upsampling repeats each value", () => {
    tidy(() => {
      const x = tensor(new Float64Array([1, 2, 3, 4]), [1, 1, 2, 2, 1], { dtype: "float64" });
      const y = F.upsampleNearest(x, [2, 1, 2]);
      assert.deepEqual(y.shape, [1, 1, 4, 2, 2]);
      assert.deepEqual(Array.from(y.toFloat64()), [1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4]);
    });
  });
  test("pad zero", () => {
    tidy(() => checkGradients("pad constant", (x) => x.pad([1, 2, 0, 1], "constant", 0), [randomInput([2, 3, 4], 71)]));
  });
  test("pad circular 1D", () => {
    tidy(() => checkGradients("pad circular 1D", (x) => x.pad([2, 1], "circular"), [randomInput([2, 2, 5], 72)]));
  });
  test("pad circular 3D", () => {
    tidy(() => checkGradients("pad circular 3D", (x) => x.pad([1, 1, 1, 0, 0, 1], "circular"), [randomInput([1, 2, 3, 3, 4], 73)]));
  });
  test("pad circular wraps values", () => {
    tidy(() => {
      const x = tensor(new Float64Array([1, 2, 3, 4]), [1, 1, 4], { dtype: "float64" });
      assert.deepEqual(Array.from(x.pad([2, 1], "circular").toFloat64()), [3, 4, 1, 2, 3, 4, 1]);
    });
  });
});

describe("engine gradients: shape and indexing", () => {
  test("cat", () => {
    tidy(() => checkGradients("cat", (a, b) => cat([a, b.mul(2)], 1), [randomInput([2, 3], 81), randomInput([2, 2], 82)]));
  });
  test("stack", () => {
    tidy(() => checkGradients("stack", (a, b) => stack([a, b.square()], 1), [randomInput([2, 3], 83), randomInput([2, 3], 84)]));
  });
  test("slice with step", () => {
    tidy(() => checkGradients("slice", (x) => x.slice(1, 1, 6, 2).mul(x.slice(1, 0, 3)), [randomInput([2, 7], 85)]));
  });
  test("index select with repeated indices", () => {
    tidy(() => {
      const index = tensor(new BigInt64Array([2n, 0n, 2n, 1n]), [4]);
      checkGradients("indexSelect", (x) => x.indexSelect(1, index), [randomInput([3, 4], 86)]);
    });
  });
  test("repeat", () => {
    tidy(() => checkGradients("repeat", (x) => x.repeat([2, 1, 3]), [randomInput([2, 3], 87)]));
  });
  test("repeat interleave", () => {
    tidy(() => checkGradients("repeatInterleave", (x) => x.repeatInterleave(3, 1), [randomInput([2, 3], 88)]));
  });
  test("expand", () => {
    tidy(() => checkGradients("expand", (x) => x.expand([4, 3, 5]), [randomInput([3, 1], 89)]));
  });
  test("permute", () => {
    tidy(() => checkGradients("permute", (x) => x.permute([2, 0, 1]).reshape([4, 6]), [randomInput([2, 3, 4], 90)]));
  });
  test("transpose, flip, squeeze, unsqueeze, flatten", () => {
    tidy(() =>
      checkGradients(
        "views",
        (x) => x.transpose(0, 1).flip([0]).unsqueeze(1).squeeze(1).flatten(0, 1).mul(x.flatten()),
        [randomInput([2, 3], 91)],
      ),
    );
  });
  test("gather and scatter add", () => {
    tidy(() => {
      const index = tensor(new BigInt64Array([0n, 2n, 1n, 1n, 0n, 0n]), [2, 3]);
      checkGradients("gather", (x) => x.gather(1, index), [randomInput([2, 3], 92)]);
      checkGradients("scatterAdd", (x, s) => x.scatterAdd(1, index, s), [randomInput([2, 3], 93), randomInput([2, 3], 94)]);
    });
  });
});

describe("engine gradients: batch norm and where", () => {
  test("batch norm in training mode", () => {
    tidy(() =>
      checkGradients(
        "batchNorm",
        (x, w, b) => F.batchNorm(x, null, null, w, b, true, 0.1, 1e-5),
        [randomInput([4, 3, 2, 2, 2], 101), randomInput([3], 102), randomInput([3], 103)],
        { rtol: 1e-4 },
      ),
    );
  });
  test("batch norm in training mode updates running statistics without breaking gradients", () => {
    tidy(() => {
      const runningMean = tensor(new Float64Array(3), [3], { dtype: "float64" });
      const runningVar = tensor(new Float64Array([1, 1, 1]), [3], { dtype: "float64" });
      checkGradients("batchNorm with running statistics", (x) => F.batchNorm(x, runningMean, runningVar, null, null, true), [
        randomInput([5, 3, 4], 104),
      ]);
    });
  });
  test("where", () => {
    tidy(() => {
      const cond = randomInput([3, 4], 105).gt(0);
      checkGradients("where", (a, b) => where(cond, a.sin(), b.square()), [randomInput([3, 4], 106), randomInput([1, 4], 107)]);
      checkGradients("where with number", (a) => where(cond, a, 0.5), [randomInput([3, 4], 108)]);
    });
  });
  test("binary cross-entropy with logits", () => {
    tidy(() => {
      const targets = randomInput([3, 4], 109).sigmoid();
      checkGradients("bce", (x) => F.binaryCrossEntropyWithLogits(x, targets), [randomInput([3, 4], 110)]);
    });
  });
});

describe("engine second derivatives and explicit gradients", () => {
  test("grad of the squared gradient norm matches the closed form", () => {
    tidy(() => {
      const x = randomInput([7], 121).mul(2).detach().requiresGrad_(true);
      // f = sum(sin(x) x^2), g = df/dx = cos(x) x^2 + 2 x sin(x), h = sum(g^2), dh/dx = 2 g g'.
      const f = x.sin().mul(x.square()).sum();
      const [g] = grad(f, x, { createGraph: true });
      assert.ok(g !== null);
      assert.equal(g.requiresGrad, true, "a gradient made with createGraph must be differentiable");
      const [dh] = grad(g.square().sum(), x);
      assert.ok(dh !== null);

      const values = x.toFloat64();
      const expectedG = values.map((v) => Math.cos(v) * v * v + 2 * v * Math.sin(v));
      const expectedDh = values.map((v, i) => {
        const gPrime = -v * v * Math.sin(v) + 4 * v * Math.cos(v) + 2 * Math.sin(v);
        return 2 * expectedG[i] * gPrime;
      });
      assertClose(g.toFloat64(), expectedG, "first derivative", { atol: 1e-12, rtol: 1e-12 });
      assertClose(dh.toFloat64(), expectedDh, "second-order term", { atol: 1e-11, rtol: 1e-11 });
    });
  });

  test("grad without createGraph is not differentiable", () => {
    tidy(() => {
      const x = randomInput([3], 122).requiresGrad_(true);
      const [g] = grad(x.exp().sum(), x);
      assert.ok(g !== null);
      assert.equal(g.requiresGrad, false);
      assertClose(g.toFloat64(), x.detach().exp().toFloat64(), "d/dx sum(exp(x))", { atol: 0, rtol: 1e-15 });
    });
  });

  test("grad with gradOutputs weights a non-scalar output", () => {
    tidy(() => {
      const x = randomInput([4], 123).requiresGrad_(true);
      const v = randomInput([4], 124);
      const [g] = grad(x.square(), x, { gradOutputs: [v] });
      assert.ok(g !== null);
      const expected = x.detach().mul(2).mul(v).toFloat64();
      assertClose(g.toFloat64(), expected, "vector-Jacobian product", { atol: 0, rtol: 1e-15 });
    });
  });

  test("backward with a gradient argument accumulates into the leaves", () => {
    tidy(() => {
      const x = randomInput([2, 3], 125).requiresGrad_(true);
      const v = randomInput([2, 3], 126);
      x.square().backward(v);
      const first = x.grad;
      assert.ok(first !== null);
      assertClose(first.toFloat64(), x.detach().mul(2).mul(v).toFloat64(), "x.grad after one backward", { atol: 0, rtol: 1e-15 });

      // A second backward adds to the stored gradient, as in PyTorch.
      x.sin().backward(v);
      const second = x.grad;
      assert.ok(second !== null);
      const expected = x.detach().mul(2).add(x.detach().cos()).mul(v).toFloat64();
      assertClose(second.toFloat64(), expected, "x.grad after two backward calls", { atol: 1e-15, rtol: 1e-14 });

      x.clearGrad();
      assert.equal(x.grad, null);
    });
  });

  test("backward of a non-scalar without a gradient raises", () => {
    tidy(() => {
      const x = randomInput([3], 127).requiresGrad_(true);
      assert.throws(() => x.square().backward(), /grad can be implicitly created only for scalar outputs/);
    });
  });

  test("gradient check detects a wrong gradient", () => {
    // x * detach(x) has autograd gradient x, but its true derivative is 2x.
    tidy(() => {
      assert.throws(() => checkGradients("detached factor", (x) => x.mul(x.detach()), [randomInput([3], 129)]), /gradient of input 0/);
    });
  });

  test("gradient checks free their tensors", () => {
    const before = liveTensors();
    tidy(() => checkGradients("exp", (x) => x.exp(), [randomInput([2], 128)]));
    assert.equal(liveTensors(), before);
  });
});
