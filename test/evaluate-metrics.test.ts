import { test } from "node:test";
import * as assert from "node:assert/strict";

import { symmetricEigenvalues } from "../src/evaluate/linalg";
import {
  fitNonNegativeLine,
  fpd,
  frechetDistance,
  histogram,
  histogramEdges,
  kpd,
  mmdPolynomialUnbiased,
  percentile,
  rocAuc,
  separationPower,
  wasserstein1,
  weightedWasserstein1,
} from "../src/evaluate/metrics";
import { tensor } from "../src/torch";
import { runPython } from "./helpers/caloPython";

/** Deterministic standard normal samples (Box-Muller on a linear congruential generator). */
function gaussian(count: number, seed: number): Float64Array {
  let state = seed >>> 0;
  const uniform = () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return (state + 0.5) / 4294967296;
  };
  const out = new Float64Array(count);
  for (let i = 0; i < count; i++) out[i] = Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
  return out;
}

function closeTo(actual: number, expected: number, tolerance: number, label: string): void {
  assert.ok(Math.abs(actual - expected) <= tolerance, `${label}: expected ${expected} +- ${tolerance}, found ${actual}`);
}

test("EMD of shifted sample equals shift", () => {
  const a = gaussian(1000, 1);
  for (const shift of [0.25, 3]) {
    closeTo(wasserstein1(a, a.map((x) => x + shift)), shift, 1e-12, `shift ${shift}`);
  }
  closeTo(wasserstein1(a, a), 0, 0, "identical samples");
});

test("EMD matches numpy on unequal sizes", () => {
  const a = Array.from(gaussian(301, 2));
  const b = Array.from(gaussian(517, 3)).map((x) => 1.5 * x + 0.2);
  // scipy.stats.wasserstein_distance's algorithm, in numpy.
  const script = `
import sys, json
import numpy as np
u, v = (np.array(x) for x in json.loads(sys.argv[1]))
allv = np.sort(np.concatenate([u, v]))
deltas = np.diff(allv)
uc = np.searchsorted(np.sort(u), allv[:-1], 'right') / len(u)
vc = np.searchsorted(np.sort(v), allv[:-1], 'right') / len(v)
print(np.sum(np.abs(uc - vc) * deltas))
`;
  const expected = Number(runPython(script, [JSON.stringify([a, b])]));
  closeTo(wasserstein1(a, b), expected, 1e-12 * Math.max(1, expected), "EMD");
});

test("separation power closed forms", () => {
  const edges = histogramEdges([0, 10], { bins: 10 });
  const low = histogram([0.5, 1.5, 1.6], edges);
  const high = histogram([8.5, 9.5], edges);
  closeTo(separationPower(low, high), 1, 1e-15, "disjoint");
  closeTo(separationPower(low, low), 0, 0, "identical");
  // h1 = (1/2, 1/2), h2 = (1, 0): 1/2 ((1/2)^2 / (3/2) + (1/2)^2 / (1/2)) = 1/3.
  closeTo(separationPower(Float64Array.of(5, 5), Float64Array.of(7, 0)), 1 / 3, 1e-15, "half overlap");
});

test("histogram matches numpy including edges", () => {
  const values = [0, 0.1, 0.5, 0.99, 1, 2, -1, NaN];
  const edges = histogramEdges([0, 1], { bins: 4 });
  assert.deepEqual(Array.from(histogram(values, edges)), [2, 0, 1, 2]);
  const logEdges = histogramEdges([1, 1000], { bins: 3, scale: "log" });
  closeTo(logEdges[1], 10, 1e-12, "log edge 1");
  closeTo(logEdges[2], 100, 1e-10, "log edge 2");
});

test("AUC from ranks with ties", () => {
  closeTo(rocAuc([3, 4, 5], [0, 1, 2]), 1, 0, "separated");
  closeTo(rocAuc([0, 1, 2], [3, 4, 5]), 0, 0, "reversed");
  // Pairs (p, n): (1,0) win, (1,1) tie, (1,2) loss, (2,0) win, (2,1) win, (2,2) tie -> 4 / 6.
  closeTo(rocAuc([1, 2], [0, 1, 2]), 4 / 6, 1e-15, "ties");
  const a = gaussian(4000, 5);
  const b = gaussian(4000, 6).map((x) => x + 1);
  // Two unit Gaussians one apart: AUC = Phi(1 / sqrt(2)) = 0.76025.
  closeTo(rocAuc(b, a), 0.760250, 0.015, "Gaussian shift");
});

test("symmetric eigenvalues match numpy", () => {
  const n = 30;
  const g = gaussian(n * n, 7);
  const a = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) a[i * n + j] = g[i * n + j] + g[j * n + i];
  const expected = JSON.parse(
    runPython(`import sys, json; import numpy as np; a = np.array(json.loads(sys.argv[1])).reshape(${n}, ${n}); print(json.dumps(np.linalg.eigvalsh(a).tolist()))`, [
      JSON.stringify(Array.from(a)),
    ]),
  ) as number[];
  const found = symmetricEigenvalues(a, n);
  for (let i = 0; i < n; i++) closeTo(found[i], expected[i], 1e-10, `eigenvalue ${i}`);
});

test("Frechet distance closed form and numpy", () => {
  // Diagonal covariances: |mu1 - mu2|^2 + sum (sqrt(s1) - sqrt(s2))^2.
  const mu1 = Float64Array.of(0, 1, 2);
  const mu2 = Float64Array.of(1, 1, 0);
  const s1 = Float64Array.of(1, 0, 0, 0, 4, 0, 0, 0, 9);
  const s2 = Float64Array.of(4, 0, 0, 0, 4, 0, 0, 0, 0);
  // A zero eigenvalue found to float64 resolution (~1e-14) has a square root of ~1e-7.
  closeTo(frechetDistance(mu1, s1, mu2, s2), 1 + 4 + (1 + 0 + 9), 1e-6, "diagonal");

  // Full covariances against numpy's eigh-based matrix square root.
  const n = 8;
  const g1 = gaussian(n * n, 11);
  const g2 = gaussian(n * n, 12);
  const sigma1 = new Float64Array(n * n);
  const sigma2 = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      for (let k = 0; k < n; k++) {
        sigma1[i * n + j] += g1[i * n + k] * g1[j * n + k];
        sigma2[i * n + j] += g2[i * n + k] * g2[j * n + k];
      }
    }
  }
  const m1 = gaussian(n, 13);
  const m2 = gaussian(n, 14);
  const script = `
import sys, json
import numpy as np
m1, s1, m2, s2 = (np.array(x) for x in json.loads(sys.argv[1]))
n = len(m1); s1 = s1.reshape(n, n); s2 = s2.reshape(n, n)
w, v = np.linalg.eigh(s1)
root1 = v @ np.diag(np.sqrt(np.clip(w, 0, None))) @ v.T
tr = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(root1 @ s2 @ root1), 0, None)))
print(np.sum((m1 - m2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr)
`;
  const expected = Number(runPython(script, [JSON.stringify([m1, sigma1, m2, sigma2].map((x) => Array.from(x)))]));
  closeTo(frechetDistance(m1, sigma1, m2, sigma2), expected, 1e-9 * Math.abs(expected), "full covariance");
});

test("bounded line fit and its error", () => {
  // Exact line y = 2 + 3x: zero residual, zero error.
  const x = Float64Array.of(1, 2, 3, 4);
  const exact = fitNonNegativeLine(x, x.map((v) => 2 + 3 * v));
  closeTo(exact.intercept, 2, 1e-12, "intercept");
  closeTo(exact.slope, 3, 1e-12, "slope");
  closeTo(exact.interceptError, 0, 1e-6, "error");
  // Negative free intercept: the bound keeps it at zero.
  const bounded = fitNonNegativeLine(x, x.map((v) => -1 + v));
  assert.equal(bounded.intercept, 0);
  // Noisy line: error = sqrt(sxx / det * SSR / (n - 2)) from the free fit.
  const y = Float64Array.of(1.1, 1.9, 3.2, 3.8);
  const fit = fitNonNegativeLine(x, y);
  const script = `
import numpy as np
x = np.array([1, 2, 3, 4.]); y = np.array([1.1, 1.9, 3.2, 3.8])
J = np.stack([np.ones(4), x], 1); p = np.linalg.lstsq(J, y, rcond=None)[0]
r = y - J @ p; cov = np.linalg.inv(J.T @ J) * (r @ r) / 2
print(p[0], np.sqrt(cov[0, 0]))
`;
  const [intercept, error] = runPython(script).trim().split(/\s+/).map(Number);
  closeTo(fit.intercept, intercept, 1e-12, "noisy intercept");
  closeTo(fit.interceptError, error, 1e-12, "noisy error");
});

test("percentile matches numpy linear interpolation", () => {
  const sorted = Float64Array.of(1, 2, 4, 8);
  closeTo(percentile(sorted, 50), 3, 1e-15, "median");
  closeTo(percentile(sorted, 16.275), 1 + 0.48825, 1e-12, "low");
});

function featureMatrix(columns: number, rows: number, seed: number, shift: number): { values: Float32Array; rows: number; columns: number } {
  const g = gaussian(rows * columns, seed);
  return { values: Float32Array.from(g, (v, i) => v + (i % columns === 0 ? shift : 0) + 2), rows, columns };
}

test("FPD of Gaussians recovers the mean shift", () => {
  const reference = featureMatrix(4, 6000, 21, 0);
  const same = featureMatrix(4, 6000, 22, 0);
  const shifted = featureMatrix(4, 6000, 23, 1);
  const options = { normalise: false, minSamples: 1000, maxSamples: 5000, batches: 5, points: 5 };
  const sameDistance = fpd(reference, same, options);
  const shiftedDistance = fpd(reference, shifted, options);
  // Equal unit Gaussians: 0; mean shifted by 1 in one feature: 1.
  closeTo(sameDistance.value, 0, 0.01, "same distribution");
  closeTo(shiftedDistance.value, 1, 0.08, "shifted");
  assert.ok(shiftedDistance.error >= 0, `error ${shiftedDistance.error}`);
  assert.ok(shiftedDistance.error < 0.1, `error ${shiftedDistance.error}`);
});

test("KPD near zero for same, positive for shifted", () => {
  const reference = featureMatrix(4, 3000, 31, 0);
  const same = featureMatrix(4, 3000, 32, 0);
  const shifted = featureMatrix(4, 3000, 33, 1);
  const options = { batches: 10, batchSize: 1000 };
  const sameDistance = kpd(reference, same, options);
  const shiftedDistance = kpd(reference, shifted, options);
  assert.ok(Math.abs(sameDistance.value) < 3 * sameDistance.error + 1e-4, `same: ${sameDistance.value} +- ${sameDistance.error}`);
  assert.ok(shiftedDistance.value > 10 * shiftedDistance.error, `shifted: ${shiftedDistance.value} +- ${shiftedDistance.error}`);
});

test("polynomial MMD matches numpy", () => {
  const x = featureMatrix(3, 50, 41, 0);
  const y = featureMatrix(3, 40, 42, 0.5);
  for (const degree of [3, 4]) {
    const script = `
import sys, json
import numpy as np
x, y = (np.array(v).reshape(-1, 3) for v in json.loads(sys.argv[1]))
d = 3
k = lambda a, b: (a @ b.T / d + 1) ** ${degree}
kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
n, m = len(x), len(y)
print((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean())
`;
    const expected = Number(runPython(script, [JSON.stringify([Array.from(x.values), Array.from(y.values)])]));
    // kpd draws batches with replacement, so the estimator itself is compared.
    const found = mmdPolynomialUnbiased(tensor(x.values, [50, 3]), tensor(y.values, [40, 3]), degree);
    closeTo(found, expected, 1e-5 * Math.max(1, Math.abs(expected)), `MMD degree ${degree}`);
  }
});

test("weighted EMD equals sample EMD", () => {
  // Weights that are counts of integer positions give the EMD of the expanded samples.
  const positions = [0, 1, 2, 3, 5];
  const countsA = [3, 0, 2, 1, 4];
  const countsB = [1, 2, 2, 0, 1];
  const expand = (counts: number[]) => positions.flatMap((p, i) => Array<number>(counts[i]).fill(p));
  const expected = wasserstein1(expand(countsA), expand(countsB));
  closeTo(weightedWasserstein1(positions, countsA, countsB), expected, 1e-12, "weighted");
  closeTo(weightedWasserstein1([0, 1], [1, 0], [0, 2]), 1, 1e-15, "point masses");
});
