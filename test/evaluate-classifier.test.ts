import { test } from "node:test";
import * as assert from "node:assert/strict";

import { trainClassifier } from "../src/evaluate/classifier";
import { Generator, liveTensors, randn, tensor, tidy } from "../src/torch";

const options = { hidden: 64, maxEpochs: 20, patience: 3, batchSize: 200, learningRate: 1e-3 };

/** Standard deviation of the test AUC of an uninformative classifier (Mann-Whitney null). */
function nullAucStd(positives: number, negatives: number): number {
  return Math.sqrt((positives + negatives + 1) / (12 * positives * negatives));
}

test("classifier on two halves of one sample", () => {
  const before = liveTensors();
  const generator = new Generator(3);
  const result = tidy(() => {
    const sample = randn([4000, 12], { generator });
    return trainClassifier(sample.slice(0, 0, 2000), sample.slice(0, 2000, 4000), options);
  });
  const std = nullAucStd(result.testSize / 2, result.testSize / 2);
  assert.equal(result.testSize, 800);
  assert.ok(Math.abs(result.auc - 0.5) < 3.5 * std, `AUC ${result.auc}, expected 0.5 +- ${(3.5 * std).toFixed(3)}`);
  assert.ok(result.jsd < 0.02, `JSD ${result.jsd}`);
  assert.equal(liveTensors(), before);
});

test("classifier on clearly shifted sample", () => {
  const generator = new Generator(4);
  const [reference, generated] = tidy(() => [randn([2000, 12], { generator }), randn([2000, 12], { generator }).add(1.5)]);
  const result = trainClassifier(reference, generated, options);
  reference.dispose();
  generated.dispose();
  // The Bayes classifier for a 1.5 shift in all 12 unit-variance features reaches
  // AUC = Phi(1.5 sqrt(12) / sqrt(2)) > 0.9999.
  assert.ok(result.auc > 0.99, `AUC ${result.auc}`);
  assert.ok(result.jsd > 0.6, `JSD ${result.jsd}`);
  assert.ok(result.bestEpoch >= 1, `best epoch ${result.bestEpoch}`);
  assert.ok(result.bestEpoch <= result.epochs, `best epoch ${result.bestEpoch} of ${result.epochs}`);
});

test("classifier reaches Bayes AUC", () => {
  const generator = new Generator(5);
  const [reference, generated] = tidy(() => {
    const shift = tensor([1, 0, 0, 0, 0, 0], [1, 6]);
    return [randn([4000, 6], { generator }), randn([4000, 6], { generator }).add(shift)];
  });
  const result = trainClassifier(reference, generated, options);
  reference.dispose();
  generated.dispose();
  // A unit shift in one unit-variance feature: the best possible AUC is Phi(1 / sqrt(2)) = 0.7602.
  const std = nullAucStd(result.testSize / 2, result.testSize / 2);
  assert.ok(Math.abs(result.auc - 0.7602) < 4 * std, `AUC ${result.auc}, expected 0.760 +- ${(4 * std).toFixed(3)}`);
});
