import { test } from "node:test";
import * as assert from "node:assert/strict";

import { full, Generator, grad, liveTensors, noGrad, randn, tensor, Tensor, tidy, zeros } from "../src/torch";
import { createSde, SdeName } from "../src/score/sde";
import { GaussianScoreModel } from "../src/score/analytic";
import { probabilityFlowDrift } from "../src/score/odeSampler";
import { UNetScoreModel } from "../src/score/unet";
import { driftAndDivergence, logLikelihood, preprocessingLogJacobian } from "../src/score/likelihood";
import { energyCondition, fitPreprocessing, forwardPreprocess } from "../src/calo/preprocess";
import { runPython } from "./helpers/caloPython";

// Gaussian data in 4 dimensions with covariance L L^T (the same as the sampler tests).
const dataMean = [0.5, -0.3, 0.2, 0.4];
const choleskyFactor = [
  [1, 0, 0, 0],
  [0.5, 0.8, 0, 0],
  [-0.3, 0.4, 0.6, 0],
  [0.2, -0.1, 0.3, 0.5],
];
const dataCovariance: number[] = [];
for (let i = 0; i < 4; i++) {
  for (let j = 0; j < 4; j++) {
    let sum = 0;
    for (let k = 0; k < 4; k++) sum += choleskyFactor[i][k] * choleskyFactor[j][k];
    dataCovariance.push(sum);
  }
}
const sdeNames: SdeName[] = ["VE", "VP", "subVP"];

/** Points mu + L w with |w|^2 = 16, 20, 1 and 6.25: log-densities from -12 to -2.7. */
const points = [
  [2, -2, 2, -2],
  [2, 2, -2, 2 * Math.SQRT2],
  [0.5, 0.5, -0.5, 0.5],
  [1, -2, 0, 0.5],
].map((w) => dataMean.map((m, i) => m + choleskyFactor[i].reduce((sum, l, k) => sum + l * w[k], 0)));

/** log N(x; mu, Sigma) from numpy, for each point. */
function numpyLogDensity(xs: number[][]): number[] {
  const script = `
import sys, json, numpy as np
d = json.loads(sys.argv[1])
sigma = np.array(d["covariance"]).reshape(4, 4); mu = np.array(d["mean"])
sign, logdet = np.linalg.slogdet(sigma)
out = []
for x in d["points"]:
    r = np.array(x) - mu
    out.append(float(-0.5 * (r @ np.linalg.solve(sigma, r) + logdet + 4 * np.log(2 * np.pi))))
print(json.dumps(out))
`;
  return JSON.parse(runPython(script, [JSON.stringify({ covariance: dataCovariance, mean: dataMean, points: xs })])) as number[];
}

const referenceLogDensity = numpyLogDensity(points);

function pointsTensor(repeats = 1): Tensor {
  return tensor(new Float32Array(points.flat()), [points.length, 4]).repeatInterleave(repeats, 0);
}

for (const name of sdeNames) {
  test(`exact likelihood matches Gaussian density (${name})`, () => {
    const sde = createSde(name);
    const model = new GaussianScoreModel(sde, dataMean, dataCovariance);
    const x = pointsTensor();
    const condition = zeros([points.length]);
    const before = liveTensors();
    const result = logLikelihood(model, sde, x, condition, { divergence: "exact" });
    const logp = result.logLikelihood.toFloat64();
    const bitsPerDimension = result.bitsPerDimension.toFloat64();
    assert.equal(result.dimensions, 4);
    assert.ok(result.evaluations > 20, `only ${result.evaluations} evaluations`);
    points.forEach((_, p) => {
      const expected = referenceLogDensity[p];
      assert.ok(Math.abs(logp[p] - expected) < 0.01 * Math.abs(expected), `point ${p}: log p = ${logp[p]}, numpy ${expected}`);
      assert.ok(Math.abs(bitsPerDimension[p] + logp[p] / (4 * Math.LN2)) < 1e-9, `point ${p}: bits per dimension ${bitsPerDimension[p]}`);
    });
    for (const t of [result.logLikelihood, result.bitsPerDimension, result.priorLogProb]) t.dispose();
    assert.equal(liveTensors(), before, "tensors left alive by logLikelihood");
    x.dispose();
    condition.dispose();
  });
}

for (const name of sdeNames) {
  test(`Hutchinson likelihood matches Gaussian density (${name})`, () => {
    // Each row is one Rademacher probe for the whole integration. The per-probe spread is 1.4 nats
    // here (from the off-diagonal part of the integrated Jacobian), so 3000 probes give a standard
    // error of 0.026; 4 standard errors stay below 1% of |log p| >= 10 for the first two points.
    const probes = 3000;
    const sde = createSde(name);
    const model = new GaussianScoreModel(sde, dataMean, dataCovariance);
    const two = points.slice(0, 2);
    tidy(() => {
      const x = tensor(new Float32Array(two.flat()), [2, 4]).repeatInterleave(probes, 0);
      const result = logLikelihood(model, sde, x, zeros([2 * probes]), { divergence: "hutchinson", generator: new Generator(21) });
      const logp = result.logLikelihood.toFloat64();
      two.forEach((_, p) => {
        let mean = 0;
        for (let k = 0; k < probes; k++) mean += logp[p * probes + k] / probes;
        const expected = referenceLogDensity[p];
        assert.ok(Math.abs(mean - expected) < 0.01 * Math.abs(expected), `point ${p}: mean log p over probes = ${mean}, numpy ${expected}`);
      });
    });
  });
}

test("Gaussian probes are unbiased (VP)", () => {
  const probes = 2000;
  const sde = createSde("VP");
  const model = new GaussianScoreModel(sde, dataMean, dataCovariance);
  tidy(() => {
    const x = tensor(new Float32Array(points[0]), [1, 4]).repeatInterleave(probes, 0);
    const result = logLikelihood(model, sde, x, zeros([probes]), { divergence: "hutchinson", probeDistribution: "gaussian", generator: new Generator(8) });
    const logp = result.logLikelihood.toFloat64();
    const mean = logp.reduce((sum, v) => sum + v, 0) / probes;
    const spread = Math.sqrt(logp.reduce((sum, v) => sum + (v - mean) ** 2, 0) / (probes - 1));
    const standardError = spread / Math.sqrt(probes);
    assert.ok(spread > 0.5, `Gaussian probes gave a spread of only ${spread}`);
    assert.ok(Math.abs(mean - referenceLogDensity[0]) < 4 * standardError, `mean ${mean} vs numpy ${referenceLogDensity[0]} +- ${4 * standardError}`);
  });
});

test("more probes per sample shrink the spread", () => {
  // Averaging K probes inside one integration divides the estimator's variance by K.
  const sde = createSde("subVP");
  const model = new GaussianScoreModel(sde, dataMean, dataCovariance);
  const rows = 300;
  const spreadFor = (probes: number): number =>
    tidy(() => {
      const x = tensor(new Float32Array(points[0]), [1, 4]).repeatInterleave(rows, 0);
      const logp = logLikelihood(model, sde, x, zeros([rows]), { probes, generator: new Generator(probes) }).logLikelihood.toFloat64();
      const mean = logp.reduce((sum, v) => sum + v, 0) / rows;
      return Math.sqrt(logp.reduce((sum, v) => sum + (v - mean) ** 2, 0) / (rows - 1));
    });
  const ratio = spreadFor(1) / spreadFor(16);
  // sqrt(16) = 4; with 300 rows each spread has a 4% relative standard error.
  assert.ok(ratio > 3.3, `spread ratio for 1 and 16 probes ${ratio}, expected about 4`);
  assert.ok(ratio < 4.8, `spread ratio for 1 and 16 probes ${ratio}, expected about 4`);
});

test("Heun likelihood matches Gaussian density", () => {
  const sde = createSde("VP");
  const model = new GaussianScoreModel(sde, dataMean, dataCovariance);
  tidy(() => {
    const result = logLikelihood(model, sde, pointsTensor(), zeros([points.length]), { divergence: "exact", method: "heun", steps: 200 });
    assert.equal(result.evaluations, 400);
    const logp = result.logLikelihood.toFloat64();
    points.forEach((_, p) => {
      const expected = referenceLogDensity[p];
      assert.ok(Math.abs(logp[p] - expected) < 0.01 * Math.abs(expected), `point ${p}: log p = ${logp[p]}, numpy ${expected}`);
    });
  });
});

test("exact divergence matches the trace formula", () => {
  // For Gaussian data F(x, t) = f(t) x + g(t)^2 / 2 C_t^-1 (x - m mu) with f(t) = -beta(t) / 2
  // (0 for VE), so div F = 4 f(t) + g(t)^2 / 2 tr(C_t^-1), independent of x.
  for (const name of sdeNames) {
    const sde = createSde(name);
    const model = new GaussianScoreModel(sde, dataMean, dataCovariance);
    for (const t of [0.01, 0.5, 0.9]) {
      const divergence = tidy(() => driftAndDivergence(model, sde, pointsTensor(), t, zeros([points.length]), "exact", [])[1].toFloat64());
      const beta = name === "VE" ? 0 : 0.1 + t * (20 - 0.1);
      const { meanScale, std } = sde.marginalScalar(t);
      const g = sde.diffusionScalar(t);
      const script = `
import sys, json, numpy as np
d = json.loads(sys.argv[1])
c = d["m"] ** 2 * np.array(d["covariance"]).reshape(4, 4) + d["s"] ** 2 * np.eye(4)
print(json.dumps(float(-2 * d["beta"] + d["g"] ** 2 / 2 * np.trace(np.linalg.inv(c)))))
`;
      const expected = JSON.parse(runPython(script, [JSON.stringify({ covariance: dataCovariance, m: meanScale, s: std, g, beta })])) as number;
      for (const value of divergence) {
        // Float32 rounding relative to the two terms, which nearly cancel for VP near t = 1.
        const tolerance = 1e-5 * (1 + 2 * beta + Math.abs(expected));
        assert.ok(Math.abs(value - expected) < tolerance, `${name} t = ${t}: div F = ${value}, numpy ${expected}`);
      }
    }
  }
});

for (const options of [{}, { energyDependentMean: true, energyDependentStd: true }]) {
  const label = "energyDependentStd" in options ? "energy-dependent" : "constant";
  test(`preprocessing log-Jacobian matches autograd, ${label} standardisation`, () => {
    // Dataset 2 in the cylindrical layout maps voxel k to model entry k, so the Jacobian is diagonal
    // and autograd of sum(z) gives every dz_k / dE_k at once.
    const voxels = 6480;
    const showers = 8;
    // Deterministic deposits up to 50 MeV, a third of the voxels empty.
    const energies = Float64Array.from({ length: showers * voxels }, (_, i) => (i % 3 === 0 ? 0 : (50 * ((i * 7919 + 13 * Math.floor(i / voxels)) % 1000)) / 1000));
    // Pairs of nearby energies, so each of four condition bins has the two showers the spread needs.
    const incident = new Float64Array([2000, 2100, 15000, 16000, 80000, 85000, 500000, 520000]);
    const state = fitPreprocessing("2", "cylindrical", incident, energies, options);
    const logJacobian = preprocessingLogJacobian(state, energies, incident);
    const forward = forwardPreprocess(state, incident, energies).x;

    // Mean and std of every entry at each shower's condition, from the state's polynomials.
    const condition = energyCondition(state, incident);
    const polynomial = (coefficients: number[][] | null | undefined, k: number, c: number): number =>
      (coefficients ?? []).reduce((sum, row, p) => sum + row[k] * c ** (p + 1), 0);
    const means = new Float64Array(showers * voxels);
    const stds = new Float64Array(showers * voxels);
    for (let i = 0; i < showers; i++) {
      for (let k = 0; k < voxels; k++) {
        means[i * voxels + k] = state.mean[k] + polynomial(state.meanCoefficients, k, condition[i]);
        stds[i * voxels + k] = state.std[k] * Math.exp(polynomial(state.stdCoefficients, k, condition[i]));
      }
    }

    tidy(() => {
      const e = tensor(energies, [showers, voxels]).requiresGrad_();
      const scale = tensor(incident, [showers, 1]).mul(state.maxDepositFactor);
      const a = state.logitOffset;
      const x = e.div(scale).mul(1 - 2 * a).add(a);
      const z = x.div(x.rsub(1)).log().sub(tensor(means, [showers, voxels])).div(tensor(stds, [showers, voxels]));
      const zValues = z.toFloat64();
      for (let i = 0; i < zValues.length; i += 997) {
        assert.ok(Math.abs(zValues[i] - forward[i]) < 1e-4 * (1 + Math.abs(zValues[i])), `entry ${i}: test forward ${zValues[i]}, forwardPreprocess ${forward[i]}`);
      }
      const [derivatives] = grad(z.sum(), e);
      const expected = derivatives!.abs().log().sum([1]).toFloat64();
      for (let i = 0; i < showers; i++) {
        assert.ok(Math.abs(logJacobian[i] - expected[i]) < 1e-7 * Math.abs(expected[i]), `shower ${i}: log-Jacobian ${logJacobian[i]}, autograd ${expected[i]}`);
      }
    });
  });
}

test("preprocessing log-Jacobian rejects the flat layout", () => {
  const energies = new Float64Array(2 * 368).fill(1);
  const incident = new Float64Array([1000, 2000]);
  const state = fitPreprocessing("1-photons", "cartesian", incident, energies);
  assert.throws(() => preprocessingLogJacobian(state, energies, incident), /flat layout of dataset 1-photons is not a bijection/);
});

test("U-Net divergence matches finite differences", () => {
  // A small 1D U-Net in evaluation mode, so that samples do not interact through batch norm.
  const sde = createSde("subVP");
  const network = new UNetScoreModel(
    { dims: 1, inputShape: [1, 16], channels: [4, 8], kernel: 3, pooling: [2], embedding: 8, dropout: 0 },
    sde,
    new Generator(12),
  );
  network.eval();
  const t = 0.3;
  tidy(() => {
    const x = randn([3, 1, 16], { generator: new Generator(13) });
    const condition = tensor(new Float32Array([0.1, 0.5, 0.9]), [3]);
    const [, exact] = driftAndDivergence(network, sde, x, t, condition, "exact", []);
    const exactValues = exact.toFloat64();

    // Central differences of F_i in x_i, all samples at once (float32, step 1e-2).
    const step = 1e-2;
    const finiteDifference = new Float64Array(3);
    for (let i = 0; i < 16; i++) {
      tidy(() => {
        const shift = zeros([3, 1, 16]);
        shift.select(2, i).fill_(step);
        const time = full([3], t);
        const up = noGrad(() => probabilityFlowDrift(network, sde, x.add(shift), time, condition)).select(2, i).toFloat64();
        const down = noGrad(() => probabilityFlowDrift(network, sde, x.sub(shift), time, condition)).select(2, i).toFloat64();
        for (let b = 0; b < 3; b++) finiteDifference[b] += (up[b] - down[b]) / (2 * step);
      });
    }
    for (let b = 0; b < 3; b++) {
      assert.ok(
        Math.abs(exactValues[b] - finiteDifference[b]) < 1e-2 * (1 + Math.abs(finiteDifference[b])),
        `sample ${b}: exact divergence ${exactValues[b]}, finite differences ${finiteDifference[b]}`,
      );
    }

    // The Hutchinson estimate with many probes approaches the exact trace.
    const probes = Array.from({ length: 400 }, (_, k) => randn([3, 1, 16], { generator: new Generator(100 + k) }));
    const [, estimate] = driftAndDivergence(network, sde, x, t, condition, "hutchinson", probes);
    const estimateValues = estimate.toFloat64();
    for (let b = 0; b < 3; b++) {
      assert.ok(
        Math.abs(estimateValues[b] - exactValues[b]) < 0.1 * (1 + Math.abs(exactValues[b])),
        `sample ${b}: Hutchinson estimate ${estimateValues[b]} with 400 Gaussian probes, exact ${exactValues[b]}`,
      );
    }
  });
  network.dispose();
});
