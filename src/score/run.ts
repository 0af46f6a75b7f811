// A training run directory: what `caloscore train` writes and `caloscore sample` reads.
//
//   RUN/run.json             model kind, SDE, configuration, data file, creation time
//   RUN/preprocessing.json   the fitted preprocessing (exact inverse for generated showers)
//   RUN/energies.json        incident energies of the training showers (MeV), to draw from
//   RUN/last.safetensors     weights, optimizer moments and training state (with last.json)
//   RUN/best.safetensors     weights with the lowest validation loss (with best.json)
import * as fs from "node:fs";
import * as path from "node:path";
import { DatasetName } from "../calo/binning";
import { rowsPerRead, ShowerFile } from "../calo/hdf5";
import { forwardPreprocess, PreprocessingFitter, PreprocessingState } from "../calo/preprocess";
import { Generator, writeFileAtomic } from "../torch";
import { ModelConfig, parseModelConfig } from "./config";
import { createSde, Sde, SdeName } from "./sde";
import { checkpointNames, loadModelWeights, splitRows, TrainingData } from "./train";
import { UNetConfig, UNetScoreModel } from "./unet";

export interface RunInfo {
  /** "score" for CaloScore models, "wgan-gp" for the GAN baseline. */
  model: "score" | "wgan-gp";
  sde: SdeName | null;
  config: ModelConfig;
  dataFile: string;
  created: string;
}

export const runFiles = {
  info: "run.json",
  preprocessing: "preprocessing.json",
  energies: "energies.json",
};

/** Showers used to fit the preprocessing's standardisation, spread over the training split. */
const preprocessingFitShowers = 20_000;

/** Stored incident energies to draw from when sampling, spread over the training split. */
const storedEnergies = 50_000;

export function unetConfig(config: ModelConfig, modelShape: number[]): UNetConfig {
  return {
    dims: (modelShape.length - 1) as 1 | 3,
    inputShape: modelShape,
    channels: config.network.channels,
    kernel: config.network.kernel,
    pooling: config.network.pooling,
    embedding: config.network.embedding,
    dropout: config.network.dropout,
    fourierScale: config.network.fourierScale,
    energyFourierScale: config.network.energyFourierScale,
    positionEmbedding: config.network.positionEmbedding,
    // In the cylindrical layout [layers, alpha, r] the angle is spatial axis 1 and wraps around.
    circularAxes: config.layout === "cylindrical" ? [1] : [],
  };
}

export function createScoreModel(config: ModelConfig, sde: Sde, modelShape: number[]): UNetScoreModel {
  return new UNetScoreModel(unetConfig(config, modelShape), sde, new Generator(config.training.seed));
}

/** Number of showers a configuration trains on (maxShowers 0 = all). */
export function usableShowers(config: ModelConfig, file: ShowerFile): number {
  return config.training.maxShowers > 0 ? Math.min(config.training.maxShowers, file.count) : file.count;
}

/**
 * Prepares `runDir` for a new run, or checks that an existing one was made with the same
 * configuration, SDE and data file. Fits the preprocessing on the training split.
 */
export function prepareRun(runDir: string, config: ModelConfig, sdeName: SdeName | null, model: RunInfo["model"], file: ShowerFile): { info: RunInfo; preprocessing: PreprocessingState } {
  fs.mkdirSync(runDir, { recursive: true });
  const infoPath = path.join(runDir, runFiles.info);
  const info: RunInfo = { model, sde: sdeName, config, dataFile: path.resolve(file.path), created: new Date().toISOString() };
  if (fs.existsSync(infoPath)) {
    const existing = readRunInfo(runDir);
    const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
    if (!same(existing.config, config) || existing.sde !== sdeName || existing.model !== model) {
      throw new Error(
        `${runDir} contains a run with a different configuration, model or SDE (${existing.model}, ${existing.sde}); ` +
          "choose another --out folder or delete it",
      );
    }
    return { info: existing, preprocessing: readPreprocessing(runDir) };
  }
  if (file.dataset !== config.dataset) {
    throw new Error(`${file.path} contains dataset ${file.dataset} showers; the configuration is for dataset ${config.dataset}`);
  }

  const count = usableShowers(config, file);
  const split = splitRows(count, config.training.validationFraction);
  const preprocessing = fitOnTrainingRows(config, file, count, split.isValidation);
  const allEnergies = file.readEnergies(0, count);
  const trainEnergies = everyNth(
    Array.from(allEnergies).filter((_, row) => !split.isValidation(row)),
    Math.ceil((count - split.validationCount) / storedEnergies),
  );
  writeFileAtomic(path.join(runDir, runFiles.preprocessing), JSON.stringify(preprocessing) + "\n");
  writeFileAtomic(path.join(runDir, runFiles.energies), JSON.stringify({ unit: "MeV", energies: trainEnergies }) + "\n");
  writeFileAtomic(infoPath, JSON.stringify(info, null, 2) + "\n");
  return { info, preprocessing };
}

function everyNth<T>(values: T[], stride: number): T[] {
  return stride <= 1 ? values : values.filter((_, i) => i % stride === 0);
}

/**
 * Fits the preprocessing on at most preprocessingFitShowers training showers taken at even
 * intervals over the file (files may be ordered by incident energy), reading block by block.
 */
function fitOnTrainingRows(config: ModelConfig, file: ShowerFile, count: number, isValidation: (row: number) => boolean): PreprocessingState {
  const fitter = new PreprocessingFitter(config.dataset as DatasetName, config.layout, config.preprocessing);
  const stride = Math.max(1, Math.ceil(count / preprocessingFitShowers));
  const voxels = file.voxels;
  const blockRows = rowsPerRead(voxels);
  for (let start = 0; start < count; start += blockRows) {
    const end = Math.min(start + blockRows, count);
    const rows: number[] = [];
    for (let row = start; row < end; row++) if (row % stride === 0 && !isValidation(row)) rows.push(row - start);
    if (rows.length === 0) continue;
    const energies = file.readEnergies(start, end);
    const showers = file.readShowers(start, end);
    const pickedEnergies = new Float32Array(rows.length);
    const pickedShowers = new Float32Array(rows.length * voxels);
    rows.forEach((row, i) => {
      pickedEnergies[i] = energies[row];
      pickedShowers.set(showers.subarray(row * voxels, (row + 1) * voxels), i * voxels);
    });
    fitter.add(pickedEnergies, pickedShowers);
  }
  return fitter.finish();
}

export function readRunInfo(runDir: string): RunInfo {
  const infoPath = path.join(runDir, runFiles.info);
  if (!fs.existsSync(infoPath)) throw new Error(`${runDir} is not a caloscore run: ${runFiles.info} not found`);
  const raw = JSON.parse(fs.readFileSync(infoPath, "utf8")) as RunInfo;
  return { ...raw, config: parseModelConfig(raw.config, infoPath) };
}

export function readPreprocessing(runDir: string): PreprocessingState {
  return JSON.parse(fs.readFileSync(path.join(runDir, runFiles.preprocessing), "utf8")) as PreprocessingState;
}

/** Incident energies (MeV) of the training showers, stored with the run. */
export function readTrainingEnergies(runDir: string): Float32Array {
  const raw = JSON.parse(fs.readFileSync(path.join(runDir, runFiles.energies), "utf8")) as { energies: number[] };
  return Float32Array.from(raw.energies);
}

/** Preprocessed rows of a shower file, read on demand in the file's order. */
export function preprocessedData(file: ShowerFile, preprocessing: PreprocessingState, count: number): TrainingData {
  return {
    count,
    modelShape: preprocessing.modelShape,
    read: (start, end) => {
      const energies = file.readEnergies(start, end);
      const showers = file.readShowers(start, end);
      return forwardPreprocess(preprocessing, energies, showers);
    },
  };
}

export interface LoadedScoreRun {
  info: RunInfo;
  sde: Sde;
  model: UNetScoreModel;
  preprocessing: PreprocessingState;
  checkpoint: string;
}

/** Loads a trained score run in evaluation mode, from its best checkpoint or, with `which` = "last", its last one. */
export function loadScoreRun(runDir: string, which: "best" | "last" = "best"): LoadedScoreRun {
  const info = readRunInfo(runDir);
  if (info.model !== "score" || info.sde === null) throw new Error(`${runDir} is a ${info.model} run, not a score model`);
  const preprocessing = readPreprocessing(runDir);
  const sde = createSde(info.sde, info.config.sde);
  const model = createScoreModel(info.config, sde, preprocessing.modelShape);
  let checkpoint = path.join(runDir, checkpointNames[which]);
  if (!fs.existsSync(checkpoint)) checkpoint = path.join(runDir, checkpointNames.last);
  if (!fs.existsSync(checkpoint)) {
    model.dispose();
    throw new Error(`${runDir} has no checkpoint yet (${checkpointNames.best} or ${checkpointNames.last}); train it first`);
  }
  loadModelWeights(model, checkpoint);
  model.eval();
  return { info, sde, model, preprocessing, checkpoint };
}
