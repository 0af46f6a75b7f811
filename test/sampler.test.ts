import { test } from "node:test";
import * as assert from "node:assert/strict";

import { Generator, liveTensors, stack, tensor, Tensor, tidy, zeros } from "../src/torch";
import { createSde, Sde, SdeName, sampleTimeMin } from "../src/score/sde";
import { GaussianScoreModel, symmetricEigen } from "../src/score/analytic";
import { langevinAlpha, samplePredictorCorrector } from "../src/score/pcSampler";
import { integrateRk45, OdeFunction, sampleProbabilityFlow } from "../src/score/odeSampler";
import { UNetScoreModel } from "../src/score/unet";
import { runPython } from "./helpers/caloPython";

// Gaussian data in 4 dimensions with a non-diagonal covariance L L^T (eigenvalues 0.10 to 1.49).
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
const sampleCount = 2000;

interface Moments {
  mean: number[];
  covariance: number[];
}

function sampleMoments(samples: Tensor): Moments {
  const values = samples.toFloat64();
  const n = values.length / 4;
  const mean = [0, 0, 0, 0];
  for (let b = 0; b < n; b++) for (let i = 0; i < 4; i++) mean[i] += values[b * 4 + i] / n;
  const covariance: number[] = [];
  for (let i = 0; i < 4; i++) {
    for (let j = 0; j < 4; j++) {
      let sum = 0;
      for (let b = 0; b < n; b++) sum += (values[b * 4 + i] - mean[i]) * (values[b * 4 + j] - mean[j]);
      covariance.push(sum / (n - 1));
    }
  }
  return { mean, covariance };
}

/**
 * Checks sample moments against the data's within 4 standard errors: sqrt(Sigma_ii / n) for a
 * mean and sqrt((Sigma_ii Sigma_jj + Sigma_ij^2) / n) for a covariance entry of Gaussian data.
 * With n = 2000 that is 4 x 3.2% on a variance.
 */
function assertMomentsMatchData(label: string, moments: Moments, n: number): void {
  for (let i = 0; i < 4; i++) {
    const tolerance = 4 * Math.sqrt(dataCovariance[i * 5] / n);
    assert.ok(
      Math.abs(moments.mean[i] - dataMean[i]) < tolerance,
      `${label}: mean[${i}] = ${moments.mean[i].toFixed(4)}, expected ${dataMean[i]} +- ${tolerance.toFixed(4)}`,
    );
  }
  for (let i = 0; i < 4; i++) {
    for (let j = i; j < 4; j++) {
      const expected = dataCovariance[i * 4 + j];
      const tolerance = 4 * Math.sqrt((dataCovariance[i * 5] * dataCovariance[j * 5] + expected * expected) / n);
      const found = moments.covariance[i * 4 + j];
      assert.ok(
        Math.abs(found - expected) < tolerance,
        `${label}: covariance[${i}][${j}] = ${found.toFixed(4)}, expected ${expected.toFixed(4)} +- ${tolerance.toFixed(4)}`,
      );
    }
  }
}

/**
 * Computes the exact probability-flow map for Gaussian data with numpy: every marginal covariance
 * C_t = m_t^2 Sigma + s_t^2 I shares Sigma's eigenvectors, so the flow maps x(1) to
 * x(t0) = m_0 mu + C_0^(1/2) C_1^(-1/2) (x(1) - m_1 mu). Returns the 4 x 4 matrix and the offset.
 */
function exactFlowMap(sde: Sde, timeEnd: number): { matrix: number[]; offset: number[] } {
  const start = sde.marginalScalar(timeEnd);
  const end = sde.marginalScalar(1);
  const script = `
import sys, json
import numpy as np
d = json.loads(sys.argv[1])
mu = np.array(d["mean"]); sigma = np.array(d["covariance"]).reshape(4, 4)
lam, q = np.linalg.eigh(sigma)
c0 = d["m0"] ** 2 * lam + d["s0"] ** 2
c1 = d["m1"] ** 2 * lam + d["s1"] ** 2
b = q @ np.diag(np.sqrt(c0 / c1)) @ q.T
offset = d["m0"] * mu - b @ (d["m1"] * mu)
print(json.dumps({"matrix": b.ravel().tolist(), "offset": offset.tolist()}))
`;
  const input = { mean: dataMean, covariance: dataCovariance, m0: start.meanScale, s0: start.std, m1: end.meanScale, s1: end.std };
  return JSON.parse(runPython(script, [JSON.stringify(input)])) as { matrix: number[]; offset: number[] };
}

/** Largest absolute difference between samples and the exact flow map applied to the prior draw. */
function maxFlowMapError(samples: Tensor, prior: Tensor, map: { matrix: number[]; offset: number[] }): number {
  const x = samples.toFloat64();
  const z = prior.toFloat64();
  let worst = 0;
  for (let b = 0; b < x.length / 4; b++) {
    for (let i = 0; i < 4; i++) {
      let expected = map.offset[i];
      for (let j = 0; j < 4; j++) expected += map.matrix[i * 4 + j] * z[b * 4 + j];
      worst = Math.max(worst, Math.abs(x[b * 4 + i] - expected));
    }
  }
  return worst;
}

test("symmetricEigen matches numpy eigvalsh", () => {
  const { values, vectors } = symmetricEigen(dataCovariance, 4);
  const reference = JSON.parse(
    runPython(
      `import sys, json, numpy as np\nprint(json.dumps(np.linalg.eigvalsh(np.array(json.loads(sys.argv[1])).reshape(4, 4)).tolist()))`,
      [JSON.stringify(dataCovariance)],
    ),
  ) as number[];
  const sorted = Array.from(values).sort((a, b) => a - b);
  for (let k = 0; k < 4; k++) assert.ok(Math.abs(sorted[k] - reference[k]) < 1e-12, `eigenvalue ${k}: ${sorted[k]} vs numpy ${reference[k]}`);
  for (let i = 0; i < 4; i++) {
    for (let j = 0; j < 4; j++) {
      let reconstructed = 0;
      for (let k = 0; k < 4; k++) reconstructed += vectors[i * 4 + k] * values[k] * vectors[j * 4 + k];
      assert.ok(Math.abs(reconstructed - dataCovariance[i * 4 + j]) < 1e-12, `Q diag Q^T differs from the matrix at (${i}, ${j})`);
    }
  }
});

test("Gaussian score matches numpy solve", () => {
  const points = [
    [0.1, 0.2, -0.3, 1.5],
    [-2, 0.7, 0.4, 0],
    [3, -1, 2, -0.5],
  ];
  const times = [1e-3, 0.3, 1];
  for (const name of sdeNames) {
    const sde = createSde(name);
    const model = new GaussianScoreModel(sde, dataMean, dataCovariance);
    const scores = tidy(() =>
      model.score(tensor(new Float64Array(points.flat()), [3, 4]), tensor(new Float64Array(times), [3]), zeros([3])).toFloat64(),
    );
    const marginals = times.map((t) => sde.marginalScalar(t));
    const script = `
import sys, json, numpy as np
d = json.loads(sys.argv[1])
sigma = np.array(d["covariance"]).reshape(4, 4); mu = np.array(d["mean"])
out = []
for x, (m, s) in zip(d["points"], d["marginals"]):
    out.append((-np.linalg.solve(m * m * sigma + s * s * np.eye(4), np.array(x) - m * mu)).tolist())
print(json.dumps(out))
`;
    const input = { covariance: dataCovariance, mean: dataMean, points, marginals: marginals.map((m) => [m.meanScale, m.std]) };
    const reference = (JSON.parse(runPython(script, [JSON.stringify(input)])) as number[][]).flat();
    for (let i = 0; i < reference.length; i++) {
      assert.ok(Math.abs(scores[i] - reference[i]) < 1e-9 * (1 + Math.abs(reference[i])), `${name} score[${i}] = ${scores[i]}, numpy ${reference[i]}`);
    }
  }
});

test("langevinAlpha is 1 - beta(t) dt for VP and 1 for VE", () => {
  assert.equal(langevinAlpha(createSde("VE"), 0.4, 0.01), 1);
  for (const name of ["VP", "subVP"]) {
    const alpha = langevinAlpha(createSde(name), 0.4, 0.01);
    const beta = 0.1 + 0.4 * (20 - 0.1);
    assert.ok(Math.abs(alpha - (1 - beta * 0.01)) < 1e-12, `${name}: alpha = ${alpha}, expected ${1 - beta * 0.01}`);
  }
});

for (const name of sdeNames) {
  test(`PC sampler recovers Gaussian moments (${name})`, () => {
    // The Langevin corrector at snr 0.2 inflates variances by 2-3% at 200 steps (measured with 1e5
    // samples), below one standard error (3.2%) at 2000 samples.
    const sde = createSde(name);
    const model = new GaussianScoreModel(sde, dataMean, dataCovariance);
    const condition = zeros([sampleCount]);
    const before = liveTensors();
    const steps: number[] = [];
    const result = samplePredictorCorrector(model, sde, [4], condition, { steps: 200, generator: new Generator(11) }, (step, total, t) => {
      assert.equal(total, 200);
      steps.push(step);
      if (step === total) assert.ok(Math.abs(t - sampleTimeMin) < 1e-12, `last step ends at t = ${t}`);
    });
    assert.equal(result.evaluations, 200);
    assert.deepEqual(steps, Array.from({ length: 200 }, (_, i) => i + 1));
    assert.deepEqual(result.samples.shape, [sampleCount, 4]);
    assertMomentsMatchData(`PC ${name}`, sampleMoments(result.samples), sampleCount);
    result.samples.dispose();
    assert.equal(liveTensors(), before, "tensors left alive by the PC sampler");
    condition.dispose();
  });
}

test("PC sampler is reproducible per generator seed", () => {
  const sde = createSde("subVP");
  const model = new GaussianScoreModel(sde, dataMean, dataCovariance);
  tidy(() => {
    const condition = zeros([16]);
    const first = samplePredictorCorrector(model, sde, [4], condition, { steps: 20, generator: new Generator(5) }).samples.toFloat64();
    const again = samplePredictorCorrector(model, sde, [4], condition, { steps: 20, generator: new Generator(5) }).samples.toFloat64();
    const other = samplePredictorCorrector(model, sde, [4], condition, { steps: 20, generator: new Generator(6) }).samples.toFloat64();
    assert.deepEqual(again, first);
    assert.ok(other.some((v, i) => Math.abs(v - first[i]) > 1e-3), "a different seed gave the same samples");
  });
});

for (const name of sdeNames) {
  test(`probability-flow ODE follows the exact flow map (${name})`, () => {
    const sde = createSde(name);
    const model = new GaussianScoreModel(sde, dataMean, dataCovariance);
    const map = exactFlowMap(sde, sampleTimeMin);
    const condition = zeros([sampleCount]);
    const prior = sde.priorSample([sampleCount, 4], new Generator(3));
    const before = liveTensors();

    // Heun with 200 steps: measured errors 4e-3 (VE, the stiffest), 2e-4 (VP, subVP).
    const heun = sampleProbabilityFlow(model, sde, [4], condition, { method: "heun", steps: 200, generator: new Generator(3) });
    assert.equal(heun.evaluations, 400);
    const heunError = maxFlowMapError(heun.samples, prior, map);
    assert.ok(heunError < 1e-2, `Heun differs from the exact flow by ${heunError}`);
    assertMomentsMatchData(`Heun ${name}`, sampleMoments(heun.samples), sampleCount);
    heun.samples.dispose();

    // RK45 with rtol = atol = 1e-5: measured errors 3e-5 to 2e-4.
    let acceptedSteps = 0;
    const rk45 = sampleProbabilityFlow(model, sde, [4], condition, { method: "rk45", generator: new Generator(3) }, (step, total) => {
      assert.equal(total, null);
      acceptedSteps = step;
    });
    assert.ok(rk45.evaluations >= 6 * acceptedSteps + 2, `${rk45.evaluations} evaluations for ${acceptedSteps} steps`);
    const rk45Error = maxFlowMapError(rk45.samples, prior, map);
    assert.ok(rk45Error < 1e-3, `RK45 differs from the exact flow by ${rk45Error}`);
    assertMomentsMatchData(`RK45 ${name}`, sampleMoments(rk45.samples), sampleCount);
    rk45.samples.dispose();

    assert.equal(liveTensors(), before, "tensors left alive by the ODE sampler");
    prior.dispose();
    condition.dispose();
  });
}

test("Euler is first order and Heun second order", () => {
  const sde = createSde("VP");
  const model = new GaussianScoreModel(sde, dataMean, dataCovariance);
  const map = exactFlowMap(sde, sampleTimeMin);
  tidy(() => {
    const condition = zeros([200]);
    const prior = sde.priorSample([200, 4], new Generator(4));
    const error = (method: "euler" | "heun", steps: number): number =>
      tidy(() => maxFlowMapError(sampleProbabilityFlow(model, sde, [4], condition, { method, steps, generator: new Generator(4) }).samples, prior, map));
    const eulerRatio = error("euler", 50) / error("euler", 100);
    const heunRatio = error("heun", 50) / error("heun", 100);
    assert.ok(eulerRatio > 1.7, `Euler error ratio for half the step ${eulerRatio}, expected about 2`);
    assert.ok(eulerRatio < 2.3, `Euler error ratio for half the step ${eulerRatio}, expected about 2`);
    assert.ok(heunRatio > 3.4, `Heun error ratio for half the step ${heunRatio}, expected about 4`);
    assert.ok(heunRatio < 4.6, `Heun error ratio for half the step ${heunRatio}, expected about 4`);
  });
});

// y1' = y1 cos t (y1 = y1(t0) exp(sin t - sin t0)) and y2' = -2 y2 + sin 3t.
const testSystem: OdeFunction = (t, [y]) => [
  tidy(() => {
    const first = y.select(1, 0).mul(Math.cos(t));
    const second = y.select(1, 1).mul(-2).add(Math.sin(3 * t));
    return stack([first, second], 1);
  }),
];

test("integrateRk45 meets its tolerance on a closed form", () => {
  tidy(() => {
    const result = integrateRk45(testSystem, 0, 5, [tensor(new Float64Array([1, 0.5]), [1, 2])], { rtol: 1e-6, atol: 1e-8 });
    const y1 = result.y[0].toFloat64()[0];
    const exact = Math.exp(Math.sin(5));
    assert.ok(Math.abs(y1 - exact) < 1e-5 * exact, `y1(5) = ${y1}, exact ${exact}`);
    assert.equal(result.evaluations, 6 * (result.acceptedSteps + result.rejectedSteps) + 2);
  });
});

const scipyAvailable = (() => {
  try {
    runPython("import scipy");
    return true;
  } catch {
    return false;
  }
})();

test("integrateRk45 takes the steps of scipy's RK45", { skip: scipyAvailable ? false : "python3-scipy is not installed" }, () => {
  const script = `
import json
import numpy as np
from scipy.integrate import solve_ivp
f = lambda t, y: [y[0] * np.cos(t), -2 * y[1] + np.sin(3 * t)]
out = []
for t0, t1 in [(0, 5), (1, 0.001)]:
    r = solve_ivp(f, (t0, t1), [1, 0.5], method="RK45", rtol=1e-6, atol=1e-8)
    out.append({"y": r.y[:, -1].tolist(), "evaluations": int(r.nfev), "steps": len(r.t) - 1})
print(json.dumps(out))
`;
  const reference = JSON.parse(runPython(script)) as { y: number[]; evaluations: number; steps: number }[];
  const spans = [
    [0, 5],
    [1, 0.001],
  ];
  spans.forEach(([t0, t1], k) => {
    tidy(() => {
      const result = integrateRk45(testSystem, t0, t1, [tensor(new Float64Array([1, 0.5]), [1, 2])], { rtol: 1e-6, atol: 1e-8 });
      assert.equal(result.acceptedSteps, reference[k].steps, `accepted steps from ${t0} to ${t1}`);
      assert.equal(result.evaluations, reference[k].evaluations, `evaluations from ${t0} to ${t1}`);
      const y = result.y[0].toFloat64();
      for (let i = 0; i < 2; i++) assert.ok(Math.abs(y[i] - reference[k].y[i]) < 1e-12, `y[${i}](${t1}) = ${y[i]}, scipy ${reference[k].y[i]}`);
    });
  });
});

test("PC sampler rejects too few VP steps", () => {
  // alpha = 1 - beta(1) dt is negative below betaMax (1 - timeMin) = 19.98 steps.
  const sde = createSde("VP");
  const model = new GaussianScoreModel(sde, dataMean, dataCovariance);
  tidy(() => {
    const condition = zeros([4]);
    assert.throws(() => samplePredictorCorrector(model, sde, [4], condition, { steps: 10 }), /10 steps are too few for the VP SDE.*use more than 19 steps/);
    const result = samplePredictorCorrector(model, sde, [4], condition, { steps: 20 });
    assert.ok(Array.from(result.samples.toFloat64()).every(Number.isFinite), "20 VP steps gave non-finite samples");
    const ve = createSde("VE");
    const veSamples = samplePredictorCorrector(new GaussianScoreModel(ve, dataMean, dataCovariance), ve, [4], condition, { steps: 5 }).samples;
    assert.ok(Array.from(veSamples.toFloat64()).every(Number.isFinite), "5 VE steps gave non-finite samples");
  });
});

test("samplers free U-Net tensors", () => {
  const sde = createSde("subVP");
  const network = new UNetScoreModel(
    { dims: 1, inputShape: [1, 16], channels: [4, 8], kernel: 3, pooling: [2], embedding: 8, dropout: 0 },
    sde,
    new Generator(12),
  );
  network.eval();
  const condition = tensor(new Float32Array([0.2, 0.8]), [2]);
  const before = liveTensors();
  const pc = samplePredictorCorrector(network, sde, [1, 16], condition, { steps: 25, generator: new Generator(1) });
  const ode = sampleProbabilityFlow(network, sde, [1, 16], condition, { method: "rk45", rtol: 1e-3, atol: 1e-3, generator: new Generator(1) });
  assert.deepEqual(pc.samples.shape, [2, 1, 16]);
  assert.deepEqual(ode.samples.shape, [2, 1, 16]);
  assert.equal(liveTensors(), before + 2, "tensors other than the two results left alive");
  pc.samples.dispose();
  ode.samples.dispose();
  assert.equal(liveTensors(), before);
  condition.dispose();
  network.dispose();
});
