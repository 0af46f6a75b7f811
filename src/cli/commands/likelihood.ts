// `caloscore likelihood`: log-likelihood of showers under a trained score model, through the
// probability-flow ODE, written as JSON.
import * as fs from "node:fs";

import { initHdf5, openShowerFile } from "../../calo/hdf5";
import { forwardPreprocess } from "../../calo/preprocess";
import { configureThreads, Generator, tensor, writeFileAtomic } from "../../torch";
import { logLikelihood, preprocessingLogJacobian } from "../../score/likelihood";
import { loadScoreRun } from "../../score/run";
import { trainTimeMin } from "../../score/sde";
import { epochSeed } from "../../score/train";
import { flag, optionalNumber, optionalString, parseOptions, requireString } from "../args";
import { progressReporter } from "../progress";

export const summary = "log-likelihood and bits per dimension of showers under a trained score model";

const help = `usage: caloscore likelihood --run RUN/ --data FILE.h5 --out FILE.json [options]

Integrates the probability-flow ODE of the model in RUN/ from each shower (preprocessed, at
t = 1e-5) to t = 1 with the adaptive Dormand-Prince solver, together with the divergence of its
drift, and writes per-shower log-likelihoods (nats) and bits per dimension in the model's
preprocessed space. Runs with the cylindrical layout also get the data-space log-likelihood of
the voxel energies, log p(E | E_inc) = log p_model + log |det dz/dE|.

options:
  --run DIR          trained run folder (caloscore train --out)
  --data FILE        CaloChallenge shower file of the run's dataset
  --out FILE         JSON output, written atomically
  --events N         showers to evaluate, from the start of FILE (default 100)
  --exact            exact divergence: one backward pass per model entry (384 for dataset 1,
                     6480 or more for datasets 2 and 3) per ODE evaluation
  --probes K         Rademacher probe vectors of the Skilling-Hutchinson estimator (default 1)
  --rtol R, --atol A solver tolerances (default 1e-5 each)
  --batch N          showers integrated together (default 32)
  --seed S           integer seed for the probe vectors (default 1)
  --checkpoint WHICH best (default) or last
  --threads N        intra-op threads (default: CALOSCORE_THREADS or all cores)`;

function meanAndStandardError(values: ArrayLike<number>): { mean: number; standardError: number } {
  const n = values.length;
  let mean = 0;
  for (let i = 0; i < n; i++) mean += values[i] / n;
  let squares = 0;
  for (let i = 0; i < n; i++) squares += (values[i] - mean) ** 2;
  return { mean, standardError: n > 1 ? Math.sqrt(squares / (n - 1) / n) : Number.NaN };
}

export async function run(args: string[]): Promise<number> {
  const parsed = parseOptions("likelihood", args, {
    run: { type: "string" },
    data: { type: "string" },
    out: { type: "string" },
    events: { type: "string" },
    exact: { type: "boolean" },
    probes: { type: "string" },
    rtol: { type: "string" },
    atol: { type: "string" },
    batch: { type: "string" },
    seed: { type: "string" },
    checkpoint: { type: "string" },
    threads: { type: "string" },
  });
  if (parsed.values.help) {
    console.log(help);
    return 0;
  }
  const runDir = requireString("likelihood", parsed, "run");
  const dataPath = requireString("likelihood", parsed, "data");
  const out = requireString("likelihood", parsed, "out");
  const exact = flag(parsed, "exact");
  const probes = optionalNumber("likelihood", parsed, "probes", { integer: true, min: 1 });
  if (exact && probes !== undefined) throw new Error("likelihood: --exact and --probes exclude each other; choose one");
  const requested = optionalNumber("likelihood", parsed, "events", { integer: true, min: 1 }) ?? 100;
  const rtol = optionalNumber("likelihood", parsed, "rtol", { min: 0 }) ?? 1e-5;
  const atol = optionalNumber("likelihood", parsed, "atol", { min: 0 }) ?? 1e-5;
  const batch = optionalNumber("likelihood", parsed, "batch", { integer: true, min: 1 }) ?? 32;
  const seed = optionalNumber("likelihood", parsed, "seed", { integer: true, min: 0 }) ?? 1;
  const checkpointChoice = optionalString(parsed, "checkpoint") ?? "best";
  if (checkpointChoice !== "best" && checkpointChoice !== "last") {
    throw new Error(`likelihood: --checkpoint must be best or last, found '${checkpointChoice}'`);
  }
  configureThreads(optionalNumber("likelihood", parsed, "threads", { integer: true, min: 1 }));
  await initHdf5();

  const loaded = loadScoreRun(runDir, checkpointChoice);
  const file = openShowerFile(dataPath);
  try {
    const { preprocessing, model, sde } = loaded;
    if (file.dataset !== preprocessing.dataset) {
      throw new Error(`likelihood: ${dataPath} contains dataset ${file.dataset} showers; the run models dataset ${preprocessing.dataset}`);
    }
    const events = Math.min(requested, file.count);
    const dataSpace = preprocessing.layout === "cylindrical";
    const divergence = exact ? "exact" : "hutchinson";
    console.log(
      `likelihood: ${events} showers of ${dataPath}, ${divergence} divergence${exact ? "" : ` with ${probes ?? 1} probe(s)`}, ` +
        `rtol ${rtol}, atol ${atol}, ${sde.name} SDE, ${loaded.checkpoint}`,
    );

    const logp = new Float64Array(events);
    const bitsPerDimension = new Float64Array(events);
    const dataLogp = dataSpace ? new Float64Array(events) : null;
    let evaluations = 0;
    let dimensions = 0;
    const progress = progressReporter();
    const started = Date.now();
    for (let start = 0, index = 0; start < events; start += batch, index++) {
      const end = Math.min(start + batch, events);
      const energies = file.readEnergies(start, end);
      const showers = file.readShowers(start, end);
      const inputs = forwardPreprocess(preprocessing, energies, showers);
      const x = tensor(inputs.x, [end - start, ...preprocessing.modelShape]);
      const condition = tensor(inputs.condition, [end - start]);
      const result = logLikelihood(model, sde, x, condition, {
        divergence,
        probes: probes ?? 1,
        rtol,
        atol,
        timeMin: trainTimeMin,
        generator: new Generator(epochSeed(seed, index, 4)),
      });
      logp.set(result.logLikelihood.toFloat64(), start);
      bitsPerDimension.set(result.bitsPerDimension.toFloat64(), start);
      for (const t of [x, condition, result.logLikelihood, result.bitsPerDimension, result.priorLogProb]) t.dispose();
      evaluations += result.evaluations;
      dimensions = result.dimensions;
      if (dataLogp !== null) {
        const jacobian = preprocessingLogJacobian(preprocessing, showers, energies);
        for (let i = 0; i < end - start; i++) dataLogp[start + i] = logp[start + i] + jacobian[i];
      }
      progress.update("likelihood", end / events, `${end}/${events} showers`);
      progress.log(`likelihood: showers ${start}-${end - 1}: ${result.evaluations} evaluations, ${((Date.now() - started) / 1000).toFixed(1)} s so far`);
    }
    progress.done();

    const summaryOf = (values: Float64Array | null) => (values === null ? null : meanAndStandardError(values));
    const report = {
      run: fs.realpathSync(runDir),
      checkpoint: loaded.checkpoint,
      data: dataPath,
      dataset: preprocessing.dataset,
      layout: preprocessing.layout,
      sde: sde.name,
      events,
      dimensions,
      divergence,
      probes: exact ? null : (probes ?? 1),
      rtol,
      atol,
      timeMin: trainTimeMin,
      evaluations,
      units: { logLikelihood: "nats", bitsPerDimension: "bits", dataLogLikelihood: "nats, density in MeV^-voxels" },
      summary: {
        logLikelihood: summaryOf(logp),
        bitsPerDimension: summaryOf(bitsPerDimension),
        dataLogLikelihood: summaryOf(dataLogp),
      },
      showers: {
        logLikelihood: Array.from(logp),
        bitsPerDimension: Array.from(bitsPerDimension),
        dataLogLikelihood: dataLogp === null ? null : Array.from(dataLogp),
      },
      note: dataSpace ? null : `no data-space likelihood: the ${preprocessing.layout} layout is not a bijection of voxel energies`,
    };
    writeFileAtomic(out, JSON.stringify(report, null, 2) + "\n");
    const mean = report.summary.logLikelihood!;
    console.log(
      `likelihood: mean log p ${mean.mean.toFixed(2)} +- ${mean.standardError.toFixed(2)} nats, ` +
        `${report.summary.bitsPerDimension!.mean.toFixed(4)} bits per dimension; wrote ${out}`,
    );
    return 0;
  } finally {
    file.close();
    loaded.model.dispose();
  }
}
