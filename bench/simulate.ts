// Speed and memory of the shower simulator, and the profile plots of docs/simulation.md.
//
//   node dist/bench/simulate.js [--events2 N] [--events3 N] [--threads N] [--plots DIR]
//
// For datasets 2 and 3 it measures, in one run: simulation alone on one thread, simulation on the
// worker pool (and checks that both give the same showers), and the full command path with gzip
// HDF5 writing. Peak memory is measured in child processes for two run lengths with the same
// chunk, so a bounded run shows the same peak for both. CPU time per shower (all threads of the
// process) is reported next to the wall-clock rates, because on a shared machine the rates depend
// on the other jobs. Prints one JSON object at the end.
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { prepareRun, simulateBatch, SimulationRequest } from "../src/simulate/batch";
import { profilePlots } from "../src/simulate/plots";
import { SimulationPool } from "../src/simulate/pool";
import { simulateToFile } from "../src/simulate/run";

function argument(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

function sameFloats(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

interface DatasetResult {
  dataset: string;
  events: number;
  singleThreadPerSecond: number;
  singleThreadCpuMsPerShower: number;
  poolPerSecond: number;
  poolCpuMsPerShower: number;
  poolThreads: number;
  poolMatchesSingleThread: boolean;
  withHdf5PerSecond: number;
  withHdf5CpuMsPerShower: number;
  peakRssMiB: { events: number; chunk: number; mib: number }[];
}

/** Peak resident memory of a child process that simulates `events` showers with `chunk`. */
/** CPU milliseconds (user + system, every thread of this process) since `start`. */
function cpuMilliseconds(start: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1000;
}

function childPeakRss(dataset: string, events: number, chunk: number, threads: number, folder: string): number {
  const script = `
const { simulateToFile } = require(${JSON.stringify(path.join(__dirname, "..", "src", "simulate", "run.js"))});
simulateToFile({ dataset: ${JSON.stringify(dataset)}, events: ${events}, seed: 3 }, ${JSON.stringify(path.join(folder, `rss-${dataset}-${events}.h5`))},
  { chunk: ${chunk}, threads: ${threads} }).then(() => console.log(process.resourceUsage().maxRSS));`;
  const output = execFileSync(process.execPath, ["-e", script], { encoding: "utf8" });
  return Number(output.trim()) / 1024;
}

async function measure(dataset: "2" | "3", events: number, threads: number, folder: string): Promise<DatasetResult> {
  const request: SimulationRequest = { dataset, events, seed: 2026 };

  const run = prepareRun(request);
  simulateBatch(run, events, Math.min(50, events)); // warm-up on other indices
  let started = process.hrtime.bigint();
  let cpu = process.cpuUsage();
  const single = simulateBatch(run, 0, events);
  const singleSeconds = Number(process.hrtime.bigint() - started) / 1e9;
  const singleCpu = cpuMilliseconds(cpu);

  const pool = new SimulationPool(request, threads);
  await pool.simulate(events, Math.min(50 * threads, events)); // starts and warms the workers
  started = process.hrtime.bigint();
  cpu = process.cpuUsage();
  const pooled = await pool.simulate(0, events);
  const poolSeconds = Number(process.hrtime.bigint() - started) / 1e9;
  const poolCpu = cpuMilliseconds(cpu);
  await pool.close();

  const file = path.join(folder, `bench-${dataset}.h5`);
  started = process.hrtime.bigint();
  cpu = process.cpuUsage();
  await simulateToFile(request, file, { threads });
  const fileSeconds = Number(process.hrtime.bigint() - started) / 1e9;
  const fileCpu = cpuMilliseconds(cpu);

  const chunk = dataset === "2" ? 200 : 40;
  const peakRssMiB = [4, 16].map((chunks) => ({
    events: chunks * chunk,
    chunk,
    mib: Math.round(childPeakRss(dataset, chunks * chunk, chunk, threads, folder)),
  }));

  return {
    dataset,
    events,
    singleThreadPerSecond: Math.round(events / singleSeconds),
    singleThreadCpuMsPerShower: Number((singleCpu / events).toFixed(3)),
    poolPerSecond: Math.round(events / poolSeconds),
    poolCpuMsPerShower: Number((poolCpu / events).toFixed(3)),
    poolThreads: threads,
    poolMatchesSingleThread: sameFloats(single.showers, pooled.showers) && sameFloats(single.energies, pooled.energies),
    withHdf5PerSecond: Math.round(events / fileSeconds),
    withHdf5CpuMsPerShower: Number((fileCpu / events).toFixed(3)),
    peakRssMiB,
  };
}

async function main(): Promise<void> {
  const threads = Number(argument("threads", String(os.availableParallelism())));
  const folder = fs.mkdtempSync(path.join(os.tmpdir(), "caloscore-bench-simulate-"));
  try {
    const results: DatasetResult[] = [];
    results.push(await measure("2", Number(argument("events2", "4000")), threads, folder));
    console.error(`dataset 2: ${JSON.stringify(results[0])}`);
    results.push(await measure("3", Number(argument("events3", "600")), threads, folder));
    console.error(`dataset 3: ${JSON.stringify(results[1])}`);

    const plotsFolder = argument("plots", "");
    if (plotsFolder !== "") {
      const plots = profilePlots([1, 30, 1000], 500, 1);
      fs.mkdirSync(plotsFolder, { recursive: true });
      fs.writeFileSync(path.join(plotsFolder, "simulation-longitudinal.svg"), plots.longitudinal);
      fs.writeFileSync(path.join(plotsFolder, "simulation-radial.svg"), plots.radial);
      console.error(`wrote simulation-longitudinal.svg and simulation-radial.svg to ${plotsFolder}`);
    }
    const loadAverage = os.loadavg()[0];
    console.log(JSON.stringify({ cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, loadAverage, threads, results }, null, 2));
  } finally {
    fs.rmSync(folder, { recursive: true, force: true });
  }
}

main().catch((error) => {
  console.error(error instanceof Error ? error.stack : String(error));
  process.exit(1);
});
