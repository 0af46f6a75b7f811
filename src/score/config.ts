// Training configuration: one JSON file per dataset (configs/), checked key by key so that a
// typo or a wrong type is rejected with the key's name instead of being silently ignored.
import * as fs from "node:fs";

export interface NetworkConfig {
  channels: number[];
  kernel: number;
  pooling: number[];
  embedding: number;
  dropout: number;
  /** Scale of the random Fourier features of the diffusion time. */
  fourierScale: number;
  /**
   * Scale of the random Fourier features of the incident energy. A small scale (about 1) gives
   * neighbouring energies similar features, so what is learned at one energy carries to the next.
   */
  energyFourierScale: number;
  /** Learned position embedding after the input convolution (see UNetConfig.positionEmbedding). */
  positionEmbedding: boolean;
}

/** Options of the map from voxel energies to model inputs (src/calo/preprocess.ts). */
export interface PreprocessingConfig {
  /**
   * Dataset 1 only: the model also learns each layer's share of the shower energy (one entry per
   * layer), and voxels are normalised by their layer's energy instead of the total.
   */
  layerEnergies: boolean;
  /**
   * Standardise each entry about a cubic polynomial of the energy condition instead of a constant,
   * so the preprocessing carries how each entry's average changes with the incident energy.
   */
  energyDependentMean: boolean;
  /**
   * Divide each entry by a spread that depends on the energy condition (exp of a cubic polynomial)
   * instead of one standard deviation, so showers at every energy reach the network with about unit
   * variance.
   */
  energyDependentStd: boolean;
}

export interface SdeConfig {
  sigmaMin: number;
  sigmaMax: number;
  betaMin: number;
  betaMax: number;
}

export interface TrainingConfig {
  batchSize: number;
  learningRate: number;
  maxEpochs: number;
  /** Epochs without validation improvement before the learning rate is multiplied by lrFactor. */
  lrPatience: number;
  lrFactor: number;
  /** Epochs without validation improvement before training stops. */
  earlyStopPatience: number;
  validationFraction: number;
  seed: number;
  /** Use only the first maxShowers showers of the data file (0 = all). */
  maxShowers: number;
  /** Clip the global gradient norm to this value (0 = no clipping). */
  gradClip: number;
  /**
   * Decay of an exponential moving average of the weights (0 = none). With it, validation,
   * the best checkpoint and sampling use the averaged weights.
   */
  ema: number;
  /**
   * Dataset 1 only: weight in the loss of the E_tot entry and, with preprocessing.layerEnergies,
   * the layer-share entries, relative to a voxel entry (1 = all alike).
   */
  energyEntryWeight: number;
}

export interface SamplingConfig {
  steps: number;
  snr: number;
  batchSize: number;
}

/** WGAN-GP baseline settings (used by `caloscore train --model wgan-gp`). */
export interface GanConfig {
  /** Dimension of the uniform noise vector: 50, 100 and 150 for datasets 1, 2 and 3 in CaloScore. */
  noiseDim: number;
  /** Critic updates per generator update. */
  criticSteps: number;
  learningRate: number;
  /** Weight lambda of the gradient penalty. */
  gradientPenalty: number;
  maxEpochs: number;
}

export interface ModelConfig {
  /** Free text shown in logs: what this configuration is for. */
  description: string;
  dataset: "1-photons" | "1-pions" | "2" | "3";
  layout: "cartesian" | "cylindrical";
  preprocessing: PreprocessingConfig;
  network: NetworkConfig;
  sde: SdeConfig;
  training: TrainingConfig;
  sampling: SamplingConfig;
  gan: GanConfig;
}

type Kind = "number" | "integer" | "string" | "boolean" | "number[]" | "integer[]" | { oneOf: readonly string[] } | Schema;
interface Schema {
  [key: string]: Kind;
}

const schema: Schema = {
  description: "string",
  dataset: { oneOf: ["1-photons", "1-pions", "2", "3"] },
  layout: { oneOf: ["cartesian", "cylindrical"] },
  preprocessing: { layerEnergies: "boolean", energyDependentMean: "boolean", energyDependentStd: "boolean" },
  network: { channels: "integer[]", kernel: "integer", pooling: "integer[]", embedding: "integer", dropout: "number", fourierScale: "number", energyFourierScale: "number", positionEmbedding: "boolean" },
  sde: { sigmaMin: "number", sigmaMax: "number", betaMin: "number", betaMax: "number" },
  training: {
    batchSize: "integer",
    learningRate: "number",
    maxEpochs: "integer",
    lrPatience: "integer",
    lrFactor: "number",
    earlyStopPatience: "integer",
    validationFraction: "number",
    seed: "integer",
    maxShowers: "integer",
    gradClip: "number",
    ema: "number",
    energyEntryWeight: "number",
  },
  sampling: { steps: "integer", snr: "number", batchSize: "integer" },
  gan: { noiseDim: "integer", criticSteps: "integer", learningRate: "number", gradientPenalty: "number", maxEpochs: "integer" },
};

const defaults = {
  description: "",
  layout: "cartesian",
  preprocessing: { layerEnergies: false, energyDependentMean: false, energyDependentStd: false },
  network: { dropout: 0.1, fourierScale: 16, energyFourierScale: 16, positionEmbedding: false },
  sde: { sigmaMin: 0.01, sigmaMax: 50, betaMin: 0.1, betaMax: 20 },
  training: {
    learningRate: 1e-3,
    maxEpochs: 200,
    lrPatience: 10,
    lrFactor: 0.5,
    earlyStopPatience: 25,
    validationFraction: 0.2,
    seed: 1,
    maxShowers: 0,
    gradClip: 0,
    ema: 0,
    energyEntryWeight: 1,
  },
  sampling: { snr: 0.2, batchSize: 100 },
  gan: { noiseDim: 100, criticSteps: 5, learningRate: 1e-4, gradientPenalty: 10, maxEpochs: 200 },
};

function describe(value: unknown): string {
  if (Array.isArray(value)) return `array ${JSON.stringify(value).slice(0, 40)}`;
  if (value === null) return "null";
  return `${typeof value} ${JSON.stringify(value)}`;
}

function check(value: unknown, kind: Kind, key: string, source: string): void {
  const fail = (expected: string) => {
    throw new Error(`${source}: key '${key}' must be ${expected}, found ${describe(value)}`);
  };
  if (kind === "number") {
    if (typeof value !== "number" || !Number.isFinite(value)) fail("a number");
  } else if (kind === "integer") {
    if (typeof value !== "number" || !Number.isInteger(value)) fail("an integer");
  } else if (kind === "boolean") {
    if (typeof value !== "boolean") fail("true or false");
  } else if (kind === "string") {
    if (typeof value !== "string") fail("a string");
  } else if (kind === "number[]" || kind === "integer[]") {
    const integer = kind === "integer[]";
    if (!Array.isArray(value) || value.length === 0 || value.some((v) => typeof v !== "number" || (integer ? !Number.isInteger(v) : !Number.isFinite(v)))) {
      fail(integer ? "a non-empty array of integers" : "a non-empty array of numbers");
    }
  } else if ("oneOf" in kind && Array.isArray(kind.oneOf)) {
    if (typeof value !== "string" || !kind.oneOf.includes(value)) fail(`one of ${kind.oneOf.map((v) => `"${v}"`).join(", ")}`);
  } else {
    if (typeof value !== "object" || value === null || Array.isArray(value)) fail("an object");
    const object = value as Record<string, unknown>;
    const nested = kind as Schema;
    for (const k of Object.keys(object)) {
      if (!(k in nested)) {
        throw new Error(`${source}: unknown key '${key ? `${key}.` : ""}${k}'; allowed: ${Object.keys(nested).join(", ")}`);
      }
    }
    for (const [k, v] of Object.entries(nested)) {
      const path = key ? `${key}.${k}` : k;
      if (!(k in object)) throw new Error(`${source}: missing key '${path}'`);
      check(object[k], v, path, source);
    }
  }
}

function merge(base: unknown, override: unknown): unknown {
  if (typeof base !== "object" || base === null || Array.isArray(base)) return override ?? base;
  if (typeof override !== "object" || override === null || Array.isArray(override)) return override ?? base;
  const out: Record<string, unknown> = { ...(base as Record<string, unknown>) };
  for (const [k, v] of Object.entries(override as Record<string, unknown>)) out[k] = merge(out[k], v);
  return out;
}

/** Validates a parsed configuration (defaults filled in first); `source` names it in errors. */
export function parseModelConfig(raw: unknown, source: string): ModelConfig {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new Error(`${source}: a configuration must be a JSON object, found ${describe(raw)}`);
  }
  const config = merge(defaults, raw);
  check(config, schema, "", source);
  const parsed = config as ModelConfig;
  const expectedPooling = parsed.dataset.startsWith("1") ? 1 : 3;
  if (parsed.network.pooling.length !== expectedPooling) {
    throw new Error(`${source}: key 'network.pooling' needs ${expectedPooling} factor(s) for dataset ${parsed.dataset}, found [${parsed.network.pooling}]`);
  }
  if (parsed.preprocessing.layerEnergies && !parsed.dataset.startsWith("1")) {
    throw new Error(`${source}: key 'preprocessing.layerEnergies' applies to dataset 1 only, found dataset ${parsed.dataset}`);
  }
  const weight = parsed.training.energyEntryWeight;
  if (!(weight > 0)) throw new Error(`${source}: key 'training.energyEntryWeight' must be positive, found ${weight}`);
  if (weight !== 1 && !parsed.dataset.startsWith("1")) {
    throw new Error(`${source}: key 'training.energyEntryWeight' applies to dataset 1 only, found dataset ${parsed.dataset}`);
  }
  const ema = parsed.training.ema;
  if (!(ema >= 0 && ema < 1)) throw new Error(`${source}: key 'training.ema' must lie in [0, 1), found ${ema}`);
  const fraction = parsed.training.validationFraction;
  if (!(fraction > 0 && fraction < 1)) {
    throw new Error(`${source}: key 'training.validationFraction' must lie in (0, 1), found ${fraction}`);
  }
  return parsed;
}

export function loadModelConfig(path: string): ModelConfig {
  let text: string;
  try {
    text = fs.readFileSync(path, "utf8");
  } catch (error) {
    throw new Error(`cannot read configuration ${path}: ${(error as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new Error(`${path} is not valid JSON: ${(error as Error).message}`);
  }
  return parseModelConfig(raw, path);
}
