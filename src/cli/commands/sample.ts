// `caloscore sample`: generates showers with a trained score model or WGAN-GP into a CaloChallenge
// HDF5 file, chunk by chunk, resuming an interrupted run from the chunks already written.
import * as fs from "node:fs";
import * as path from "node:path";

import { createShowerFile, initHdf5, openShowerFile } from "../../calo/hdf5";
import { energyCondition, inversePreprocess } from "../../calo/preprocess";
import { configureThreads, Generator, tensor, writeFileAtomic } from "../../torch";
import { sampleProbabilityFlow } from "../../score/odeSampler";
import { samplePredictorCorrector, SamplerResult, StepCallback } from "../../score/pcSampler";
import { loadScoreRun, LoadedScoreRun, readRunInfo, readTrainingEnergies } from "../../score/run";
import { LoadedGanRun, loadGanRun } from "../../gan/run";
import { sampleTimeMin } from "../../score/sde";
import { epochSeed, mulberry32 } from "../../score/train";
import { optionalNumber, optionalString, parseOptions, requireString } from "../args";
import { progressReporter } from "../progress";

export const summary = "generate showers with a trained score model or WGAN-GP into a CaloChallenge HDF5 file";

const help = `usage: caloscore sample --run RUN/ --events N --out FILE.h5 [options]

Draws N showers from the score model (or WGAN-GP generator) in RUN/, maps them back to voxel
energies (MeV) with the run's preprocessing and writes FILE.h5 (incident_energies, showers) in
chunks of --batch showers.
The file is written as FILE.h5.partial and renamed when complete. Running the same command again
after an interruption keeps the chunks already written and continues; each chunk has its own
seed, so the result equals an uninterrupted run.

options:
  --run DIR             trained run folder (caloscore train --out)
  --events N            number of showers to generate
  --out FILE            output HDF5 file
  --energies-from FILE  copy the incident energies of N showers of FILE taken at even intervals
                        (all of them when N is its count; default: draw them from the training
                        showers' energies stored with the run)
  --sampler NAME        pc (predictor-corrector, default), ode (probability flow, Heun steps) or
                        ode-rk45 (probability flow, adaptive Dormand-Prince)
  --steps N             time steps of pc and ode (default: the run configuration's sampling.steps)
  --snr R               signal-to-noise ratio of the pc corrector (default: sampling.snr)
  --rtol R, --atol A    tolerances of ode-rk45 (default 1e-5 each)
  --batch N             showers per chunk (default: sampling.batchSize)
  --seed S              integer seed for energies and noise (default 1)
  --checkpoint WHICH    best (default) or last; a wgan-gp run has only last
                        (--sampler, --steps and --snr do not apply to it)
  --minutes M           stop after the first chunk that ends after M minutes; run again to resume
  --threads N           intra-op threads (default: CALOSCORE_THREADS or all cores)`;

type SamplerName = "pc" | "ode" | "ode-rk45";
const samplerNames: readonly SamplerName[] = ["pc", "ode", "ode-rk45"];

/** Settings that decide the generated showers; a resumed run must use the same ones. */
interface SampleSettings {
  run: string;
  checkpoint: string;
  events: number;
  energiesFrom: string | null;
  sampler: SamplerName;
  steps: number;
  snr: number;
  rtol: number;
  atol: number;
  batch: number;
  seed: number;
}

/** Incident energies in MeV for all N showers: copied from a file or drawn from the run's. */
function incidentEnergies(settings: SampleSettings, runDir: string, dataset: string): Float32Array {
  if (settings.energiesFrom !== null) {
    const reference = openShowerFile(settings.energiesFrom);
    try {
      if (reference.dataset !== dataset) {
        throw new Error(`sample: ${settings.energiesFrom} contains dataset ${reference.dataset} showers; the run models dataset ${dataset}`);
      }
      if (reference.count < settings.events) {
        throw new Error(`sample: ${settings.energiesFrom} has ${reference.count} showers; --events ${settings.events} needs at least as many`);
      }
      // Rows at even intervals, so that a file ordered by energy (as simulated dataset-1 files
      // are) still gives every energy when N is below its count; N equal to the count copies all.
      const all = reference.readEnergies(0, reference.count);
      return Float32Array.from({ length: settings.events }, (_, i) => all[Math.floor((i * reference.count) / settings.events)]);
    } finally {
      reference.close();
    }
  }
  const stored = readTrainingEnergies(runDir);
  if (stored.length === 0) throw new Error(`sample: ${runDir} stores no training energies to draw from; use --energies-from`);
  const random = mulberry32(epochSeed(settings.seed, 0, 3));
  return Float32Array.from({ length: settings.events }, () => stored[Math.floor(random() * stored.length)]);
}

/** A trained score run or WGAN-GP run; only a score run has an SDE. */
type LoadedRun = LoadedScoreRun | LoadedGanRun;

/** Runs the chosen sampler (or the GAN generator) on one chunk. condition: [n] -> samples [n, ...modelShape]. */
function sampleChunk(loaded: LoadedRun, settings: SampleSettings, condition: Float32Array, chunk: number, onStep: StepCallback): SamplerResult {
  const generator = new Generator(epochSeed(settings.seed, chunk, 1));
  const conditionTensor = tensor(condition, [condition.length]);
  try {
    if (!("sde" in loaded)) {
      const samples = loaded.generate(conditionTensor, generator);
      onStep(1, 1, sampleTimeMin);
      return { samples, evaluations: 1 };
    }
    const { model, sde, preprocessing } = loaded;
    if (settings.sampler === "pc") {
      return samplePredictorCorrector(model, sde, preprocessing.modelShape, conditionTensor, { steps: settings.steps, snr: settings.snr, generator }, onStep);
    }
    const method = settings.sampler === "ode" ? "heun" : "rk45";
    return sampleProbabilityFlow(
      model,
      sde,
      preprocessing.modelShape,
      conditionTensor,
      { method, steps: settings.steps, rtol: settings.rtol, atol: settings.atol, generator },
      onStep,
    );
  } finally {
    conditionTensor.dispose();
  }
}

function readSettings(parsed: ReturnType<typeof parseOptions>, loaded: LoadedRun, runDir: string): SampleSettings {
  const sampling = loaded.info.config.sampling;
  const sampler = (optionalString(parsed, "sampler") ?? "pc") as SamplerName;
  if (!samplerNames.includes(sampler)) throw new Error(`sample: --sampler must be one of ${samplerNames.join(", ")}, found '${sampler}'`);
  const events = optionalNumber("sample", parsed, "events", { integer: true, min: 1 });
  if (events === undefined) throw new Error("sample: missing required option --events");
  const seed = optionalNumber("sample", parsed, "seed", { integer: true, min: 0 }) ?? 1;
  if (!Number.isSafeInteger(seed)) throw new Error(`sample: --seed must be below 2^53, found ${seed}`);
  return {
    run: fs.realpathSync(runDir),
    checkpoint: loaded.checkpoint,
    events,
    energiesFrom: optionalString(parsed, "energies-from") ?? null,
    sampler,
    steps: optionalNumber("sample", parsed, "steps", { integer: true, min: 1 }) ?? sampling.steps,
    snr: optionalNumber("sample", parsed, "snr", { min: 0 }) ?? sampling.snr,
    rtol: optionalNumber("sample", parsed, "rtol", { min: 0 }) ?? 1e-5,
    atol: optionalNumber("sample", parsed, "atol", { min: 0 }) ?? 1e-5,
    batch: optionalNumber("sample", parsed, "batch", { integer: true, min: 1 }) ?? sampling.batchSize,
    seed,
  };
}

/**
 * Checks that a partial file was started with the same settings, since its chunks would otherwise
 * mix two different samplings. Writes the settings when starting afresh.
 */
function checkResumeSettings(settingsPath: string, settings: SampleSettings, partialExists: boolean): void {
  if (partialExists && fs.existsSync(settingsPath)) {
    const previous = JSON.parse(fs.readFileSync(settingsPath, "utf8")) as SampleSettings;
    const changed = (Object.keys(settings) as (keyof SampleSettings)[]).filter((key) => previous[key] !== settings[key]);
    if (changed.length > 0) {
      const details = changed.map((key) => `${key} ${JSON.stringify(previous[key])} -> ${JSON.stringify(settings[key])}`).join(", ");
      throw new Error(`sample: the partial output was started with other settings (${details}); rerun with the same options or delete ${settingsPath} and the .partial file`);
    }
    return;
  }
  writeFileAtomic(settingsPath, JSON.stringify(settings, null, 2) + "\n");
}

export async function run(args: string[]): Promise<number> {
  const parsed = parseOptions("sample", args, {
    run: { type: "string" },
    events: { type: "string" },
    out: { type: "string" },
    "energies-from": { type: "string" },
    sampler: { type: "string" },
    steps: { type: "string" },
    snr: { type: "string" },
    rtol: { type: "string" },
    atol: { type: "string" },
    batch: { type: "string" },
    seed: { type: "string" },
    checkpoint: { type: "string" },
    minutes: { type: "string" },
    threads: { type: "string" },
  });
  if (parsed.values.help) {
    console.log(help);
    return 0;
  }
  const runDir = requireString("sample", parsed, "run");
  const out = requireString("sample", parsed, "out");
  const checkpointChoice = optionalString(parsed, "checkpoint") ?? "best";
  if (checkpointChoice !== "best" && checkpointChoice !== "last") {
    throw new Error(`sample: --checkpoint must be best or last, found '${checkpointChoice}'`);
  }
  const minutes = optionalNumber("sample", parsed, "minutes", { min: 0 });
  configureThreads(optionalNumber("sample", parsed, "threads", { integer: true, min: 1 }));
  await initHdf5();

  const loaded: LoadedRun = readRunInfo(runDir).model === "wgan-gp" ? loadGanRun(runDir) : loadScoreRun(runDir, checkpointChoice);
  try {
    const settings = readSettings(parsed, loaded, runDir);
    const { preprocessing } = loaded;
    const energies = incidentEnergies(settings, runDir, preprocessing.dataset);
    const partialPath = `${out}.partial`;
    const settingsPath = `${out}.partial.json`;
    fs.mkdirSync(path.dirname(path.resolve(out)), { recursive: true });
    checkResumeSettings(settingsPath, settings, fs.existsSync(partialPath));

    const writer = createShowerFile(out, preprocessing.voxels, { resume: true });
    const started = Date.now();
    const chunks = Math.ceil(settings.events / settings.batch);
    if (writer.count > 0) console.log(`sample: resuming ${partialPath} after ${writer.count} of ${settings.events} showers`);
    const method =
      "sde" in loaded
        ? `${settings.sampler} ` +
          `(${settings.sampler === "ode-rk45" ? `rtol ${settings.rtol}, atol ${settings.atol}` : `${settings.steps} steps`}` +
          `${settings.sampler === "pc" ? `, snr ${settings.snr}` : ""}), ${loaded.sde.name} SDE`
        : "the WGAN-GP generator";
    console.log(`sample: ${settings.events} showers of dataset ${preprocessing.dataset} with ${method}, ${loaded.checkpoint}, chunks of ${settings.batch}`);

    const progress = progressReporter();
    for (let chunk = Math.floor(writer.count / settings.batch); chunk < chunks; chunk++) {
      const start = chunk * settings.batch;
      const end = Math.min(start + settings.batch, settings.events);
      const chunkEnergies = energies.slice(start, end);
      const chunkStarted = Date.now();
      const onStep: StepCallback = (step, total, t) => {
        const fraction = total === null ? (1 - t) / (1 - sampleTimeMin) : step / total;
        progress.update(`chunk ${chunk + 1}/${chunks}`, fraction, total === null ? `t = ${t.toFixed(4)}` : `step ${step}/${total}`);
      };

      const result = sampleChunk(loaded, settings, energyCondition(preprocessing, chunkEnergies), chunk, onStep);
      const values = result.samples.toFloat32();
      result.samples.dispose();
      const showers = inversePreprocess(preprocessing, chunkEnergies, values);

      // Appending only the rows past writer.count keeps the file exact even if a partial file ends
      // inside a chunk.
      const skip = writer.count - start;
      writer.append(chunkEnergies.slice(skip), showers.slice(skip * preprocessing.voxels));
      const seconds = (Date.now() - chunkStarted) / 1000;
      progress.log(
        `sample: chunk ${chunk + 1}/${chunks}: ${end - start} showers in ${seconds.toFixed(1)} s, ` +
          `${result.evaluations} network evaluations, ${((end - start) / seconds).toFixed(2)} showers/s`,
      );
      if (minutes !== undefined && Date.now() - started >= minutes * 60_000 && end < settings.events) {
        progress.done();
        console.log(`sample: stopped after ${minutes} minutes with ${writer.count} of ${settings.events} showers in ${partialPath}; run the same command again to continue`);
        return 0;
      }
    }
    progress.done();
    writer.finish();
    fs.rmSync(settingsPath, { force: true });
    console.log(`sample: wrote ${settings.events} showers to ${out} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    return 0;
  } finally {
    if ("sde" in loaded) loaded.model.dispose();
    else loaded.dispose();
  }
}
