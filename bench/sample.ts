// Time to generate 100 showers with the predictor-corrector sampler for the paper's three
// configurations (dataset 1: 1D U-Net, 100 steps; datasets 2 and 3: 3D U-Net, 200 steps), in
// caloscore and in the same sampling loop in PyTorch (bench/sample_reference.py on the U-Net of
// bench/unet_reference.py), in one run with the same batch, threads and schedule.
//
// A full run of dataset 3 takes hours on a few CPU cores, so by default the first steps of each
// schedule are timed (after one untimed warm-up step) and the full time is extrapolated as
// per-step time x steps; the JSON says so. The CaloScore paper reports 4.0 s, 5.8 s and 33.4 s
// per 100 showers on one A100 GPU.
//
// NOTE: at batch 100, dataset 3 needed more than 12 GB of resident memory in caloscore (the process
// was stopped by the kernel on a 23 GB machine), so run it with a smaller --batch. Times per 100
// showers are then scaled linearly from the batch, which is an estimate.
//
//   node dist/bench/sample.js [--datasets 1,2,3] [--timed 2] [--warmup 1] [--batch 100] [--threads N]
import { execFileSync } from "node:child_process";
import * as path from "node:path";
import { configureThreads, Generator, rand } from "../src/torch";
import { createSde, sampleTimeMin } from "../src/score/sde";
import { paperSamplerSteps, samplePredictorCorrector } from "../src/score/pcSampler";
import { UNetScoreModel } from "../src/score/unet";
import { paperNetworks } from "./train";

/** Seconds per 100 showers on one A100, from the CaloScore paper (arXiv:2206.11898). */
const paperSecondsPer100: Record<string, number> = { "1": 4.0, "2": 5.8, "3": 33.4 };

function argument(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

interface Timing {
  stepMs: number;
  parameters: number;
}

/**
 * Times steps warmup .. warmup + timed - 1 of the `total`-step schedule. The sampler runs
 * warmup + timed steps down to the time that the full schedule reaches after them, so every step
 * has the full schedule's t and dt.
 */
function timeTypeScript(unet: (typeof paperNetworks)[number]["unet"], batch: number, total: number, timed: number, warmup: number): Timing {
  const sde = createSde("subVP");
  const model = new UNetScoreModel(unet, sde, new Generator(0));
  model.eval();
  const condition = rand([batch], { generator: new Generator(1) });
  const steps = warmup + timed;
  const timeMin = 1 - (steps * (1 - sampleTimeMin)) / total;
  let start = process.hrtime.bigint();
  const result = samplePredictorCorrector(model, sde, unet.inputShape, condition, { steps, timeMin, generator: new Generator(2) }, (step) => {
    if (step === warmup) start = process.hrtime.bigint();
  });
  const stepMs = Number(process.hrtime.bigint() - start) / 1e6 / timed;
  const finite = result.samples.isfinite().logicalNot().sum().item() === 0;
  if (!finite) console.error("warning: caloscore produced non-finite samples");
  result.samples.dispose();
  condition.dispose();
  const parameters = model.parameterCount();
  model.dispose();
  return { stepMs, parameters };
}

function timePyTorch(
  unet: (typeof paperNetworks)[number]["unet"],
  batch: number,
  total: number,
  timed: number,
  warmup: number,
  threads: number,
): Timing & { flops: number } {
  const script = path.resolve(__dirname, "../../bench/sample_reference.py");
  const output = execFileSync(
    "/usr/bin/python3",
    [script, "--config", JSON.stringify(unet), "--batch", String(batch), "--total", String(total), "--timed", String(timed), "--warmup", String(warmup), "--threads", String(threads)],
    { encoding: "utf8", maxBuffer: 16 * 1024 * 1024 },
  );
  const result = JSON.parse(output.trim().split("\n").pop()!) as { step_ms: number; parameters: number; flops_per_evaluation: number };
  return { stepMs: result.step_ms, parameters: result.parameters, flops: result.flops_per_evaluation };
}

function main(): void {
  const threads = configureThreads(argument("threads", "") === "" ? undefined : Number(argument("threads", "")));
  const timed = Number(argument("timed", "2"));
  const warmup = Number(argument("warmup", "1"));
  const batch = Number(argument("batch", "100"));
  const wanted = argument("datasets", "1,2,3").split(",");
  const results: Record<string, unknown> = {
    threads,
    batch,
    timedSteps: timed,
    warmupSteps: warmup,
    method: "time per step measured on the first steps of the schedule; full time = time per step x steps (extrapolated)",
  };

  for (const config of paperNetworks.filter((c) => wanted.includes(c.name))) {
    const total = paperSamplerSteps[config.name as "1" | "2" | "3"];
    const ts = timeTypeScript(config.unet, batch, total, timed, warmup);
    const torch = timePyTorch(config.unet, batch, total, timed, warmup, threads);
    const gflops = (ms: number) => torch.flops / (ms / 1000) / 1e9;
    results[`dataset${config.name}`] = {
      steps: total,
      networkEvaluations: total,
      parameters: ts.parameters,
      torchParameters: torch.parameters,
      gflopPerEvaluation: torch.flops / 1e9,
      stepMs: ts.stepMs,
      torchStepMs: torch.stepMs,
      gflopsPerSecond: gflops(ts.stepMs),
      torchGflopsPerSecond: gflops(torch.stepMs),
      extrapolatedSeconds: (ts.stepMs * total) / 1000,
      torchExtrapolatedSeconds: (torch.stepMs * total) / 1000,
      extrapolatedSecondsPer100: ((ts.stepMs * total) / 1000) * (100 / batch),
      torchExtrapolatedSecondsPer100: ((torch.stepMs * total) / 1000) * (100 / batch),
      speedRatio: torch.stepMs / ts.stepMs,
      paperA100SecondsPer100: paperSecondsPer100[config.name],
    };
    console.error(
      `dataset ${config.name}: caloscore ${ts.stepMs.toFixed(0)} ms/step, PyTorch ${torch.stepMs.toFixed(0)} ms/step; ` +
        `${total} steps for ${batch} showers extrapolate to ${((ts.stepMs * total) / 1000).toFixed(0)} s and ${((torch.stepMs * total) / 1000).toFixed(0)} s`,
    );
  }
  console.log(JSON.stringify(results, null, 2));
}

if (require.main === module) main();
