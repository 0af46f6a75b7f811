// Training loop for score models: Adam, 80/20 split spread over the file, validation with fixed noise each epoch,
// learning rate reduced on plateau, early stopping, best and last checkpoints, and exact resume
// at epoch boundaries (weights, optimizer moments, schedule and every random stream are
// functions of the saved state and the epoch number).
import * as fs from "node:fs";
import * as path from "node:path";
import { Generator, keep, loadCheckpoint, manualSeed, noGrad, optim, saveCheckpoint, Tensor, tensor, tidy } from "../torch";
import { ModelConfig } from "./config";
import { denoisingScoreMatchingLoss } from "./loss";
import { Sde } from "./sde";
import { UNetScoreModel } from "./unet";

/** Preprocessed training data, read in row ranges. */
export interface TrainingData {
  readonly count: number;
  /** Model input shape without the batch axis, e.g. [1, 45, 12, 12]. */
  readonly modelShape: number[];
  /** Rows [start, end): condition [n] and x [n x prod(modelShape)], row-major. */
  read(start: number, end: number): { condition: Float32Array; x: Float32Array };
}

export interface EpochRecord {
  epoch: number;
  trainLoss: number;
  validationLoss: number;
  learningRate: number;
  seconds: number;
  showersPerSecond: number;
}

export interface TrainingState {
  /** Completed epochs. */
  epoch: number;
  learningRate: number;
  optimizerStep: number;
  /** Updates of the weight average (0 without one). */
  emaUpdates: number;
  plateau: { best: number | null; badEpochs: number };
  bestValidationLoss: number | null;
  epochsWithoutImprovement: number;
  history: EpochRecord[];
  finished: boolean;
  stopReason: string | null;
}

export interface ProgressEvent {
  epoch: number;
  maxEpochs: number;
  done: number;
  total: number;
  loss: number;
  showersPerSecond: number;
}

export interface TrainOptions {
  config: ModelConfig;
  sde: Sde;
  model: UNetScoreModel;
  data: TrainingData;
  runDir: string;
  /** Loss weight per model entry [prod(modelShape)] (src/calo/preprocess.ts lossWeights); all 1 when absent. */
  entryWeights?: Float32Array;
  /** Stop after this many minutes (at a batch boundary; the epoch is then closed and checkpointed). */
  minutes?: number;
  /** Stop after this many epochs in this call (for tests and staged runs); maxEpochs still applies. */
  epochsThisCall?: number;
  log?: (line: string) => void;
  onProgress?: (event: ProgressEvent) => void;
}

/** Deterministic 32-bit generator (mulberry32) for data order. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function shuffle(values: number[], random: () => number): number[] {
  for (let i = values.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [values[i], values[j]] = [values[j], values[i]];
  }
  return values;
}

/** Seed for one epoch's random streams, mixed so that consecutive epochs are unrelated. */
export function epochSeed(seed: number, epoch: number, stream: number): number {
  let h = (seed * 0x9e3779b1 + epoch * 0x85ebca6b + stream * 0xc2b2ae35) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x45d9f3b) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

export const checkpointNames = { last: "last.safetensors", best: "best.safetensors" };

/** Rows held in memory at once while streaming (chunks are shuffled, then rows within them). */
export const streamChunkRows = 4096;

function modelState(model: UNetScoreModel): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  for (const [name, t] of model.stateDict()) out.set(`model.${name}`, t);
  return out;
}

/** Loads the model weights stored under "model." in a checkpoint file. */
export function loadModelWeights(model: UNetScoreModel, file: string): unknown {
  return tidy(() => {
    const { tensors, sidecar } = loadCheckpoint(file);
    const weights = new Map<string, Tensor>();
    for (const [name, t] of tensors) if (name.startsWith("model.")) weights.set(name.slice(6), t);
    model.loadStateDict(weights, file);
    return sidecar;
  });
}

function freshState(config: ModelConfig): TrainingState {
  return {
    epoch: 0,
    learningRate: config.training.learningRate,
    optimizerStep: 0,
    emaUpdates: 0,
    plateau: { best: null, badEpochs: 0 },
    bestValidationLoss: null,
    epochsWithoutImprovement: 0,
    history: [],
    finished: false,
    stopReason: null,
  };
}

/**
 * Trains (or resumes training of) `model` on `data`, writing checkpoints to `runDir`.
 * Resumes from runDir/last.safetensors when it exists. Returns the final state.
 */
export function trainScoreModel(options: TrainOptions): TrainingState {
  const { config, sde, model, data, runDir } = options;
  const log = options.log ?? ((line: string) => console.log(line));
  const training = config.training;
  fs.mkdirSync(runDir, { recursive: true });

  const optimizer = new optim.Adam(model.parameters(), { lr: training.learningRate });
  const ema = training.ema > 0 ? new optim.Ema(model.parameters(), training.ema, true) : null;
  const plateau = new optim.ReduceLrOnPlateau(optimizer, { factor: training.lrFactor, patience: training.lrPatience });
  let state = freshState(config);

  const lastPath = path.join(runDir, checkpointNames.last);
  if (fs.existsSync(lastPath)) {
    state = resumeFrom(lastPath, model, optimizer, ema);
    plateau.loadState(state.plateau);
    log(`resumed from ${lastPath} after epoch ${state.epoch} (learning rate ${state.learningRate.toExponential(2)})`);
  }
  if (state.finished) {
    log(`training already finished (${state.stopReason}); delete ${lastPath} to start again`);
    optimizer.dispose();
    ema?.dispose();
    return state;
  }

  const split = splitRows(data.count, training.validationFraction);
  const trainCount = data.count - split.validationCount;
  if (trainCount < training.batchSize) {
    throw new Error(`training needs at least one batch of ${training.batchSize} showers; the data has ${trainCount} after the validation split`);
  }
  const inMemory = data.count <= 200_000 && data.count * data.modelShape.reduce((a, b) => a * b, 1) <= 500_000_000;
  const cache = inMemory ? data.read(0, data.count) : null;
  const rowSize = data.modelShape.reduce((a, b) => a * b, 1);
  if (options.entryWeights !== undefined && options.entryWeights.length !== rowSize) {
    throw new Error(`trainScoreModel: entryWeights has ${options.entryWeights.length} values; expected ${rowSize} (model shape ${data.modelShape.join("x")})`);
  }
  const weights = options.entryWeights === undefined ? undefined : keep(tensor(options.entryWeights, data.modelShape));
  const started = Date.now();
  const deadline = options.minutes !== undefined ? started + options.minutes * 60_000 : Infinity;
  let epochsRun = 0;

  try {
    while (state.epoch < training.maxEpochs) {
      if (options.epochsThisCall !== undefined && epochsRun >= options.epochsThisCall) break;
      const epoch = state.epoch + 1;
      const epochStart = Date.now();

      // Every random stream of the epoch derives from (seed, epoch), so a resumed run repeats it exactly.
      manualSeed(epochSeed(training.seed, epoch, 0));
      const noise = new Generator(epochSeed(training.seed, epoch, 1));
      const random = mulberry32(epochSeed(training.seed, epoch, 2));

      model.train();
      optimizer.lr = state.learningRate;
      let lossSum = 0;
      let batches = 0;
      let done = 0;
      let timedOut = false;
      for (const { chunk, rows } of shuffledBatches(data, cache, split.isValidation, training.batchSize, random)) {
        const loss = trainStep(model, sde, optimizer, chunk, rows, data.modelShape, rowSize, noise, training.gradClip, weights);
        ema?.update();
        if (!Number.isFinite(loss)) {
          throw new Error(
            `training loss became ${loss} in epoch ${epoch} after ${batches} batches; ` +
              `stopping without saving, ${lastPath} keeps the last good state (try a lower learning rate or gradient clipping)`,
          );
        }
        lossSum += loss;
        batches++;
        done += rows.length;
        options.onProgress?.({
          epoch,
          maxEpochs: training.maxEpochs,
          done,
          total: trainCount,
          loss: lossSum / batches,
          showersPerSecond: done / ((Date.now() - epochStart) / 1000),
        });
        if (Date.now() > deadline) {
          timedOut = true;
          break;
        }
      }

      // With an average of the weights, validation and the best checkpoint use the averaged weights.
      const trained = ema !== null ? swapIn(model, ema) : null;
      const validationLoss = evaluateLoss(model, sde, data, cache, split.validationRows, training.batchSize, epochSeed(training.seed, 0, 3), weights);
      const seconds = (Date.now() - epochStart) / 1000;
      const record: EpochRecord = {
        epoch,
        trainLoss: batches > 0 ? lossSum / batches : NaN,
        validationLoss,
        learningRate: optimizer.lr,
        seconds,
        showersPerSecond: done / seconds,
      };
      state.history.push(record);
      state.epoch = epoch;
      epochsRun++;

      const improved = state.bestValidationLoss === null || validationLoss < state.bestValidationLoss;
      if (improved) {
        state.bestValidationLoss = validationLoss;
        state.epochsWithoutImprovement = 0;
      } else {
        state.epochsWithoutImprovement++;
      }
      const reduced = plateau.step(validationLoss);
      state.plateau = plateau.state();
      state.learningRate = optimizer.lr;
      if (state.epochsWithoutImprovement >= training.earlyStopPatience) {
        state.finished = true;
        state.stopReason = `early stopping: no validation improvement in ${training.earlyStopPatience} epochs`;
      } else if (state.epoch >= training.maxEpochs) {
        state.finished = true;
        state.stopReason = `reached maxEpochs = ${training.maxEpochs}`;
      }

      if (improved) saveCheckpoint(path.join(runDir, checkpointNames.best), modelState(model), { epoch, validationLoss, ema: training.ema });
      if (trained !== null) restore(model, trained);
      saveTrainingState(lastPath, model, optimizer, ema, state);
      log(
        `epoch ${epoch}/${training.maxEpochs}: train loss ${record.trainLoss.toFixed(5)}, validation loss ${validationLoss.toFixed(5)}` +
          `${improved ? " (best)" : ""}, lr ${optimizer.lr.toExponential(2)}${reduced ? " (reduced)" : ""}, ` +
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
  } finally {
    optimizer.dispose();
    ema?.dispose();
    weights?.dispose();
  }
  return state;
}

/** Copies the averaged weights into the model and returns the trained weights to restore. */
function swapIn(model: UNetScoreModel, ema: optim.Ema): Tensor[] {
  const trained = model.parameters().map((p) => keep(noGrad(() => tidy(() => p.detach().clone()))));
  ema.copyTo();
  return trained;
}

function restore(model: UNetScoreModel, trained: Tensor[]): void {
  noGrad(() => model.parameters().forEach((p, i) => p.copy_(trained[i])));
  for (const t of trained) t.dispose();
}

function trainStep(
  model: UNetScoreModel,
  sde: Sde,
  optimizer: optim.Adam,
  chunk: { condition: Float32Array; x: Float32Array },
  rows: number[],
  modelShape: number[],
  rowSize: number,
  noise: Generator,
  gradClip: number,
  weights: Tensor | undefined,
): number {
  return tidy(() => {
    const { x, condition } = gatherRows(chunk, rows, rowSize);
    const x0 = tensor(x, [rows.length, ...modelShape]);
    const c = tensor(condition, [rows.length]);
    const loss = denoisingScoreMatchingLoss(model, sde, x0, c, noise, weights);
    optimizer.zeroGrad();
    loss.backward();
    if (gradClip > 0) optim.clipGradNorm(model.parameters(), gradClip);
    optimizer.step();
    return loss.item();
  });
}

export function gatherRows(chunk: { condition: Float32Array; x: Float32Array }, rows: number[], rowSize: number): { x: Float32Array; condition: Float32Array } {
  const x = new Float32Array(rows.length * rowSize);
  const condition = new Float32Array(rows.length);
  rows.forEach((row, i) => {
    x.set(chunk.x.subarray(row * rowSize, (row + 1) * rowSize), i * rowSize);
    condition[i] = chunk.condition[row];
  });
  return { x, condition };
}

/**
 * Train/validation split spread over the whole file: row r is a validation row when
 * floor((r + 1) f) > floor(r f) for the validation fraction f, which marks round(N f) rows at
 * even intervals. A contiguous split would make the validation set one energy range for files
 * ordered by incident energy, as simulated dataset-1 files are.
 */
export function splitRows(count: number, fraction: number): { validationCount: number; validationRows: number[]; isValidation: (row: number) => boolean } {
  const isValidation = (row: number) => Math.floor((row + 1) * fraction) > Math.floor(row * fraction);
  const validationRows: number[] = [];
  for (let row = 0; row < count; row++) if (isValidation(row)) validationRows.push(row);
  if (validationRows.length === 0) {
    throw new Error(`a validation fraction of ${fraction} leaves no validation shower among ${count}; use more showers`);
  }
  return { validationCount: validationRows.length, validationRows, isValidation };
}

/**
 * Yields one epoch's full training batches: the chunks in shuffled order, then the training
 * (non-validation) rows of each chunk shuffled, as indices into the yielded chunk. Rows left
 * over at the end of a chunk are dropped. The chunk order is drawn before the first batch and
 * each chunk's row order when the chunk is reached, so the stream of `random` is fixed by the
 * data size alone.
 */
export function* shuffledBatches(
  data: TrainingData,
  cache: { condition: Float32Array; x: Float32Array } | null,
  isValidation: (row: number) => boolean,
  batchSize: number,
  random: () => number,
): IterableIterator<{ chunk: { condition: Float32Array; x: Float32Array }; rows: number[] }> {
  const chunkRows = cache !== null ? data.count : streamChunkRows;
  const chunkStarts = shuffle(
    Array.from({ length: Math.ceil(data.count / chunkRows) }, (_, i) => i * chunkRows),
    random,
  );
  for (const chunkStart of chunkStarts) {
    const chunkEnd = Math.min(chunkStart + chunkRows, data.count);
    const chunk = cache !== null ? cache : data.read(chunkStart, chunkEnd);
    const offset = cache !== null ? chunkStart : 0;
    const trainRows: number[] = [];
    for (let row = chunkStart; row < chunkEnd; row++) if (!isValidation(row)) trainRows.push(row - chunkStart + offset);
    const order = shuffle(trainRows, random);
    for (let b = 0; b + batchSize <= order.length; b += batchSize) yield { chunk, rows: order.slice(b, b + batchSize) };
  }
}

/**
 * Calls `visit` with batches of the given rows (ascending), as indices into `chunk`: the cache
 * when there is one, else chunks of up to streamChunkRows rows read from `data` one at a time.
 */
export function forEachRowBatch(
  data: TrainingData,
  cache: { condition: Float32Array; x: Float32Array } | null,
  rows: readonly number[],
  batchSize: number,
  visit: (chunk: { condition: Float32Array; x: Float32Array }, local: number[]) => void,
): void {
  if (cache !== null) {
    for (let b = 0; b < rows.length; b += batchSize) visit(cache, rows.slice(b, b + batchSize));
    return;
  }
  let first = 0;
  while (first < rows.length) {
    const chunkStart = rows[first];
    const chunkEnd = Math.min(chunkStart + streamChunkRows, data.count);
    let last = first;
    while (last < rows.length && rows[last] < chunkEnd) last++;
    const chunk = data.read(chunkStart, chunkEnd);
    const local = rows.slice(first, last).map((row) => row - chunkStart);
    for (let b = 0; b < local.length; b += batchSize) visit(chunk, local.slice(b, b + batchSize));
    first = last;
  }
}

/**
 * Mean loss over the given rows (ascending) in evaluation mode with a fixed noise stream.
 * With no cache the rows are read chunk by chunk.
 */
export function evaluateLoss(
  model: UNetScoreModel,
  sde: Sde,
  data: TrainingData,
  cache: { condition: Float32Array; x: Float32Array } | null,
  rows: readonly number[],
  batchSize: number,
  seed: number,
  weights?: Tensor,
): number {
  model.eval();
  const noise = new Generator(seed);
  const rowSize = data.modelShape.reduce((a, b) => a * b, 1);
  let sum = 0;
  let count = 0;
  const evaluateBatch = (chunk: { condition: Float32Array; x: Float32Array }, local: number[]) => {
    const loss = noGrad(() =>
      tidy(() => {
        const { x, condition } = gatherRows(chunk, local, rowSize);
        const x0 = tensor(x, [local.length, ...data.modelShape]);
        return denoisingScoreMatchingLoss(model, sde, x0, tensor(condition, [local.length]), noise, weights).item();
      }),
    );
    sum += loss * local.length;
    count += local.length;
  };
  forEachRowBatch(data, cache, rows, batchSize, evaluateBatch);
  model.train();
  return sum / count;
}

function saveTrainingState(file: string, model: UNetScoreModel, optimizer: optim.Adam, ema: optim.Ema | null, state: TrainingState): void {
  const tensors = modelState(model);
  const optimizerState = optimizer.state();
  for (const [name, t] of optimizerState.tensors) tensors.set(`optimizer.${name}`, t);
  ema?.shadow.forEach((t, i) => tensors.set(`ema.${i}`, t));
  saveCheckpoint(file, tensors, { ...state, optimizerStep: optimizerState.step, emaUpdates: ema?.updates ?? 0 });
}

function resumeFrom(file: string, model: UNetScoreModel, optimizer: optim.Adam, ema: optim.Ema | null): TrainingState {
  return tidy(() => {
    const { tensors, sidecar } = loadCheckpoint(file);
    const state = sidecar as TrainingState;
    const weights = new Map<string, Tensor>();
    const moments = new Map<string, Tensor>();
    for (const [name, t] of tensors) {
      if (name.startsWith("model.")) weights.set(name.slice(6), t);
      else if (name.startsWith("optimizer.")) moments.set(name.slice(10), t);
    }
    model.loadStateDict(weights, file);
    optimizer.loadState({ kind: "adam", step: state.optimizerStep, lr: state.learningRate, tensors: moments });
    ema?.shadow.forEach((target, i) => {
      const value = tensors.get(`ema.${i}`);
      if (value === undefined) throw new Error(`${file} has no averaged weights 'ema.${i}', but the configuration sets training.ema`);
      target.copy_(value);
    });
    if (ema !== null) ema.updates = state.emaUpdates ?? 0;
    return state;
  });
}
