import { test } from "node:test";
import assert from "node:assert/strict";
import { manualSeed, randn, tensor, tidy, noGrad, Generator } from "../src/torch";
import { createSde, perSample, SubVpSde, VeSde, VpSde, Sde } from "../src/score/sde";

const times = [1e-5, 1e-3, 0.01, 0.1, 0.3, 0.5, 0.8, 1];

test("VE marginal matches sigma_min (sigma_max / sigma_min)^t", () => {
  const sde = new VeSde(0.01, 50);
  for (const t of times) {
    const expected = 0.01 * (50 / 0.01) ** t;
    const { meanScale, std } = sde.marginalScalar(t);
    assert.equal(meanScale, 1);
    assert.ok(Math.abs(std - expected) / expected < 1e-12, `t=${t}: ${std} vs ${expected}`);
  }
});

test("VP and subVP marginals match the closed forms", () => {
  const vp = new VpSde(0.1, 20);
  const subVp = new SubVpSde(0.1, 20);
  for (const t of times) {
    const integral = 0.1 * t + 0.5 * (20 - 0.1) * t * t; // int_0^t beta(s) ds
    const m = Math.exp(-0.5 * integral);
    assert.ok(Math.abs(vp.marginalScalar(t).meanScale - m) < 1e-14);
    const vpStd = Math.sqrt(1 - Math.exp(-integral));
    const subVpStd = 1 - Math.exp(-integral);
    assert.ok(Math.abs(vp.marginalScalar(t).std - vpStd) / vpStd < 1e-9, `VP std at t=${t}`);
    assert.ok(Math.abs(subVp.marginalScalar(t).std - subVpStd) / subVpStd < 1e-9, `subVP std at t=${t}`);
  }
});

test("small-t standard deviations keep their relative precision", () => {
  // Without expm1, 1 - exp(-x) for x ~ 1e-6 in float32 loses every significant digit.
  const vp = new VpSde();
  const t = 1e-5;
  const integral = 0.1 * t + 0.5 * 19.9 * t * t;
  const expected = Math.sqrt(integral - integral ** 2 / 2);
  const fromTensor = tidy(() => vp.marginal(tensor(new Float32Array([t]), [1])).std.item());
  assert.ok(Math.abs(fromTensor - expected) / expected < 1e-4, `${fromTensor} vs ${expected}`);
});

test("tensor and scalar marginals agree for all SDEs", () => {
  for (const name of ["VE", "VP", "subVP"]) {
    const sde = createSde(name);
    const values = tidy(() => {
      const t = tensor(Float64Array.from(times), [times.length], { dtype: "float64" });
      const { meanScale, std } = sde.marginal(t);
      return [meanScale.toFloat64(), std.toFloat64(), sde.diffusion(t).toFloat64()];
    });
    times.forEach((t, i) => {
      const scalar = sde.marginalScalar(t);
      assert.ok(Math.abs(values[0][i] - scalar.meanScale) <= 1e-9 * Math.abs(scalar.meanScale) + 1e-15, `${name} mean at ${t}`);
      assert.ok(Math.abs(values[1][i] - scalar.std) <= 1e-9 * scalar.std, `${name} std at ${t}`);
      assert.ok(Math.abs(values[2][i] - sde.diffusionScalar(t)) <= 1e-9 * sde.diffusionScalar(t), `${name} g at ${t}`);
    });
  }
});

test("VP variance stays 1 for unit-variance data", () => {
  const vp = new VpSde();
  for (const t of times) {
    const { meanScale, std } = vp.marginalScalar(t);
    assert.ok(Math.abs(meanScale ** 2 + std ** 2 - 1) < 1e-12, `t=${t}`);
  }
});

test("subVP variance is below VP's at every t", () => {
  const vp = new VpSde();
  const subVp = new SubVpSde();
  for (let i = 1; i <= 100; i++) {
    const t = i / 100;
    assert.ok(subVp.marginalScalar(t).std < vp.marginalScalar(t).std, `t=${t}`);
  }
});

/**
 * Euler-Maruyama simulation of the forward SDE from x0 (fine steps, float64) and comparison of
 * the sample mean and standard deviation with the closed-form marginal.
 */
function simulateForward(sde: Sde, x0: number, tEnd: number, samples: number, steps: number): { mean: number; std: number } {
  return noGrad(() =>
    tidy(() => {
      const generator = new Generator(7);
      let x = tensor(new Float64Array(samples).fill(x0), [samples, 1], { dtype: "float64" });
      const dt = tEnd / steps;
      for (let i = 0; i < steps; i++) {
        x = tidy(() => {
          const t = tensor(new Float64Array(samples).fill(i * dt), [samples], { dtype: "float64" });
          const z = randn([samples, 1], { dtype: "float64", generator });
          const g = perSample(sde.diffusion(t), x);
          return x.add(sde.drift(x, t).mul(dt)).add(z.mul(g).mul(Math.sqrt(dt)));
        });
      }
      const mean = x.mean().item();
      const std = Math.sqrt(x.variance().item());
      return { mean, std };
    }),
  );
}

test("forward SDE simulation matches the marginal moments", () => {
  manualSeed(3);
  const samples = 20000;
  for (const sde of [new VeSde(0.01, 5), new VpSde(), new SubVpSde()]) {
    const tEnd = 0.5;
    const x0 = 2;
    const { mean, std } = simulateForward(sde, x0, tEnd, samples, 400);
    const expected = sde.marginalScalar(tEnd);
    // For VE the kernel's std is sigma(t); the SDE started at t = 0 adds variance sigma(t)^2 - sigma(0)^2.
    const expectedStd = sde.name === "VE" ? Math.sqrt(expected.std ** 2 - sde.marginalScalar(0).std ** 2) : expected.std;
    const meanError = expectedStd / Math.sqrt(samples);
    assert.ok(Math.abs(mean - expected.meanScale * x0) < 5 * meanError + 2e-3, `${sde.name} mean ${mean} vs ${expected.meanScale * x0}`);
    assert.ok(Math.abs(std - expectedStd) / expectedStd < 0.03, `${sde.name} std ${std} vs ${expectedStd}`);
  }
});

test("prior log-density is the Gaussian log-density", () => {
  for (const sde of [new VeSde(), new VpSde()]) {
    const sigma = sde.name === "VE" ? 50 : 1;
    const values = tidy(() => {
      const z = tensor(new Float32Array([0.5, -1, 2, 0, 0, 3]), [2, 3]);
      return sde.priorLogProb(z).toFloat64();
    });
    const logDensity = (v: number[]) => v.reduce((s, x) => s - (x * x) / (2 * sigma * sigma) - 0.5 * Math.log(2 * Math.PI * sigma * sigma), 0);
    assert.ok(Math.abs(values[0] - logDensity([0.5, -1, 2])) < 1e-4);
    assert.ok(Math.abs(values[1] - logDensity([0, 0, 3])) < 1e-4);
  }
});

test("unknown SDE name is rejected", () => {
  assert.throws(() => createSde("VX"), /unknown SDE 'VX'; expected VE, VP or subVP/);
});

test("prior samples have the prior's standard deviation", () => {
  const std = tidy(() => Math.sqrt(new VeSde(0.01, 50).priorSample([20000]).variance().item()));
  assert.ok(Math.abs(std - 50) / 50 < 0.03, `${std}`);
});
