// Time to generate 100 showers (in model space, without the inverse preprocessing) with the
// WGAN-GP generator and with CaloScore's predictor-corrector sampler, for the configuration of each
// dataset in the CaloScore paper (Mikuni and Nachman, arXiv:2206.11898; configs/dataset1.json,
// dataset2.json, dataset3.json), in one process with the same batch size and thread count. Also prints the parameter counts of the three networks.
//
// The networks are untrained: generation time does not depend on the weights. CaloScore costs one
// score evaluation per step and the paper uses 100 steps (dataset 1) or 200 (datasets 2 and 3).
// For the datasets listed in --full the whole sampler is timed; for the others the bench times
// `--steps` score evaluations per batch (3 unless set) and extrapolates linearly to the paper's
// step count, which leaves out the sampler's elementwise work (noise draws, norms, drift). The
// output says which was done.
// NOTE: the extrapolation underestimates the sampler. On dataset 2 (batch 100, one thread, the
// shared 2-core development machine), 25 sampler steps took 1.13 times as long as 25 bare score
// evaluations.
//
//   node dist/bench/gan.js [--datasets 1,2,3] [--full 1] [--steps 3] [--repeat 3] [--threads N] [--json]
import * as path from "node:path";
import { loadGeometry, voxelCounts } from "../src/calo/binning";
import { flatModelSize } from "../src/calo/preprocess";
import { defaultGridSize } from "../src/calo/voxelize";
import { configureThreads, full, Generator, noGrad, rand, randn, tidy } from "../src/torch";
import { loadModelConfig, ModelConfig } from "../src/score/config";
import { paperSamplerSteps, samplePredictorCorrector } from "../src/score/pcSampler";
import { createScoreModel } from "../src/score/run";
import { createSde } from "../src/score/sde";
import { createGanNetworks } from "../src/gan/run";
import { sampleNoise } from "../src/gan/model";

const showers = 100;

interface DatasetResult {
  dataset: "1" | "2" | "3";
  modelShape: number[];
  batchSize: number;
  parameters: { generator: number; critic: number; scoreModel: number };
  ganSeconds: number;
  scoreSteps: number;
  scoreStepsTimed: number;
  scoreSeconds: number;
  /** true when scoreSeconds was extrapolated from fewer steps than scoreSteps. */
  extrapolated: boolean;
  ratio: number;
}

function argument(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

/** Model input shape of a paper configuration, as the preprocessing builds it (cartesian layout for datasets 2 and 3). */
function paperModelShape(config: ModelConfig): number[] {
  if (config.dataset === "1-photons" || config.dataset === "1-pions") return [1, flatModelSize(voxelCounts[config.dataset])];
  const geometry = loadGeometry(config.dataset);
  const size = defaultGridSize(geometry);
  return [1, geometry.layers.length, size, size];
}

/** Batch sizes that add up to `total`, each at most `batch`. */
function batches(total: number, batch: number): number[] {
  const sizes: number[] = [];
  for (let done = 0; done < total; done += batch) sizes.push(Math.min(batch, total - done));
  return sizes;
}

/** Minimum over `repeat` runs of fn's wall time in seconds, after one warm-up run. */
function minimumSeconds(repeat: number, fn: () => void): number {
  fn();
  let best = Infinity;
  for (let i = 0; i < repeat; i++) {
    const start = process.hrtime.bigint();
    fn();
    best = Math.min(best, Number(process.hrtime.bigint() - start) / 1e9);
  }
  return best;
}

function benchDataset(name: "1" | "2" | "3", stepsTimed: number, repeat: number, timeFullSampler: boolean): DatasetResult {
  const file = path.resolve(__dirname, "../../configs", `dataset${name}.json`);
  const config = loadModelConfig(file);
  const modelShape = paperModelShape(config);
  const batchSize = config.sampling.batchSize;
  const sizes = batches(showers, batchSize);

  const { generator, critic } = createGanNetworks(config, modelShape);
  generator.eval();
  const ganSeconds = minimumSeconds(repeat, () =>
    noGrad(() => {
      for (const size of sizes) {
        tidy(() => generator.forward(sampleNoise(size, generator.noiseDim, new Generator(1)), rand([size])));
      }
    }),
  );

  const sde = createSde("subVP", config.sde);
  const model = createScoreModel(config, sde, modelShape);
  model.eval();
  const scoreSteps = paperSamplerSteps[name];
  const timed = timeFullSampler ? scoreSteps : Math.min(stepsTimed, scoreSteps);
  let scoreSeconds: number;
  if (timeFullSampler) {
    scoreSeconds = minimumSeconds(Math.max(1, repeat - 1), () => {
      for (const size of sizes) {
        tidy(() => samplePredictorCorrector(model, sde, modelShape, rand([size]), { steps: scoreSteps, generator: new Generator(2) }).samples);
      }
    });
  } else {
    // The sampler rejects 19 steps or fewer for subVP, so the extrapolation times the score network
    // alone. One evaluation per step is the sampler's whole network cost.
    const timedSeconds = minimumSeconds(Math.max(1, repeat - 1), () =>
      noGrad(() => {
        for (const size of sizes) {
          const x = tidy(() => randn([size, ...modelShape], { generator: new Generator(2) }));
          const condition = rand([size]);
          for (let step = 0; step < timed; step++) {
            tidy(() => model.score(x, full([size], 1 - step / scoreSteps), condition));
          }
          x.dispose();
          condition.dispose();
        }
      }),
    );
    scoreSeconds = (timedSeconds * scoreSteps) / timed;
  }

  const result: DatasetResult = {
    dataset: name,
    modelShape,
    batchSize,
    parameters: { generator: generator.parameterCount(), critic: critic.parameterCount(), scoreModel: model.parameterCount() },
    ganSeconds,
    scoreSteps,
    scoreStepsTimed: timed,
    scoreSeconds,
    extrapolated: timed < scoreSteps,
    ratio: scoreSeconds / ganSeconds,
  };
  generator.dispose();
  critic.dispose();
  model.dispose();
  return result;
}

function main(): void {
  const threads = configureThreads(process.argv.includes("--threads") ? Number(argument("threads", "1")) : undefined);
  const datasets = argument("datasets", "1,2,3").split(",") as ("1" | "2" | "3")[];
  const stepsTimed = Number(argument("steps", "3"));
  const repeat = Number(argument("repeat", "3"));
  const fullDatasets = argument("full", "").split(",");
  for (const name of datasets) {
    if (!["1", "2", "3"].includes(name)) throw new Error(`--datasets must list 1, 2 or 3, found '${name}'`);
  }
  if (!Number.isInteger(stepsTimed) || stepsTimed < 1) throw new Error(`--steps must be a positive integer, found '${argument("steps", "")}'`);
  if (!Number.isInteger(repeat) || repeat < 1) throw new Error(`--repeat must be a positive integer, found '${argument("repeat", "")}'`);

  const results: DatasetResult[] = [];
  for (const name of datasets) {
    const result = benchDataset(name, stepsTimed, repeat, fullDatasets.includes(name));
    results.push(result);
    if (!process.argv.includes("--json")) {
      const p = result.parameters;
      console.log(
        `dataset ${name}: input [${result.modelShape.join(", ")}], batches of ${result.batchSize}; parameters: generator ${p.generator.toLocaleString("en-US")}, ` +
          `critic ${p.critic.toLocaleString("en-US")}, score model ${p.scoreModel.toLocaleString("en-US")}`,
      );
      const method = result.extrapolated ? `extrapolated from ${result.scoreStepsTimed} timed score evaluations per batch` : "full sampler timed";
      console.log(
        `  ${showers} showers: WGAN-GP ${result.ganSeconds.toFixed(3)} s, CaloScore PC sampler (${result.scoreSteps} steps, ${method}) ` +
          `${result.scoreSeconds.toFixed(1)} s, ratio ${result.ratio.toFixed(0)}`,
      );
    }
  }
  if (process.argv.includes("--json")) console.log(JSON.stringify({ threads, showers, results }, null, 2));
}

main();
