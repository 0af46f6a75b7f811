import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Generator, keep, liveTensors, loadCheckpoint, noGrad, optim, randn, Tensor, tensor, tidy, zeros } from "../src/torch";
import { denoisingScoreMatchingLoss } from "../src/score/loss";
import { parseModelConfig, ModelConfig } from "../src/score/config";
import { createSde } from "../src/score/sde";
import { UNetScoreModel } from "../src/score/unet";
import { ConditionEmbedding } from "../src/score/embedding";
import { evaluateLoss, splitRows, trainScoreModel, TrainingData } from "../src/score/train";

/**
 * Showers of a toy 1D "calorimeter" of 32 cells whose profile is fixed by the condition:
 * condition 0.2 gives a peak at cell 8, condition 0.8 a peak at cell 22, plus 5% noise.
 * Given the condition the data are nearly deterministic, so a trained network predicts the
 * added noise almost exactly and its loss falls far below 1, the loss of a zero score.
 */
function toyData(count: number, seed: number): TrainingData {
  const size = 32;
  let state = seed;
  const uniform = () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 4294967296;
  };
  const condition = new Float32Array(count);
  const x = new Float32Array(count * size);
  for (let i = 0; i < count; i++) {
    const c = i % 2 === 0 ? 0.2 : 0.8;
    condition[i] = c;
    const peak = c < 0.5 ? 8 : 22;
    for (let j = 0; j < size; j++) {
      x[i * size + j] = 2 * Math.exp(-((j - peak) ** 2) / 8) - 0.5 + 0.05 * (uniform() - 0.5);
    }
  }
  return {
    count,
    modelShape: [1, size],
    read: (start, end) => ({ condition: condition.slice(start, end), x: x.slice(start * size, end * size) }),
  };
}

function toyConfig(overrides: Partial<ModelConfig["training"]> = {}): ModelConfig {
  return parseModelConfig(
    {
      dataset: "1-photons",
      network: { channels: [8, 16], kernel: 3, pooling: [2], embedding: 16, dropout: 0 },
      training: { batchSize: 32, learningRate: 3e-3, maxEpochs: 40, lrPatience: 5, earlyStopPatience: 100, seed: 11, ...overrides },
      sampling: { steps: 10 },
    },
    "toy config",
  );
}

function buildModel(config: ModelConfig): UNetScoreModel {
  const sde = createSde("subVP", config.sde);
  return new UNetScoreModel(
    {
      dims: 1,
      inputShape: [1, 32],
      channels: config.network.channels,
      kernel: config.network.kernel,
      pooling: config.network.pooling,
      embedding: config.network.embedding,
      dropout: config.network.dropout,
    },
    sde,
    new Generator(5),
  );
}

function temporaryRun(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), "caloscore-train-"));
}

test("training lowers validation loss below an untrained network's", () => {
  const config = toyConfig({ maxEpochs: 25 });
  const sde = createSde("subVP");
  const data = toyData(640, 1);
  const model = buildModel(config);
  const validation = splitRows(640, 0.2).validationRows;
  const untrained = evaluateLoss(model, sde, data, null, validation, 64, 99);
  const runDir = temporaryRun();
  const state = trainScoreModel({ config, sde, model, data, runDir, log: () => {} });
  const trained = evaluateLoss(model, sde, data, null, validation, 64, 99);
  assert.ok(untrained > 0.8, `untrained loss ${untrained}`);
  assert.ok(trained < 0.35, `trained loss ${trained}`);
  assert.equal(state.epoch, 25);
  assert.ok(fs.existsSync(path.join(runDir, "best.safetensors")));
  assert.ok(fs.existsSync(path.join(runDir, "last.json")));
  model.dispose();
});

test("resumed training repeats an uninterrupted run exactly", () => {
  const config = toyConfig({ maxEpochs: 3, ema: 0.9 });
  const sde = createSde("subVP");
  const data = toyData(256, 2);
  const before = liveTensors();

  const straight = buildModel(config);
  const straightDir = temporaryRun();
  trainScoreModel({ config, sde, model: straight, data, runDir: straightDir, log: () => {} });

  const staged = buildModel(config);
  const stagedDir = temporaryRun();
  trainScoreModel({ config, sde, model: staged, data, runDir: stagedDir, epochsThisCall: 1, log: () => {} });
  staged.dispose();
  // A fresh process would build a new model with new random weights; resume must overwrite them.
  const resumed = buildModel(toyConfig({ maxEpochs: 3, seed: 11, ema: 0.9 }));
  tidy(() => resumed.parameters()[0].add_(1));
  const lines: string[] = [];
  const state = trainScoreModel({ config, sde, model: resumed, data, runDir: stagedDir, log: (l) => lines.push(l) });
  assert.match(lines[0], /resumed from .*last\.safetensors after epoch 1/);
  assert.equal(state.epoch, 3);

  const a = straight.stateDict();
  const b = resumed.stateDict();
  for (const [name, tensorA] of a) {
    const valuesA = tensorA.toFloat32();
    const valuesB = b.get(name)!.toFloat32();
    assert.deepEqual(valuesB, valuesA, `parameter ${name} differs after resume`);
  }
  const lastA = tidy(() => JSON.stringify((loadCheckpoint(path.join(straightDir, "last.safetensors")).sidecar as { history: { validationLoss: number }[] }).history.map((h) => h.validationLoss)));
  const lastB = tidy(() => JSON.stringify((loadCheckpoint(path.join(stagedDir, "last.safetensors")).sidecar as { history: { validationLoss: number }[] }).history.map((h) => h.validationLoss)));
  assert.equal(lastB, lastA);
  const bestA = tidy(() => loadCheckpoint(path.join(straightDir, "best.safetensors")).tensors.get("model.encoder.input.conv.weight")!.toFloat32());
  const bestB = tidy(() => loadCheckpoint(path.join(stagedDir, "best.safetensors")).tensors.get("model.encoder.input.conv.weight")!.toFloat32());
  assert.deepEqual(bestB, bestA);
  // The best checkpoint holds the averaged weights, not the last trained ones.
  assert.notDeepEqual(bestA, a.get("encoder.input.conv.weight")!.toFloat32());
  straight.dispose();
  resumed.dispose();
  assert.equal(liveTensors(), before);
});

test("finished training is not repeated", () => {
  const config = toyConfig({ maxEpochs: 1 });
  const sde = createSde("subVP");
  const data = toyData(128, 3);
  const model = buildModel(config);
  const runDir = temporaryRun();
  trainScoreModel({ config, sde, model, data, runDir, log: () => {} });
  const lines: string[] = [];
  const state = trainScoreModel({ config, sde, model, data, runDir, log: (l) => lines.push(l) });
  assert.equal(state.finished, true);
  assert.match(lines.join("\n"), /training already finished \(reached maxEpochs = 1\)/);
  model.dispose();
});

test("config with an unknown key or a wrong type is rejected by name", () => {
  assert.throws(() => parseModelConfig({ dataset: "2", network: { channels: [1], kernel: 3, pooling: [3, 2, 2], embedding: 8, chanels: 3 }, sampling: { steps: 2 }, training: { batchSize: 2 } }, "x.json"), /x\.json: unknown key 'network\.chanels'/);
  assert.throws(() => parseModelConfig({ dataset: "2", network: { channels: [1], kernel: "3", pooling: [3, 2, 2], embedding: 8 }, sampling: { steps: 2 }, training: { batchSize: 2 } }, "x.json"), /key 'network\.kernel' must be an integer, found string "3"/);
  assert.throws(() => parseModelConfig({ dataset: "4" }, "x.json"), /key 'dataset' must be one of/);
  assert.throws(() => parseModelConfig({ dataset: "2", network: { channels: [1], kernel: 3, pooling: [3, 2, 2], embedding: 8, positionEmbedding: "yes" }, sampling: { steps: 2 }, training: { batchSize: 2 } }, "x.json"), /key 'network\.positionEmbedding' must be true or false, found string "yes"/);
  assert.throws(() => parseModelConfig({ dataset: "2", preprocessing: { layerEnergies: true }, network: { channels: [1], kernel: 3, pooling: [3, 2, 2], embedding: 8 }, sampling: { steps: 2 }, training: { batchSize: 2 } }, "x.json"), /x\.json: key 'preprocessing\.layerEnergies' applies to dataset 1 only, found dataset 2/);
  assert.throws(() => parseModelConfig({ dataset: "2", network: { channels: [1], kernel: 3, pooling: [3, 2, 2], embedding: 8 }, sampling: { steps: 2 }, training: { batchSize: 2, energyEntryWeight: 5 } }, "x.json"), /x\.json: key 'training\.energyEntryWeight' applies to dataset 1 only, found dataset 2/);
  assert.throws(() => parseModelConfig({ dataset: "1-photons", network: { channels: [1], kernel: 3, pooling: [4], embedding: 8 }, sampling: { steps: 2 }, training: { batchSize: 2, energyEntryWeight: 0 } }, "x.json"), /x\.json: key 'training\.energyEntryWeight' must be positive, found 0/);
});

test("loss is linear in entry weights", () => {
  // A fixed linear score and the same noise stream for every call: the weighted loss must be
  // the weighted sum of the per-entry losses, and weights of 1 must give the unweighted loss.
  const sde = createSde("subVP");
  const model = { score: (x: Tensor) => x.mul(-0.5) };
  const x0 = keep(randn([6, 1, 8], { generator: new Generator(2) }));
  const condition = keep(tensor(new Float32Array(6).fill(0.5), [6]));
  const lossWith = (weights?: number[]): number =>
    tidy(() => denoisingScoreMatchingLoss(model, sde, x0, condition, new Generator(5), weights && tensor(Float32Array.from(weights), [1, 8])).item());
  const weights = [0.5, 1, 1.5, 2, 0, 3, 1, 0.25];
  const perEntry = weights.map((_, k) => lossWith(weights.map((__, j) => (j === k ? 1 : 0))));
  const expected = weights.reduce((sum, weight, k) => sum + weight * perEntry[k], 0);
  assert.ok(Math.abs(lossWith(weights) - expected) < 1e-5 * expected, `weighted ${lossWith(weights)} vs ${expected}`);
  const unweighted = lossWith();
  assert.ok(Math.abs(lossWith(new Array<number>(8).fill(1)) - unweighted) < 1e-6 * unweighted, `weights of 1 vs none`);
  x0.dispose();
  condition.dispose();
});

test("position embedding breaks translation symmetry", () => {
  const sde = createSde("subVP");
  const build = (positionEmbedding: boolean) =>
    new UNetScoreModel({ dims: 1, inputShape: [1, 64], channels: [4, 8], kernel: 3, pooling: [2], embedding: 8, dropout: 0, positionEmbedding }, sde, new Generator(3)).eval();
  const plain = build(false);
  const positioned = build(true);
  const named = new Map(positioned.namedParameters());
  const position = named.get("encoder.position");
  assert.ok(position !== undefined, "encoder.position is a parameter");
  assert.deepEqual(position.shape, [1, 4, 64]);
  assert.equal(positioned.parameterCount() - plain.parameterCount(), 4 * 64);
  noGrad(() => tidy(() => position.copy_(randn([1, 4, 64], { generator: new Generator(4) }))));

  // On a uniform input, a convolution network without position information gives every entry
  // away from the zero-padded edges the same output. With the embedding the outputs differ.
  const interiorSpread = (model: UNetScoreModel): number =>
    noGrad(() =>
      tidy(() => {
        const out = model.noisePrediction(zeros([1, 1, 64]), tensor(new Float32Array([0.5]), [1]), tensor(new Float32Array([0.5]), [1]));
        const interior = out.slice(2, 24, 40);
        return interior.max().sub(interior.min()).item();
      }),
    );
  assert.ok(interiorSpread(plain) < 1e-6, `without position embedding: spread ${interiorSpread(plain)}`);
  assert.ok(interiorSpread(positioned) > 1e-3, `with position embedding: spread ${interiorSpread(positioned)}`);
  plain.dispose();
  positioned.dispose();
});

test("separate time and energy Fourier scales", () => {
  const embedding = new ConditionEmbedding(256, 16, new Generator(8), 1);
  const buffers = new Map(embedding.namedBuffers());
  // W contains 2 pi scale N(0, 1) draws; the root mean square of 128 draws is within about 20% of scale.
  const spread = (name: string) => tidy(() => buffers.get(name)!.square().mean().sqrt().item()) / (2 * Math.PI);
  const time = spread("time.W");
  const energy = spread("energy.W");
  assert.ok(time > 12, `time scale ${time}`);
  assert.ok(time < 20, `time scale ${time}`);
  assert.ok(energy > 0.75, `energy scale ${energy}`);
  assert.ok(energy < 1.25, `energy scale ${energy}`);
  embedding.dispose();
});

test("paper configs load", () => {
  for (const name of ["dataset1", "dataset2", "dataset3", "dataset2-cylindrical", "dataset2-small", "dataset3-small", "demo"]) {
    const file = path.resolve(__dirname, "../../configs", `${name}.json`);
    const config = parseModelConfig(JSON.parse(fs.readFileSync(file, "utf8")), file);
    assert.equal(config.network.channels.length, 3, name);
  }
});

test("weight average warms its decay up", () => {
  const param = tensor(new Float64Array([0]), [1], { dtype: "float64" });
  const ema = new optim.Ema([param], 0.999, true);
  let expected = 0;
  for (let n = 0; n < 50; n++) {
    param.fill_(n + 1);
    ema.update();
    const decay = Math.min(0.999, (1 + n) / (10 + n));
    expected = decay * expected + (1 - decay) * (n + 1);
    assert.ok(Math.abs(ema.shadow[0].item() - expected) < 1e-9, `update ${n + 1}: ${ema.shadow[0].item()} vs ${expected}`);
  }
  assert.equal(ema.updates, 50);
  ema.dispose();
  param.dispose();
});

test("non-finite loss stops training and keeps the last good checkpoint", () => {
  const config = toyConfig({ maxEpochs: 5 });
  const sde = createSde("subVP");
  const data = toyData(256, 4);
  const model = buildModel(config);
  const runDir = temporaryRun();
  let poisoned = false;
  assert.throws(
    () =>
      trainScoreModel({
        config,
        sde,
        model,
        data,
        runDir,
        log: () => {},
        onProgress: (event) => {
          // Corrupt a weight early in epoch 2, as a diverging run would.
          if (event.epoch === 2 && !poisoned) {
            model.parameters()[0].fill_(NaN);
            poisoned = true;
          }
        },
      }),
    /training loss became NaN in epoch 2 .*last\.safetensors keeps the last good state/,
  );
  const state = tidy(() => {
    const { tensors, sidecar } = loadCheckpoint(path.join(runDir, "last.safetensors"));
    for (const [name, t] of tensors) assert.ok(t.isfinite().logicalNot().sum().item() === 0, `${name} is finite`);
    return sidecar as { epoch: number };
  });
  assert.equal(state.epoch, 1);
  model.dispose();
});

test("validation rows are spread evenly over the file", () => {
  const split = splitRows(1000, 0.2);
  assert.equal(split.validationCount, 200);
  assert.deepEqual(split.validationRows.slice(0, 3), [4, 9, 14]);
  assert.equal(split.validationRows[199], 999);
  const small = splitRows(7, 0.3);
  assert.deepEqual(small.validationRows, [3, 6]);
  assert.throws(() => splitRows(2, 0.2), /leaves no validation shower among 2/);
});
