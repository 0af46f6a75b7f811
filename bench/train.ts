// Training throughput of the paper's score networks (datasets 1, 2, 3) in caloscore and in the
// same network in PyTorch (bench/unet_reference.py), measured in one run with the same batch,
// thread count, warm-up and step count. Prints one JSON object.
//
//   node dist/bench/train.js [--datasets 1,2,3] [--steps 3] [--threads N]
import { execFileSync } from "node:child_process";
import * as path from "node:path";
import { configureThreads, Generator, rand, randn, tidy, optim } from "../src/torch";
import { createSde } from "../src/score/sde";
import { denoisingScoreMatchingLoss } from "../src/score/loss";
import { UNetConfig, UNetScoreModel } from "../src/score/unet";

interface PaperConfig {
  name: string;
  batch: number;
  unet: UNetConfig;
}

export const paperNetworks: PaperConfig[] = [
  { name: "1", batch: 128, unet: { dims: 1, inputShape: [1, 384], channels: [80, 320, 1280], kernel: 5, pooling: [4], embedding: 256, dropout: 0.1 } },
  { name: "2", batch: 128, unet: { dims: 3, inputShape: [1, 45, 12, 12], channels: [32, 64, 128], kernel: 3, pooling: [3, 2, 2], embedding: 128, dropout: 0.1 } },
  { name: "3", batch: 64, unet: { dims: 3, inputShape: [1, 45, 32, 32], channels: [64, 64, 128], kernel: 3, pooling: [3, 2, 2], embedding: 128, dropout: 0.1 } },
];

function argument(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

function timeTypeScript(config: PaperConfig, steps: number, warmup: number): { stepMs: number; parameters: number } {
  const sde = createSde("subVP");
  const model = new UNetScoreModel(config.unet, sde, new Generator(0));
  const optimizer = new optim.Adam(model.parameters(), { lr: 1e-3 });
  const x = randn([config.batch, ...config.unet.inputShape]);
  const condition = rand([config.batch]);
  const step = () =>
    tidy(() => {
      optimizer.zeroGrad();
      denoisingScoreMatchingLoss(model, sde, x, condition).backward();
      optimizer.step();
    });
  for (let i = 0; i < warmup; i++) step();
  const start = process.hrtime.bigint();
  for (let i = 0; i < steps; i++) step();
  const stepMs = Number(process.hrtime.bigint() - start) / 1e6 / steps;
  const parameters = model.parameterCount();
  optimizer.dispose();
  model.dispose();
  x.dispose();
  condition.dispose();
  return { stepMs, parameters };
}

function timePyTorch(config: PaperConfig, steps: number, warmup: number, threads: number): { stepMs: number; parameters: number } {
  const script = path.resolve(__dirname, "../../bench/unet_reference.py");
  const output = execFileSync(
    "/usr/bin/python3",
    [script, "--config", JSON.stringify(config.unet), "--batch", String(config.batch), "--steps", String(steps), "--warmup", String(warmup), "--threads", String(threads), "--mode", "train"],
    { encoding: "utf8" },
  );
  const result = JSON.parse(output.trim().split("\n").pop()!) as { step_ms: number; parameters: number };
  return { stepMs: result.step_ms, parameters: result.parameters };
}

function main(): void {
  const threads = configureThreads(argument("threads", "") === "" ? undefined : Number(argument("threads", "")));
  const steps = Number(argument("steps", "3"));
  const warmup = 1;
  const wanted = argument("datasets", "1,2,3").split(",");
  const results: Record<string, unknown> = { threads, steps, warmup };
  for (const config of paperNetworks.filter((c) => wanted.includes(c.name))) {
    const ts = timeTypeScript(config, steps, warmup);
    const torch = timePyTorch(config, steps, warmup, threads);
    results[`dataset${config.name}`] = {
      batch: config.batch,
      parameters: ts.parameters,
      torch_parameters: torch.parameters,
      train_step_ms: ts.stepMs,
      torch_train_step_ms: torch.stepMs,
      showers_per_second: (1000 * config.batch) / ts.stepMs,
      torch_showers_per_second: (1000 * config.batch) / torch.stepMs,
      throughput_ratio: torch.stepMs / ts.stepMs,
    };
    console.error(`dataset ${config.name}: caloscore ${ts.stepMs.toFixed(0)} ms/step, PyTorch ${torch.stepMs.toFixed(0)} ms/step`);
  }
  console.log(JSON.stringify(results, null, 2));
}

if (require.main === module) main();

