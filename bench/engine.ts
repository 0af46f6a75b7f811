// Throughput of the tensor engine against PyTorch on a U-Net-like 3D block at the shapes of
// CaloChallenge dataset 2. The block has a 45 x 12 x 12 grid, channels 32/64/128, kernel 3,
// average pooling 3x2x2, swish, batch norm and a conditional bias from an embedding through a
// Linear. The same network in PyTorch (bench/engine_reference.py --serve) runs in a child
// process with the same batch and thread count. The two alternate step by step, so that both
// see the same load on a shared machine.
//
//   node dist/bench/engine.js [--json] [--batch 64] [--warmup 1] [--repeat 3] [--threads N]
import { ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as readline from "node:readline";
import {
  cat,
  F,
  Generator,
  getNumThreads,
  nn,
  noGrad,
  optim,
  randn,
  setNumThreads,
  Tensor,
  tidy,
  torchVersion,
} from "../src/torch";

/** Grid of dataset 2 in Cartesian voxels: [layers, x, y]. */
export const grid = [45, 12, 12] as const;
export const channels = [32, 64, 128] as const;
export const embeddingWidth = 128;
export const pooling = [3, 2, 2] as const;
export const kernel = 3;

export interface EngineBenchOptions {
  batch: number;
  warmup: number;
  repeat: number;
  threads: number;
  /** Runs the PyTorch reference too; without it the torch_* fields are null. */
  reference: boolean;
}

export interface EngineBenchResult {
  batch: number;
  grid: number[];
  channels: number[];
  threads: number;
  warmup: number;
  repeat: number;
  torch_version: string;
  parameters: number;
  /** Median wall time of one training step (forward, backward, Adam) in milliseconds. */
  train_step_ms: number;
  torch_train_step_ms: number | null;
  /** Median wall time of one no-grad forward in evaluation mode in milliseconds. */
  infer_step_ms: number;
  torch_infer_step_ms: number | null;
  /** Median CPU time (user and system, all threads) of the same steps in milliseconds. */
  train_step_cpu_ms: number;
  torch_train_step_cpu_ms: number | null;
  infer_step_cpu_ms: number;
  torch_infer_step_cpu_ms: number | null;
  /** Multiply-adds x 2 of one forward, counted over convolutions and Linear layers, in GFLOP. */
  forward_gflop: number;
  /** Training throughput in GFLOP/s, taking a training step as 3 forwards (an estimate). */
  gflops: number;
  /** Inference throughput in GFLOP/s. */
  infer_gflops: number;
  /** torch_train_step_ms / train_step_ms: the engine's training throughput relative to PyTorch's. */
  train_throughput_ratio: number | null;
  /** torch_infer_step_ms / infer_step_ms. */
  infer_throughput_ratio: number | null;
  /** torch_train_step_cpu_ms / train_step_cpu_ms: the same ratio in CPU time, less sensitive to other load. */
  train_cpu_ratio: number | null;
  /** torch_infer_step_cpu_ms / infer_step_cpu_ms. */
  infer_cpu_ratio: number | null;
  /** Mean wall time of adding two 16-element tensors (creation and disposal included), in microseconds: per-call overhead. */
  op_us: number;
  torch_op_us: number | null;
  /** Minimum throughput ratio the engine is expected to reach. */
  target_ratio: number;
}

export const targetRatio = 0.9;

/** Two 3D convolutions with batch norm and swish, a conditional bias after the first, and a residual path. */
class ResidualBlock extends nn.Module {
  readonly conv1: nn.Conv;
  readonly norm1: nn.BatchNorm;
  readonly dense: nn.Linear;
  readonly conv2: nn.Conv;
  readonly norm2: nn.BatchNorm;
  readonly skip: nn.Conv | null;

  constructor(inChannels: number, outChannels: number, generator: Generator) {
    super();
    this.conv1 = this.child("conv1", new nn.Conv(3, inChannels, outChannels, kernel, { padding: "same", generator }));
    this.norm1 = this.child("norm1", new nn.BatchNorm(outChannels));
    this.dense = this.child("dense", new nn.Linear(embeddingWidth, outChannels, true, { generator }));
    this.conv2 = this.child("conv2", new nn.Conv(3, outChannels, outChannels, kernel, { padding: "same", generator }));
    this.norm2 = this.child("norm2", new nn.BatchNorm(outChannels));
    this.skip = inChannels === outChannels ? null : this.child("skip", new nn.Conv(3, inChannels, outChannels, 1, { generator }));
  }

  /** x: [batch, in, d, h, w], embedding: [batch, 128] -> [batch, out, d, h, w] */
  forward(x: Tensor, embedding: Tensor): Tensor {
    const bias = this.dense.forward(embedding).reshape([-1, this.conv1.outChannels, 1, 1, 1]);
    const h = this.norm1.forward(this.conv1.forward(x)).silu().add(bias);
    const out = this.norm2.forward(this.conv2.forward(h)).silu();
    return out.add(this.skip === null ? x : this.skip.forward(x));
  }
}

/** Three levels down (45x12x12, 15x6x6, 5x3x3), two up with skip connections, one output channel. */
export class UNetBlock extends nn.Module {
  readonly down: ResidualBlock[];
  readonly up: ResidualBlock[];
  readonly output: nn.Conv;

  constructor(generator: Generator) {
    super();
    this.down = channels.map((c, i) => this.child(`down.${i}`, new ResidualBlock(i === 0 ? 1 : channels[i - 1], c, generator)));
    this.up = [
      this.child("up.0", new ResidualBlock(channels[2] + channels[1], channels[1], generator)),
      this.child("up.1", new ResidualBlock(channels[1] + channels[0], channels[0], generator)),
    ];
    this.output = this.child("output", new nn.Conv(3, channels[0], 1, kernel, { padding: "same", generator }));
  }

  /** x: [batch, 1, 45, 12, 12], embedding: [batch, 128] -> [batch, 1, 45, 12, 12] */
  forward(x: Tensor, embedding: Tensor): Tensor {
    const level0 = this.down[0].forward(x, embedding);
    const level1 = this.down[1].forward(F.avgPool(level0, [...pooling]), embedding);
    const level2 = this.down[2].forward(F.avgPool(level1, [...pooling]), embedding);
    const up1 = this.up[0].forward(cat([F.upsampleNearest(level2, [...pooling]), level1], 1), embedding);
    const up0 = this.up[1].forward(cat([F.upsampleNearest(up1, [...pooling]), level0], 1), embedding);
    return this.output.forward(up0);
  }
}

/** Forward GFLOP of UNetBlock for one batch: 2 x multiply-adds of every convolution and Linear layer. */
export function forwardGflop(batch: number): number {
  const voxels = [0, 1, 2].map((level) => grid.reduce((n, size, axis) => n * (size / pooling[axis] ** level), 1));
  const conv = (cin: number, cout: number, k: number, level: number) => 2 * cin * cout * k ** 3 * voxels[level] * batch;
  const block = (cin: number, cout: number, level: number) =>
    conv(cin, cout, kernel, level) + conv(cout, cout, kernel, level) + (cin === cout ? 0 : conv(cin, cout, 1, level)) + 2 * embeddingWidth * cout * batch;
  const flop =
    block(1, channels[0], 0) +
    block(channels[0], channels[1], 1) +
    block(channels[1], channels[2], 2) +
    block(channels[2] + channels[1], channels[1], 1) +
    block(channels[1] + channels[0], channels[0], 0) +
    conv(channels[0], 1, kernel, 0);
  return flop / 1e9;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

interface StepTime {
  wallMs: number;
  cpuMs: number;
}

/** Runs one step and returns its wall and CPU time. */
function timeStep(step: () => void): StepTime {
  const cpu = process.cpuUsage();
  const start = process.hrtime.bigint();
  step();
  const wallMs = Number(process.hrtime.bigint() - start) / 1e6;
  const used = process.cpuUsage(cpu);
  return { wallMs, cpuMs: (used.user + used.system) / 1000 };
}

function locateReference(): string {
  const candidates = [path.resolve(__dirname, "engine_reference.py"), path.resolve(__dirname, "../../bench/engine_reference.py")];
  const found = candidates.find((candidate) => fs.existsSync(candidate));
  if (found === undefined) throw new Error(`bench/engine_reference.py not found (looked for ${candidates.join(" and ")})`);
  return found;
}

/** The PyTorch twin of the network in a child process that runs one step per command. */
class PyTorchReference {
  private stderr = "";
  private readonly lines: AsyncIterator<string>;

  private constructor(
    private readonly child: ChildProcessWithoutNullStreams,
    private readonly commandLine: string,
  ) {
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (chunk: string) => {
      this.stderr += chunk;
    });
    this.lines = readline.createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  }

  static async start(options: EngineBenchOptions): Promise<{ reference: PyTorchReference; parameters: number }> {
    const python = "/usr/bin/python3";
    const args = [locateReference(), "--serve", "--batch", String(options.batch), "--threads", String(options.threads)];
    const reference = new PyTorchReference(spawn(python, args), `${python} ${args.join(" ")}`);
    const ready = (await reference.readLine()) as { parameters: number };
    return { reference, parameters: ready.parameters };
  }

  /** Sends "train", "eval", "infer" or "overhead" and returns the reply. */
  async command(name: "train" | "eval" | "infer" | "overhead"): Promise<Record<string, number>> {
    this.child.stdin.write(`${name}\n`);
    return this.readLine();
  }

  async step(name: "train" | "infer"): Promise<StepTime> {
    const reply = await this.command(name);
    return { wallMs: reply.wall_ms, cpuMs: reply.cpu_ms };
  }

  close(): void {
    this.child.stdin.end();
    this.child.kill();
  }

  private async readLine(): Promise<Record<string, number>> {
    const next = await this.lines.next();
    if (next.done === true) {
      throw new Error(`the PyTorch reference (${this.commandLine}) exited before replying:\n${this.stderr}`);
    }
    return JSON.parse(next.value) as Record<string, number>;
  }
}

interface Timings {
  train: StepTime[];
  infer: StepTime[];
}

const overheadOps = 20000;

/** Mean wall time in microseconds of adding two 16-element tensors, freed in scopes of 100. */
function timeSmallOp(): number {
  const a = randn([16]);
  const b = randn([16]);
  const run = (ops: number) => {
    for (let i = 0; i < ops / 100; i++) {
      tidy(() => {
        for (let j = 0; j < 100; j++) a.add(b);
      });
    }
  };
  try {
    run(overheadOps / 10);
    const start = process.hrtime.bigint();
    run(overheadOps);
    return Number(process.hrtime.bigint() - start) / 1e3 / overheadOps;
  } finally {
    a.dispose();
    b.dispose();
  }
}

/**
 * Times the engine's steps and, with a reference, PyTorch's steps in alternation: warm-up steps
 * of each first, then one timed step of each per repeat.
 */
async function timeBoth(
  options: EngineBenchOptions,
  reference: PyTorchReference | null,
): Promise<{ engine: Timings; torch: Timings; parameters: number; opUs: number; torchOpUs: number | null }> {
  const generator = new Generator(0);
  const model = new UNetBlock(generator);
  const optimizer = new optim.Adam(model.parameters(), { lr: 1e-4 });
  const x = randn([options.batch, 1, ...grid], { generator });
  const target = randn([options.batch, 1, ...grid], { generator });
  const embedding = randn([options.batch, embeddingWidth], { generator });
  const engine: Timings = { train: [], infer: [] };
  const torch: Timings = { train: [], infer: [] };
  const steps = {
    train: () =>
      tidy(() => {
        optimizer.zeroGrad();
        model.forward(x, embedding).sub(target).square().mean().backward();
        optimizer.step();
      }),
    infer: () => tidy(() => noGrad(() => void model.forward(x, embedding))),
  };

  try {
    for (const mode of ["train", "infer"] as const) {
      if (mode === "infer") {
        model.eval();
        await reference?.command("eval");
      }
      for (let i = 0; i < options.warmup; i++) {
        steps[mode]();
        await reference?.step(mode);
      }
      for (let i = 0; i < options.repeat; i++) {
        engine[mode].push(timeStep(steps[mode]));
        if (reference !== null) torch[mode].push(await reference.step(mode));
      }
    }
    const opUs = timeSmallOp();
    const torchOpUs = reference === null ? null : (await reference.command("overhead")).op_us;
    return { engine, torch, parameters: model.parameterCount(), opUs, torchOpUs };
  } finally {
    optimizer.dispose();
    model.dispose();
    x.dispose();
    target.dispose();
    embedding.dispose();
  }
}

/** Times the engine and PyTorch and returns both with throughput figures. */
export async function runEngineBench(options: EngineBenchOptions): Promise<EngineBenchResult> {
  let reference: PyTorchReference | null = null;
  let torchParameters: number | null = null;
  if (options.reference) {
    const started = await PyTorchReference.start(options);
    reference = started.reference;
    torchParameters = started.parameters;
  }

  const previousThreads = getNumThreads();
  setNumThreads(options.threads);
  let timings: Awaited<ReturnType<typeof timeBoth>>;
  try {
    timings = await timeBoth(options, reference);
  } finally {
    setNumThreads(previousThreads);
    reference?.close();
  }
  if (torchParameters !== null && torchParameters !== timings.parameters) {
    throw new Error(`the PyTorch reference has ${torchParameters} parameters; the engine's network has ${timings.parameters}`);
  }

  const forward = forwardGflop(options.batch);
  const round = (value: number) => Math.round(value * 1000) / 1000;
  const medianOf = (times: StepTime[], field: keyof StepTime) => median(times.map((t) => t[field]));
  const torchMedian = (times: StepTime[], field: keyof StepTime) => (reference === null ? null : round(medianOf(times, field)));
  const ratio = (torchValue: number | null, engineValue: number) => (torchValue === null ? null : round(torchValue / engineValue));

  const trainMs = medianOf(timings.engine.train, "wallMs");
  const inferMs = medianOf(timings.engine.infer, "wallMs");
  const trainCpuMs = medianOf(timings.engine.train, "cpuMs");
  const inferCpuMs = medianOf(timings.engine.infer, "cpuMs");
  const torchTrainMs = torchMedian(timings.torch.train, "wallMs");
  const torchInferMs = torchMedian(timings.torch.infer, "wallMs");
  const torchTrainCpuMs = torchMedian(timings.torch.train, "cpuMs");
  const torchInferCpuMs = torchMedian(timings.torch.infer, "cpuMs");
  return {
    batch: options.batch,
    grid: [...grid],
    channels: [...channels],
    threads: options.threads,
    warmup: options.warmup,
    repeat: options.repeat,
    torch_version: torchVersion(),
    parameters: timings.parameters,
    train_step_ms: round(trainMs),
    torch_train_step_ms: torchTrainMs,
    infer_step_ms: round(inferMs),
    torch_infer_step_ms: torchInferMs,
    train_step_cpu_ms: round(trainCpuMs),
    torch_train_step_cpu_ms: torchTrainCpuMs,
    infer_step_cpu_ms: round(inferCpuMs),
    torch_infer_step_cpu_ms: torchInferCpuMs,
    forward_gflop: round(forward),
    gflops: round((3 * forward) / (trainMs / 1000)),
    infer_gflops: round(forward / (inferMs / 1000)),
    train_throughput_ratio: ratio(torchTrainMs, trainMs),
    infer_throughput_ratio: ratio(torchInferMs, inferMs),
    train_cpu_ratio: ratio(torchTrainCpuMs, trainCpuMs),
    infer_cpu_ratio: ratio(torchInferCpuMs, inferCpuMs),
    op_us: round(timings.opUs),
    torch_op_us: timings.torchOpUs === null ? null : round(timings.torchOpUs),
    target_ratio: targetRatio,
  };
}

/** Human-readable lines for a result. */
export function formatEngineBench(result: EngineBenchResult): string {
  const ratio = (value: number | null) => (value === null ? "not measured" : `${value.toFixed(2)}x PyTorch's throughput`);
  const torchMs = (value: number | null) => (value === null ? "" : `, PyTorch ${value.toFixed(1)} ms`);
  const cpu = (engine: number, torch: number | null, cpuRatio: number | null) =>
    `CPU time ${engine.toFixed(1)} ms${torchMs(torch)}` + (cpuRatio === null ? "" : ` (ratio ${cpuRatio.toFixed(2)})`);
  return [
    `U-Net block, batch ${result.batch} x [1, ${result.grid.join(", ")}], channels ${result.channels.join("/")}, ` +
      `${result.parameters} parameters, ${result.threads} threads, libtorch ${result.torch_version}`,
    `training step (forward, backward, Adam): ${result.train_step_ms.toFixed(1)} ms${torchMs(result.torch_train_step_ms)}; ` +
      `${ratio(result.train_throughput_ratio)}; ${result.gflops.toFixed(1)} GFLOP/s (estimate: 3 x ${result.forward_gflop.toFixed(1)} GFLOP); ` +
      cpu(result.train_step_cpu_ms, result.torch_train_step_cpu_ms, result.train_cpu_ratio),
    `no-grad forward: ${result.infer_step_ms.toFixed(1)} ms${torchMs(result.torch_infer_step_ms)}; ` +
      `${ratio(result.infer_throughput_ratio)}; ${result.infer_gflops.toFixed(1)} GFLOP/s; ` +
      cpu(result.infer_step_cpu_ms, result.torch_infer_step_cpu_ms, result.infer_cpu_ratio),
    `per-call overhead (add of two 16-element tensors): ${result.op_us.toFixed(2)} us` +
      (result.torch_op_us === null ? "" : `, PyTorch ${result.torch_op_us.toFixed(2)} us`),
    `median of ${result.repeat} timed steps after ${result.warmup} warm-up steps, alternating with PyTorch's; ` +
      `target: at least ${result.target_ratio}x PyTorch's throughput`,
  ].join("\n");
}

/** Default options: batch 64 (dataset 2's batch), CALOSCORE_THREADS or every available core. */
export function defaultEngineBenchOptions(): EngineBenchOptions {
  const fromEnv = Number(process.env.CALOSCORE_THREADS);
  return {
    batch: 64,
    warmup: 1,
    repeat: 3,
    threads: Number.isInteger(fromEnv) && fromEnv > 0 ? fromEnv : os.availableParallelism(),
    reference: true,
  };
}

if (require.main === module) {
  const { run } = require("../src/cli/commands/bench") as { run(args: string[]): Promise<number> };
  run(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (error: unknown) => {
      console.error(error instanceof Error ? error.message : String(error));
      process.exit(1);
    },
  );
}
