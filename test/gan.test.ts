import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { DatasetName, voxelCounts } from "../src/calo/binning";
import { initHdf5, openShowerFile } from "../src/calo/hdf5";
import { energyCondition, inversePreprocess } from "../src/calo/preprocess";
import { cat, configureThreads, Generator, liveTensors, loadCheckpoint, noGrad, rand, randn, Tensor, tensor, tidy } from "../src/torch";
import { ModelConfig, parseModelConfig } from "../src/score/config";
import { readRunInfo } from "../src/score/run";
import { TrainingData } from "../src/score/train";
import { trainGanCommand } from "../src/gan/command";
import { CriticNetwork, GeneratorNetwork, UNetCritic } from "../src/gan/model";
import { createGanNetworks, loadGanRun } from "../src/gan/run";
import { gradientPenalty, GanTrainingState, trainGan } from "../src/gan/train";
import { simulateToFile } from "../src/simulate/run";

// One intra-op thread: test files run in parallel processes, and libtorch's thread pool slows
// down many times over when it competes with them for the cores.
configureThreads(1);

/** Dense layer whose weights are drawn in the given dtype (the engine's nn.Linear is float32 only). */
class DenseLayer {
  constructor(
    readonly weight: Tensor,
    readonly bias: Tensor,
  ) {}
  forward(x: Tensor): Tensor {
    return x.matmul(this.weight.transpose(0, 1)).add(this.bias);
  }
}

function mlpLayers(owner: { addParam(name: string, t: Tensor): Tensor }, widths: number[], dtype: "float32" | "float64", generator: Generator): DenseLayer[] {
  const layers: DenseLayer[] = [];
  for (let i = 0; i + 1 < widths.length; i++) {
    const bound = 1 / Math.sqrt(widths[i]);
    const weight = owner.addParam(`dense${i}.weight`, tidy(() => rand([widths[i + 1], widths[i]], { dtype, generator }).mul(2 * bound).sub(bound)));
    const bias = owner.addParam(`dense${i}.bias`, tidy(() => rand([widths[i + 1]], { dtype, generator }).mul(2 * bound).sub(bound)));
    layers.push(new DenseLayer(weight, bias));
  }
  return layers;
}

/** Multilayer perceptron critic on [x, condition] with swish activations. */
class MlpCritic extends CriticNetwork {
  private readonly layers: DenseLayer[];
  constructor(
    inputs: number,
    hidden: number[],
    dtype: "float32" | "float64",
    seed: number,
    private readonly outputScale = 1,
  ) {
    super();
    this.layers = mlpLayers({ addParam: (name, t) => this.param(name, t) }, [inputs + 1, ...hidden, 1], dtype, new Generator(seed));
  }
  forward(x: Tensor, condition: Tensor): Tensor {
    return tidy(() => {
      let h = cat([x.flatten(1), condition.reshape([-1, 1])], 1);
      this.layers.forEach((layer, i) => {
        h = layer.forward(h);
        if (i + 1 < this.layers.length) h = h.silu();
      });
      return h.reshape([x.shape[0]]).mul(this.outputScale);
    });
  }
}

/** Multilayer perceptron generator on [noise, condition] with swish activations. */
class MlpGenerator extends GeneratorNetwork {
  private readonly layers: DenseLayer[];
  constructor(
    readonly noiseDim: number,
    readonly outputShape: number[],
    hidden: number[],
    seed: number,
  ) {
    super();
    const outputs = outputShape.reduce((a, b) => a * b, 1);
    this.layers = mlpLayers({ addParam: (name, t) => this.param(name, t) }, [noiseDim + 1, ...hidden, outputs], "float32", new Generator(seed));
  }
  forward(noise: Tensor, condition: Tensor): Tensor {
    return tidy(() => {
      let h = cat([noise, condition.reshape([-1, 1])], 1);
      this.layers.forEach((layer, i) => {
        h = layer.forward(h);
        if (i + 1 < this.layers.length) h = h.silu();
      });
      return h.reshape([noise.shape[0], ...this.outputShape]);
    });
  }
}

/** Per-sample Euclidean norms of the critic's input gradient, by central differences in every input entry. */
function finiteDifferenceGradientNorms(critic: CriticNetwork, x: Tensor, condition: Tensor, step: number): number[] {
  return noGrad(() =>
    tidy(() => {
      const batch = x.shape[0];
      const entries = x.numel / batch;
      const flat = x.reshape([batch, entries]);
      const squares = new Array<number>(batch).fill(0);
      for (let j = 0; j < entries; j++) {
        const shift = tidy(() => {
          const delta = new Float64Array(batch * entries);
          for (let i = 0; i < batch; i++) delta[i * entries + j] = step;
          return tensor(delta, [batch, entries], { dtype: x.dtype });
        });
        // The critic scores each sample alone (no batch statistics), so one shifted batch gives the
        // derivative in entry j for every sample at once.
        const up = critic.forward(flat.add(shift).reshape(x.shape), condition).to({ dtype: "float64" }).data() as Float64Array;
        const down = critic.forward(flat.sub(shift).reshape(x.shape), condition).to({ dtype: "float64" }).data() as Float64Array;
        for (let i = 0; i < batch; i++) squares[i] += ((up[i] - down[i]) / (2 * step)) ** 2;
      }
      return squares.map(Math.sqrt);
    }),
  );
}

function penaltyFromNorms(norms: number[]): number {
  return norms.reduce((sum, n) => sum + (n - 1) ** 2, 0) / norms.length;
}

test("gradient penalty matches finite differences in float64", () => {
  const before = liveTensors();
  // The output scale puts the input-gradient norms on both sides of 1.
  const critic = new MlpCritic(6, [16, 16], "float64", 3, 12);
  tidy(() => {
    const x = randn([5, 2, 3], { dtype: "float64", generator: new Generator(8) }).mul(3);
    const condition = rand([5], { dtype: "float64", generator: new Generator(9) });
    const penalty = gradientPenalty(critic, x, condition).item();
    const norms = finiteDifferenceGradientNorms(critic, x, condition, 1e-6);
    const expected = penaltyFromNorms(norms);
    assert.ok(Math.abs(penalty - expected) < 1e-8 * Math.max(1, expected), `penalty ${penalty}, finite differences ${expected}`);
    assert.ok(Math.min(...norms) < 1, `degenerate test: every gradient norm is 1 or more (${norms})`);
    assert.ok(Math.max(...norms) > 1, `degenerate test: every gradient norm is 1 or less (${norms})`);
  });

  // The derivative of the penalty with respect to a critic weight needs the second-order graph.
  tidy(() => {
    const x = randn([4, 2, 3], { dtype: "float64", generator: new Generator(10) });
    const condition = rand([4], { dtype: "float64", generator: new Generator(11) });
    critic.zeroGrad();
    gradientPenalty(critic, x, condition).backward();
    const weight = critic.parameters()[0];
    const analytic = weight.grad!.data() as Float64Array;
    const step = 1e-6;
    for (const index of [0, 7, 23, 60]) {
      const original = (weight.data() as Float64Array)[index];
      const at = (value: number) => {
        noGrad(() => {
          const values = weight.data() as Float64Array;
          values[index] = value;
          weight.copy_(tensor(values, weight.shape, { dtype: "float64" }));
        });
        return gradientPenalty(critic, x, condition).item();
      };
      const up = at(original + step);
      const down = at(original - step);
      at(original);
      const numeric = (up - down) / (2 * step);
      assert.ok(Math.abs(analytic[index] - numeric) < 1e-6 * Math.max(1, Math.abs(numeric)), `weight ${index}: autograd ${analytic[index]}, finite differences ${numeric}`);
    }
    critic.zeroGrad();
  });
  critic.dispose();
  assert.equal(liveTensors(), before);
});

test("gradient penalty of the U-Net critic matches finite differences", () => {
  const before = liveTensors();
  const config = { dims: 1 as const, inputShape: [1, 10], channels: [4, 8], kernel: 3, pooling: [2], embedding: 8, dropout: 0 };
  const critic = new UNetCritic(config, new Generator(4));
  // A larger output layer puts the input-gradient norms of the untrained critic (about 1e-3) near 1.
  const outputWeight = critic.namedParameters().find(([name]) => name === "dense.weight")![1];
  noGrad(() => outputWeight.mul_(800));
  tidy(() => {
    const x = randn([3, 1, 10], { generator: new Generator(12) }).mul(4);
    const condition = rand([3], { generator: new Generator(13) });
    const penalty = gradientPenalty(critic, x, condition).item();
    const norms = finiteDifferenceGradientNorms(critic, x, condition, 1e-2);
    const expected = penaltyFromNorms(norms);
    assert.ok(Math.abs(penalty - expected) < 2e-3 * Math.max(1, expected), `penalty ${penalty}, finite differences ${expected} (norms ${norms})`);
    assert.ok(Math.min(...norms) < 1, `degenerate test: every gradient norm is 1 or more (${norms})`);
    assert.ok(Math.max(...norms) > 1, `degenerate test: every gradient norm is 1 or less (${norms})`);
  });
  critic.dispose();
  assert.equal(liveTensors(), before);
});

/**
 * Two-dimensional toy data: x ~ N(mean(c), 0.1^2) with mean(0.2) = (-0.9, 0.9) and
 * mean(0.8) = (0.9, -0.9); rows alternate between the two conditions.
 */
const toyMeans: Record<string, [number, number]> = { "0.2": [-0.9, 0.9], "0.8": [0.9, -0.9] };

function toyData(count: number, seed: number): TrainingData {
  const generator = new Generator(seed);
  const noise = tidy(() => randn([count, 2], { generator }).mul(0.1).toFloat32());
  const condition = new Float32Array(count);
  const x = new Float32Array(count * 2);
  for (let i = 0; i < count; i++) {
    const c = i % 2 === 0 ? 0.2 : 0.8;
    const mean = toyMeans[c.toFixed(1)];
    condition[i] = c;
    x[2 * i] = mean[0] + noise[2 * i];
    x[2 * i + 1] = mean[1] + noise[2 * i + 1];
  }
  return {
    count,
    modelShape: [2],
    read: (start, end) => ({ condition: condition.slice(start, end), x: x.slice(2 * start, 2 * end) }),
  };
}

function toyConfig(gan: Partial<ModelConfig["gan"]>, seed = 21): ModelConfig {
  return parseModelConfig(
    {
      dataset: "1-photons",
      network: { channels: [4], kernel: 3, pooling: [2], embedding: 8 },
      training: { batchSize: 64, seed },
      sampling: { steps: 2 },
      gan: { noiseDim: 4, criticSteps: 5, learningRate: 1e-3, gradientPenalty: 10, maxEpochs: 2, ...gan },
    },
    "toy config",
  );
}

function toyNetworks(): { generator: MlpGenerator; critic: MlpCritic } {
  return { generator: new MlpGenerator(4, [2], [16, 16], 5), critic: new MlpCritic(2, [32, 32], "float32", 6) };
}

function temporaryDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `caloscore-gan-${prefix}-`));
}

/** Mean of 2000 generated points for one condition, with fixed noise. */
function generatedMean(generator: GeneratorNetwork, condition: number): [number, number] {
  const samples = noGrad(() =>
    tidy(() => {
      const c = tensor(new Float32Array(2000).fill(condition), [2000]);
      const noise = rand([2000, generator.noiseDim], { generator: new Generator(30) }).mul(2).sub(1);
      return generator.forward(noise, c).toFloat32();
    }),
  );
  const mean: [number, number] = [0, 0];
  for (let i = 0; i < 2000; i++) {
    mean[0] += samples[2 * i] / 2000;
    mean[1] += samples[2 * i + 1] / 2000;
  }
  return mean;
}

test("toy WGAN-GP moves the generated mean with the condition", () => {
  const before = liveTensors();
  const { generator, critic } = toyNetworks();
  const averagedEpochs = 60;
  const config = toyConfig({ maxEpochs: 200, learningRate: 2e-3, criticSteps: 5 });
  config.training.batchSize = 128;
  const data = toyData(2560, 1);
  const runDir = temporaryDir("toy");
  const untrained = Object.keys(toyMeans).map((c) => generatedMean(generator, Number(c)));

  trainGan({ config, generator, critic, data, runDir, epochsThisCall: config.gan.maxEpochs - averagedEpochs, log: () => {} });
  // With a fixed learning rate the generated means keep circling the data means (by a few tenths
  // here), so the check uses their average over the last epochs.
  const sums: Record<string, [number, number]> = { "0.2": [0, 0], "0.8": [0, 0] };
  for (let epoch = 0; epoch < averagedEpochs; epoch++) {
    trainGan({ config, generator, critic, data, runDir, epochsThisCall: 1, log: () => {} });
    for (const c of Object.keys(toyMeans)) {
      const mean = generatedMean(generator, Number(c));
      sums[c][0] += mean[0] / averagedEpochs;
      sums[c][1] += mean[1] / averagedEpochs;
    }
  }
  for (const [c, mean] of Object.entries(toyMeans)) {
    for (const axis of [0, 1]) {
      const generated = sums[c][axis];
      assert.ok(Math.abs(generated - mean[axis]) < 0.25, `condition ${c}, axis ${axis}: generated mean ${generated}, data mean ${mean[axis]}`);
    }
  }
  // The untrained generator is far from both targets, so the check above needs training to pass.
  for (const [index, c] of Object.keys(toyMeans).entries()) {
    const distance = Math.hypot(untrained[index][0] - toyMeans[c][0], untrained[index][1] - toyMeans[c][1]);
    assert.ok(distance > 0.5, `untrained generator already within ${distance} of the data mean for condition ${c}`);
  }
  generator.dispose();
  critic.dispose();
  assert.equal(liveTensors(), before);
});

/** Random rows of shape [1, 8] whose level follows the condition, for the U-Net networks. */
function rowData(count: number, seed: number): TrainingData {
  const values = tidy(() => randn([count, 8], { generator: new Generator(seed) }).toFloat32());
  const condition = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    condition[i] = (i % 5) / 4;
    for (let j = 0; j < 8; j++) values[i * 8 + j] = 0.3 * values[i * 8 + j] + 2 * condition[i] - 1;
  }
  return {
    count,
    modelShape: [1, 8],
    read: (start, end) => ({ condition: condition.slice(start, end), x: values.slice(8 * start, 8 * end) }),
  };
}

function tinyUNetNetworks(config: ModelConfig): { generator: GeneratorNetwork; critic: CriticNetwork } {
  return createGanNetworks(config, [1, 8]);
}

function readState(runDir: string): GanTrainingState {
  return tidy(() => loadCheckpoint(path.join(runDir, "last.safetensors")).sidecar as GanTrainingState);
}

test("resumed GAN training repeats an uninterrupted run exactly", () => {
  const before = liveTensors();
  // 40 training rows in batches of 8 give 5 critic updates per epoch, so with 3 critic updates per
  // generator update the cadence crosses the epoch boundary where the run is resumed.
  const config = toyConfig({ maxEpochs: 3, criticSteps: 3, learningRate: 1e-3 });
  config.network = { ...config.network, channels: [4, 8], pooling: [2], kernel: 3, embedding: 8 };
  config.training.batchSize = 8;
  const data = rowData(50, 3);

  const straight = tinyUNetNetworks(config);
  const straightDir = temporaryDir("straight");
  trainGan({ config, ...straight, data, runDir: straightDir, log: () => {} });

  const staged = tinyUNetNetworks(config);
  const stagedDir = temporaryDir("staged");
  trainGan({ config, ...staged, data, runDir: stagedDir, epochsThisCall: 1, log: () => {} });
  assert.equal(readState(stagedDir).epoch, 1);
  assert.equal(readState(stagedDir).criticUpdates, 5);
  assert.equal(readState(stagedDir).generatorUpdates, 1);
  staged.generator.dispose();
  staged.critic.dispose();

  // A new process builds networks with other weights; resuming must overwrite all of them.
  const resumed = tinyUNetNetworks(config);
  tidy(() => {
    for (const p of [...resumed.generator.parameters(), ...resumed.critic.parameters()]) p.add_(0.5);
  });
  const lines: string[] = [];
  const state = trainGan({ config, ...resumed, data, runDir: stagedDir, log: (line) => lines.push(line) });
  assert.match(lines[0], /resumed from .*last\.safetensors after epoch 1 \(5 critic and 1 generator updates\)/);
  assert.equal(state.epoch, 3);
  assert.equal(state.criticUpdates, 15);
  assert.equal(state.generatorUpdates, 5);
  assert.equal(state.finished, true);

  for (const part of ["generator", "critic"] as const) {
    const a = straight[part].stateDict();
    const b = resumed[part].stateDict();
    assert.ok(a.size > 0);
    for (const [name, tensorA] of a) {
      assert.deepEqual(b.get(name)!.toFloat32(), tensorA.toFloat32(), `${part} tensor ${name} differs after resume`);
    }
  }
  assert.deepEqual(
    readState(stagedDir).history.map((h) => [h.criticLoss, h.generatorLoss, h.gradientPenalty, h.validationWasserstein]),
    readState(straightDir).history.map((h) => [h.criticLoss, h.generatorLoss, h.gradientPenalty, h.validationWasserstein]),
  );

  const again: string[] = [];
  trainGan({ config, ...resumed, data, runDir: stagedDir, log: (line) => again.push(line) });
  assert.match(again.join("\n"), /training already finished \(reached gan\.maxEpochs = 3\)/);

  for (const networks of [straight, resumed]) {
    networks.generator.dispose();
    networks.critic.dispose();
  }
  assert.equal(liveTensors(), before);
});

/** Tiny network settings for one dataset geometry; the shapes follow the preprocessing of that dataset. */
function tinyDatasetConfig(dataset: DatasetName): ModelConfig {
  const flat = dataset.startsWith("1");
  return parseModelConfig(
    {
      dataset,
      layout: "cartesian",
      network: { channels: [4, 8], kernel: flat ? 5 : 3, pooling: flat ? [4] : [3, 2, 2], embedding: 8 },
      training: { batchSize: 6, seed: 2, validationFraction: 0.25 },
      sampling: { steps: 2 },
      gan: { noiseDim: 6, criticSteps: 2, learningRate: 1e-4, gradientPenalty: 10, maxEpochs: 2 },
    },
    `tiny dataset ${dataset} config`,
  );
}

for (const dataset of ["1-photons", "2", "3"] as const) {
  test(`train, resume and sample dataset ${dataset}`, async () => {
    await initHdf5();
    const before = liveTensors();
    const dir = temporaryDir(`ds${dataset}`);
    const dataPath = path.join(dir, "showers.h5");
    await simulateToFile({ dataset, events: 20, seed: 3 }, dataPath, { threads: 1 });
    const config = tinyDatasetConfig(dataset);
    const runDir = path.join(dir, "run");

    const file = openShowerFile(dataPath, { dataset });
    try {
      // A time budget of 0 minutes stops after the first batch and closes epoch 1; the second call resumes.
      assert.equal(await trainGanCommand({ config, file, runDir, minutes: 0 }), 0);
      assert.deepEqual([readState(runDir).epoch, readState(runDir).criticUpdates], [1, 1]);
      assert.equal(await trainGanCommand({ config, file, runDir }), 0);
    } finally {
      file.close();
    }
    const state = readState(runDir);
    // 20 showers, 5 held out: 2 batches of 6 in epoch 2, one critic update per batch, and the
    // generator update after the second critic update overall.
    assert.deepEqual([state.epoch, state.criticUpdates, state.generatorUpdates, state.finished], [2, 3, 1, true]);
    assert.equal(readRunInfo(runDir).model, "wgan-gp");

    const run = loadGanRun(runDir);
    try {
      assert.equal(run.epoch, 2);
      const energies = Float32Array.from([2_000, 20_000, 200_000]);
      const condition = energyCondition(run.preprocessing, energies);
      const first = tidy(() => run.generate(tensor(condition, [3]), new Generator(7)).toFloat32());
      const second = tidy(() => {
        const samples = run.generate(tensor(condition, [3]), new Generator(7));
        assert.deepEqual(samples.shape, [3, ...run.preprocessing.modelShape]);
        return samples.toFloat32();
      });
      assert.deepEqual(second, first, "the same noise seed must give the same samples");
      const showers = inversePreprocess(run.preprocessing, energies, first);
      assert.equal(showers.length, 3 * voxelCounts[dataset]);
      assert.ok(showers.every((v) => Number.isFinite(v) && v >= 0), "generated voxel energies must be finite and non-negative");
    } finally {
      run.dispose();
    }
    assert.equal(liveTensors(), before);
  });
}

test("train and sample commands run a wgan-gp model", async () => {
  await initHdf5();
  const dir = temporaryDir("cli");
  const dataPath = path.join(dir, "showers.h5");
  await simulateToFile({ dataset: "2", events: 20, seed: 4 }, dataPath, { threads: 1 });
  const configPath = path.join(dir, "config.json");
  const { description, ...tiny } = tinyDatasetConfig("2");
  fs.writeFileSync(configPath, JSON.stringify({ ...tiny, description: `${description} for the command test` }));
  const cli = path.resolve(__dirname, "../../bin/caloscore.js");
  const caloscore = (args: string[]) => {
    const result = spawnSync(process.execPath, [cli, ...args], { env: { ...process.env, CALOSCORE_THREADS: "1" }, encoding: "utf8" });
    return { status: result.status, output: result.stdout + result.stderr };
  };
  const runDir = path.join(dir, "run");

  const train = caloscore(["train", "--model", "wgan-gp", "--config", configPath, "--data", dataPath, "--out", runDir, "--epochs", "1"]);
  assert.equal(train.status, 0, train.output);
  assert.match(train.output, /epoch 1\/1: critic loss/);
  assert.equal(readState(runDir).epoch, 1);

  const outPath = path.join(dir, "generated.h5");
  const sample = caloscore(["sample", "--run", runDir, "--events", "7", "--batch", "4", "--out", outPath, "--energies-from", dataPath]);
  assert.equal(sample.status, 0, sample.output);
  assert.match(sample.output, /with the WGAN-GP generator/);

  const generated = openShowerFile(outPath, { dataset: "2" });
  const reference = openShowerFile(dataPath, { dataset: "2" });
  try {
    assert.equal(generated.count, 7);
    // --energies-from takes the reference's rows at even intervals: floor(i * count / 7).
    const all = reference.readEnergies(0, reference.count);
    const expected = Float32Array.from({ length: 7 }, (_, i) => all[Math.floor((i * reference.count) / 7)]);
    assert.deepEqual(generated.readEnergies(0, 7), expected);
    const showers = generated.readShowers(0, 7);
    assert.ok(showers.every((v) => Number.isFinite(v) && v >= 0), "generated voxel energies must be finite and non-negative");
    assert.ok(showers.some((v) => v > 0), "generated showers are all zero");
  } finally {
    generated.close();
    reference.close();
  }
});
