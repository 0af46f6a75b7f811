// Training of the WGAN-GP baseline (Wasserstein GAN with gradient penalty). The critic minimises
// E[D(fake)] - E[D(real)] + lambda E[(||grad_x D(x_hat)|| - 1)^2] at random interpolates x_hat, and
// the generator minimises -E[D(fake)]. RMSprop with a fixed learning rate for both networks, one
// generator update after every gan.criticSteps critic updates, gan.maxEpochs epochs over the
// training split, and the last epoch kept. Checkpoints hold both networks and both optimizers'
// moments, and every random stream of an epoch derives from (seed, epoch), so a run resumed at an
// epoch boundary repeats an uninterrupted one exactly.
import * as fs from "node:fs";
import * as path from "node:path";
import { grad, Generator, loadCheckpoint, manualSeed, noGrad, optim, rand, saveCheckpoint, Tensor, tensor, tidy } from "../torch";
import { ModelConfig } from "../score/config";
import { epochSeed, forEachRowBatch, gatherRows, mulberry32, ProgressEvent, shuffledBatches, splitRows, TrainingData } from "../score/train";
import { CriticNetwork, GeneratorNetwork, sampleNoise } from "./model";

export const ganCheckpointName = "last.safetensors";

export interface GanEpochRecord {
  epoch: number;
  /** Mean critic loss E[D(fake)] - E[D(real)] + lambda GP over the epoch's critic steps. */
  criticLoss: number;
  /** Mean generator loss -E[D(fake)] over the epoch's generator steps (NaN when there were none). */
  generatorLoss: number;
  /** Mean gradient penalty E[(||grad D|| - 1)^2], before the factor lambda. */
  gradientPenalty: number;
  /** E[D(real)] - E[D(fake)] on the validation split: the critic's estimate of the Wasserstein-1 distance. */
  validationWasserstein: number;
  seconds: number;
  showersPerSecond: number;
}

export interface GanTrainingState {
  /** Completed epochs. */
  epoch: number;
  /** Critic updates so far; a generator update follows every gan.criticSteps of them. */
  criticUpdates: number;
  generatorUpdates: number;
  history: GanEpochRecord[];
  finished: boolean;
  stopReason: string | null;
}

export interface GanTrainOptions {
  config: ModelConfig;
  generator: GeneratorNetwork;
  critic: CriticNetwork;
  data: TrainingData;
  runDir: string;
  /** Stop after this many minutes (at a batch boundary; the epoch is then closed and checkpointed). */
  minutes?: number;
  /** Stop after this many epochs in this call (for tests and staged runs); gan.maxEpochs still applies. */
  epochsThisCall?: number;
  log?: (line: string) => void;
  onProgress?: (event: ProgressEvent) => void;
}

/**
 * Gradient penalty E[(||grad_x D(x, c)|| - 1)^2] over the batch, with the per-sample gradient norm
 * taken over all of a sample's entries. The gradient is built with createGraph, so the penalty can
 * be differentiated with respect to the critic's parameters (double backpropagation). It needs
 * gradient recording, so it cannot run inside noGrad.
 * interpolates: [batch, ...], condition: [batch] -> scalar
 */
export function gradientPenalty(critic: CriticNetwork, interpolates: Tensor, condition: Tensor): Tensor {
  return tidy(() => {
    const x = interpolates.detach().requiresGrad_(true);
    const scores = critic.forward(x, condition);
    const [gradient] = grad(scores.sum(), x, { createGraph: true });
    if (gradient === null) throw new Error("gradientPenalty: the critic's output does not depend on its input");
    // The small constant keeps the derivative of the square root finite where a gradient is zero.
    const norm = gradient.flatten(1).square().sum([1]).add(1e-12).sqrt();
    return norm.sub(1).square().mean();
  });
}

/** Random points on the segments between real and fake samples: eps real + (1 - eps) fake, eps ~ U(0, 1) per sample. */
export function interpolate(real: Tensor, fake: Tensor, generator?: Generator): Tensor {
  return tidy(() => {
    const eps = rand([real.shape[0], ...Array<number>(real.ndim - 1).fill(1)], { dtype: real.dtype, generator });
    return real.mul(eps).add(fake.mul(eps.rsub(1)));
  });
}

interface Batch {
  real: Tensor;
  condition: Tensor;
}

/** One critic update; returns the critic loss and the gradient penalty (before the factor lambda). */
function criticStep(
  generator: GeneratorNetwork,
  critic: CriticNetwork,
  optimizer: optim.RmsProp,
  batch: Batch,
  lambda: number,
  noise: Generator,
): { loss: number; penalty: number } {
  return tidy(() => {
    const size = batch.real.shape[0];
    const fake = noGrad(() => generator.forward(sampleNoise(size, generator.noiseDim, noise), batch.condition));
    const realScore = critic.forward(batch.real, batch.condition).mean();
    const fakeScore = critic.forward(fake, batch.condition).mean();
    const penalty = gradientPenalty(critic, interpolate(batch.real, fake, noise), batch.condition);
    const loss = fakeScore.sub(realScore).add(penalty.mul(lambda));
    optimizer.zeroGrad();
    loss.backward();
    optimizer.step();
    return { loss: loss.item(), penalty: penalty.item() };
  });
}

/** One generator update against a critic whose parameters are frozen for the step. */
function generatorStep(generator: GeneratorNetwork, critic: CriticNetwork, optimizer: optim.RmsProp, condition: Tensor, noise: Generator): number {
  const criticParameters = critic.parameters();
  for (const p of criticParameters) p.requiresGrad_(false);
  try {
    return tidy(() => {
      const fake = generator.forward(sampleNoise(condition.shape[0], generator.noiseDim, noise), condition);
      const loss = critic.forward(fake, condition).mean().neg();
      optimizer.zeroGrad();
      loss.backward();
      optimizer.step();
      return loss.item();
    });
  } finally {
    for (const p of criticParameters) p.requiresGrad_(true);
  }
}

/**
 * E[D(real)] - E[D(fake)] over the given rows (ascending), with the generator in evaluation mode
 * and noise from a fixed seed, so that epochs are compared on the same draws. With no cache the
 * rows are read chunk by chunk.
 */
export function estimateWasserstein(
  generator: GeneratorNetwork,
  critic: CriticNetwork,
  data: TrainingData,
  cache: { condition: Float32Array; x: Float32Array } | null,
  rows: readonly number[],
  batchSize: number,
  seed: number,
): number {
  const wasTraining = generator.training;
  generator.eval();
  critic.eval();
  const noise = new Generator(seed);
  const rowSize = data.modelShape.reduce((a, b) => a * b, 1);
  let sum = 0;
  const evaluateBatch = (chunk: { condition: Float32Array; x: Float32Array }, local: number[]) => {
    sum += noGrad(() =>
      tidy(() => {
        const { x, condition } = gatherRows(chunk, local, rowSize);
        const real = tensor(x, [local.length, ...data.modelShape]);
        const c = tensor(condition, [local.length]);
        const fake = generator.forward(sampleNoise(local.length, generator.noiseDim, noise), c);
        return critic.forward(real, c).sub(critic.forward(fake, c)).sum().item();
      }),
    );
  };
  try {
    forEachRowBatch(data, cache, rows, batchSize, evaluateBatch);
  } finally {
    generator.train(wasTraining);
    critic.train(wasTraining);
  }
  return sum / rows.length;
}

function freshState(): GanTrainingState {
  return { epoch: 0, criticUpdates: 0, generatorUpdates: 0, history: [], finished: false, stopReason: null };
}

function saveGanState(file: string, generator: GeneratorNetwork, critic: CriticNetwork, generatorOptimizer: optim.RmsProp, criticOptimizer: optim.RmsProp, state: GanTrainingState): void {
  const tensors = new Map<string, Tensor>();
  for (const [name, t] of generator.stateDict()) tensors.set(`generator.${name}`, t);
  for (const [name, t] of critic.stateDict()) tensors.set(`critic.${name}`, t);
  const generatorMoments = generatorOptimizer.state();
  const criticMoments = criticOptimizer.state();
  for (const [name, t] of generatorMoments.tensors) tensors.set(`generatorOptimizer.${name}`, t);
  for (const [name, t] of criticMoments.tensors) tensors.set(`criticOptimizer.${name}`, t);
  saveCheckpoint(file, tensors, {
    ...state,
    generatorOptimizer: { step: generatorMoments.step, lr: generatorMoments.lr },
    criticOptimizer: { step: criticMoments.step, lr: criticMoments.lr },
  });
}

interface GanSidecar extends GanTrainingState {
  generatorOptimizer: { step: number; lr: number };
  criticOptimizer: { step: number; lr: number };
}

/** Tensors of a checkpoint whose names start with `prefix.`, with the prefix removed. */
function withPrefix(tensors: Map<string, Tensor>, prefix: string): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  for (const [name, t] of tensors) if (name.startsWith(`${prefix}.`)) out.set(name.slice(prefix.length + 1), t);
  return out;
}

/** Loads the generator weights (tensors under "generator.") of a GAN checkpoint; returns its sidecar. */
export function loadGeneratorWeights(generator: GeneratorNetwork, file: string): GanTrainingState {
  return tidy(() => {
    const { tensors, sidecar } = loadCheckpoint(file);
    generator.loadStateDict(withPrefix(tensors, "generator"), file);
    return sidecar as GanTrainingState;
  });
}

function resumeFrom(file: string, generator: GeneratorNetwork, critic: CriticNetwork, generatorOptimizer: optim.RmsProp, criticOptimizer: optim.RmsProp): GanTrainingState {
  return tidy(() => {
    const { tensors, sidecar } = loadCheckpoint(file);
    const saved = sidecar as GanSidecar;
    if (saved.generatorOptimizer === undefined || saved.criticOptimizer === undefined) {
      throw new Error(`${file} is not a WGAN-GP checkpoint: its sidecar has no generatorOptimizer or criticOptimizer entry`);
    }
    generator.loadStateDict(withPrefix(tensors, "generator"), file);
    critic.loadStateDict(withPrefix(tensors, "critic"), file);
    generatorOptimizer.loadState({ kind: "rmsprop", ...saved.generatorOptimizer, tensors: withPrefix(tensors, "generatorOptimizer") });
    criticOptimizer.loadState({ kind: "rmsprop", ...saved.criticOptimizer, tensors: withPrefix(tensors, "criticOptimizer") });
    const { epoch, criticUpdates, generatorUpdates, history, finished, stopReason } = saved;
    return { epoch, criticUpdates, generatorUpdates, history, finished, stopReason };
  });
}

/**
 * Trains (or resumes training of) a generator and critic on `data`, writing runDir/last.safetensors
 * after every epoch. Resumes from that file when it exists. The validation rows of splitRows are
 * held out and only used for the per-epoch Wasserstein estimate. Returns the final state.
 */
export function trainGan(options: GanTrainOptions): GanTrainingState {
  const { config, generator, critic, runDir } = options;
  const log = options.log ?? ((line: string) => console.log(line));
  const gan = config.gan;
  if (!Number.isInteger(gan.criticSteps) || gan.criticSteps < 1) throw new Error(`gan.criticSteps must be a positive integer, found ${gan.criticSteps}`);
  fs.mkdirSync(runDir, { recursive: true });

  const generatorOptimizer = new optim.RmsProp(generator.parameters(), { lr: gan.learningRate });
  const criticOptimizer = new optim.RmsProp(critic.parameters(), { lr: gan.learningRate });
  let state = freshState();
  const lastPath = path.join(runDir, ganCheckpointName);
  try {
    if (fs.existsSync(lastPath)) {
      state = resumeFrom(lastPath, generator, critic, generatorOptimizer, criticOptimizer);
      log(`resumed from ${lastPath} after epoch ${state.epoch} (${state.criticUpdates} critic and ${state.generatorUpdates} generator updates)`);
    }
    if (state.finished) {
      log(`training already finished (${state.stopReason}); delete ${lastPath} to start again`);
      return state;
    }
    runEpochs(options, state, generatorOptimizer, criticOptimizer, lastPath, log);
  } finally {
    generatorOptimizer.dispose();
    criticOptimizer.dispose();
  }
  return state;
}

function runEpochs(
  options: GanTrainOptions,
  state: GanTrainingState,
  generatorOptimizer: optim.RmsProp,
  criticOptimizer: optim.RmsProp,
  lastPath: string,
  log: (line: string) => void,
): void {
  const { config, generator, critic, data } = options;
  const gan = config.gan;
  const { batchSize, seed } = config.training;

  // The same split as the score model's: validation rows at even intervals over the file.
  const split = splitRows(data.count, config.training.validationFraction);
  const trainCount = data.count - split.validationCount;
  if (trainCount < batchSize) {
    throw new Error(`training needs at least one batch of ${batchSize} showers; the data has ${trainCount} after the validation split`);
  }
  const rowSize = data.modelShape.reduce((a, b) => a * b, 1);
  const inMemory = data.count <= 200_000 && data.count * rowSize <= 500_000_000;
  const cache = inMemory ? data.read(0, data.count) : null;
  const deadline = options.minutes !== undefined ? Date.now() + options.minutes * 60_000 : Infinity;
  let epochsRun = 0;

  while (state.epoch < gan.maxEpochs) {
    if (options.epochsThisCall !== undefined && epochsRun >= options.epochsThisCall) break;
    const epoch = state.epoch + 1;
    const epochStart = Date.now();

    // Every random stream of the epoch derives from (seed, epoch), so a resumed run repeats it exactly.
    manualSeed(epochSeed(seed, epoch, 0));
    const noise = new Generator(epochSeed(seed, epoch, 1));
    const random = mulberry32(epochSeed(seed, epoch, 2));

    generator.train();
    critic.train();
    const sums = { critic: 0, penalty: 0, generator: 0 };
    let epochCriticUpdates = 0;
    let epochGeneratorUpdates = 0;
    let done = 0;
    let timedOut = false;
    for (const { chunk, rows } of shuffledBatches(data, cache, split.isValidation, batchSize, random)) {
      tidy(() => {
        const { x, condition } = gatherRows(chunk, rows, rowSize);
        const batch = { real: tensor(x, [rows.length, ...data.modelShape]), condition: tensor(condition, [rows.length]) };
        const step = criticStep(generator, critic, criticOptimizer, batch, gan.gradientPenalty, noise);
        if (!Number.isFinite(step.loss)) {
          throw new Error(
            `critic loss became ${step.loss} in epoch ${epoch} after ${epochCriticUpdates} critic updates; ` +
              `stopping without saving, ${lastPath} keeps the last good state (try a lower gan.learningRate)`,
          );
        }
        sums.critic += step.loss;
        sums.penalty += step.penalty;
        epochCriticUpdates++;
        state.criticUpdates++;
        if (state.criticUpdates % gan.criticSteps === 0) {
          sums.generator += generatorStep(generator, critic, generatorOptimizer, batch.condition, noise);
          epochGeneratorUpdates++;
          state.generatorUpdates++;
        }
      });
      done += rows.length;
      options.onProgress?.({
        epoch,
        maxEpochs: gan.maxEpochs,
        done,
        total: trainCount,
        loss: sums.critic / epochCriticUpdates,
        showersPerSecond: done / ((Date.now() - epochStart) / 1000),
      });
      if (Date.now() > deadline) {
        timedOut = true;
        break;
      }
    }

    const wasserstein = estimateWasserstein(generator, critic, data, cache, split.validationRows, batchSize, epochSeed(seed, 0, 3));
    const seconds = (Date.now() - epochStart) / 1000;
    const record: GanEpochRecord = {
      epoch,
      criticLoss: epochCriticUpdates > 0 ? sums.critic / epochCriticUpdates : NaN,
      generatorLoss: epochGeneratorUpdates > 0 ? sums.generator / epochGeneratorUpdates : NaN,
      gradientPenalty: epochCriticUpdates > 0 ? sums.penalty / epochCriticUpdates : NaN,
      validationWasserstein: wasserstein,
      seconds,
      showersPerSecond: done / seconds,
    };
    state.history.push(record);
    state.epoch = epoch;
    epochsRun++;
    if (state.epoch >= gan.maxEpochs) {
      state.finished = true;
      state.stopReason = `reached gan.maxEpochs = ${gan.maxEpochs}`;
    }
    saveGanState(lastPath, generator, critic, generatorOptimizer, criticOptimizer, state);
    log(
      `epoch ${epoch}/${gan.maxEpochs}: critic loss ${record.criticLoss.toFixed(5)}, generator loss ${record.generatorLoss.toFixed(5)}, ` +
        `gradient penalty ${record.gradientPenalty.toFixed(5)}, validation Wasserstein estimate ${wasserstein.toFixed(5)}, ` +
        `${record.showersPerSecond.toFixed(0)} showers/s, ${seconds.toFixed(1)} s`,
    );
    if (state.finished) {
      log(`training finished: ${state.stopReason}`);
      break;
    }
    if (timedOut) {
      log(`time budget of ${options.minutes} min reached; run the same command again to continue`);
      break;
    }
  }
}
