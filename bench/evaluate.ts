// Speed of `caloscore evaluate` on dataset 2, each figure beside a reference measured in the same
// run.
//
//   node dist/bench/evaluate.js [--showers N] [--distinct N] [--classifier-showers N] [--epochs N]
//                               [--skip-report] [--skip-classifier] [--dir DIR]
//
// 1. The report without classifiers for --showers reference versus --showers generated showers
//    (default 100000 each): reading, features, histograms, EMDs, separation powers, FPD, KPD,
//    plots. Wall time, the process's CPU time and the 1-minute load average are reported, because
//    on a shared machine the wall time mostly measures the other processes. Reference: Debian's
//    h5py and numpy reading the same two files and summing the energy per layer, the least any
//    evaluation must do.
// 2. The low-level classifier (6481 inputs, 2 x 512 hidden, batch 1000): seconds per epoch on
//    --classifier-showers per file (default 10000), scaled linearly in the training rows to
//    100000 versus 100000, beside PyTorch (Debian's python3-torch) training the same network on
//    the same rows for one epoch.
// The shower files are built once under --dir (default the system temporary folder) and reused:
// --distinct showers simulated with the GFlash-style simulator, repeated with a per-shower energy
// scale in [0.9, 1.1] to reach --showers. Prints one JSON object at the end.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { loadGeometry } from "../src/calo/binning";
import { createShowerFile, initHdf5, openShowerFile } from "../src/calo/hdf5";
import { trainClassifier } from "../src/evaluate/classifier";
import { evaluate, lowLevelInputs } from "../src/evaluate/evaluate";
import { prepareRun, simulateBatch } from "../src/simulate/batch";
import { tensor, tidy } from "../src/torch";
import { runPython } from "../test/helpers/caloPython";

function argument(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? Number(process.argv[i + 1]) : fallback;
}

function stringArgument(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const showers = argument("showers", 100_000);
const distinct = Math.min(argument("distinct", 10_000), showers);
const classifierShowers = argument("classifier-showers", 10_000);
const epochs = argument("epochs", 2);
const folder = stringArgument("dir", path.join(os.tmpdir(), "caloscore-bench-evaluate"));
const voxels = 6480;

/** Builds (or reuses) a dataset 2 file of `showers` rows from `distinct` simulated showers. */
function showerFile(name: string, seed: number): string {
  const file = path.join(folder, `${name}-${showers}-${distinct}-${seed}.h5`);
  if (fs.existsSync(file)) return file;
  fs.mkdirSync(folder, { recursive: true });
  const started = Date.now();
  const run = prepareRun({ dataset: "2", events: distinct, seed });
  const batch = simulateBatch(run, 0, distinct);
  const writer = createShowerFile(file, voxels);
  let state = (seed * 2654435761) >>> 0;
  const uniform = () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 4294967296;
  };
  const block = 1000;
  for (let start = 0; start < showers; start += block) {
    const n = Math.min(block, showers - start);
    const energies = new Float32Array(n);
    const rows = new Float32Array(n * voxels);
    for (let i = 0; i < n; i++) {
      const source = (start + i) % distinct;
      const scale = start + i < distinct ? 1 : 0.9 + 0.2 * uniform();
      energies[i] = batch.energies[source];
      for (let v = 0; v < voxels; v++) rows[i * voxels + v] = batch.showers[source * voxels + v] * scale;
    }
    writer.append(energies, rows);
  }
  writer.finish();
  console.error(`bench: wrote ${file} in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  return file;
}

const numpyReadScript = `
import sys, time, json, h5py
import numpy as np
started = time.perf_counter()
for name in sys.argv[1:]:
    with h5py.File(name, "r") as f:
        d = f["showers"]
        layers = []
        for start in range(0, d.shape[0], 4096):
            layers.append(d[start:start + 4096].reshape(-1, 45, 144).sum(axis=2))
        np.concatenate(layers)
print(json.dumps({"seconds": time.perf_counter() - started}))
`;

const torchEpochScript = `
import sys, time, json
import numpy as np, torch
torch.set_num_threads(int(sys.argv[3]))
x = torch.from_numpy(np.fromfile(sys.argv[1], dtype=np.float32)).reshape(-1, int(sys.argv[2]))
y = torch.cat([torch.zeros(x.shape[0] // 2), torch.ones(x.shape[0] - x.shape[0] // 2)])
model = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 512), torch.nn.LeakyReLU(), torch.nn.Dropout(0.2),
                            torch.nn.Linear(512, 512), torch.nn.LeakyReLU(), torch.nn.Dropout(0.2), torch.nn.Linear(512, 1))
optimizer = torch.optim.Adam(model.parameters(), lr=2e-4)
loss_fn = torch.nn.BCEWithLogitsLoss()
order = torch.randperm(x.shape[0])
started = time.perf_counter()
for start in range(0, x.shape[0], 1000):
    index = order[start:start + 1000]
    loss = loss_fn(model(x[index]).reshape(-1), y[index])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
print(json.dumps({"seconds": time.perf_counter() - started}))
`;

async function main(): Promise<void> {
  await initHdf5();
  loadGeometry("2");
  const results: Record<string, unknown> = { showers, distinct, threads: os.availableParallelism() };

  const reference = showerFile("reference", 1);
  const generated = showerFile("generated", 2);

  if (!process.argv.includes("--skip-report")) {
    const started = Date.now();
    const cpuBefore = process.cpuUsage();
    const phases: string[] = [];
    await evaluate({
      dataset: "2",
      reference,
      generated: [{ label: "generated", path: generated }],
      outDir: path.join(folder, "report"),
      classifier: false,
      log: (line) => {
        const stamped = `${((Date.now() - started) / 1000).toFixed(1)} s: ${line}`;
        phases.push(stamped);
        console.error(`bench: ${stamped}`);
      },
    });
    const seconds = (Date.now() - started) / 1000;
    const cpu = process.cpuUsage(cpuBefore);
    const cpuSeconds = (cpu.user + cpu.system) / 1e6;
    const load = os.loadavg()[0];
    const numpy = JSON.parse(runPython(numpyReadScript, [reference, generated], 1_800_000)) as { seconds: number };
    results.report = { seconds, cpuSeconds, loadAverage: load, phases, numpyReadAndLayerSumsSeconds: numpy.seconds, ratioToNumpyRead: seconds / numpy.seconds, budgetSeconds: 120 };
  }

  if (process.argv.includes("--skip-classifier")) {
    console.log(JSON.stringify(results, null, 2));
    return;
  }

  // Low-level classifier on classifierShowers per file.
  const rowsPerFile = Math.min(classifierShowers, showers);
  const inputs = [reference, generated].map((file) => {
    const opened = openShowerFile(file, { dataset: "2" });
    try {
      return lowLevelInputs(opened.readEnergies(0, rowsPerFile), opened.readShowers(0, rowsPerFile), voxels);
    } finally {
      opened.close();
    }
  });
  const epochSeconds: number[] = [];
  let last = Date.now();
  const started = Date.now();
  const result = tidy(() =>
    trainClassifier(tensor(inputs[0], [rowsPerFile, voxels + 1]), tensor(inputs[1], [rowsPerFile, voxels + 1]), {
      maxEpochs: epochs,
      patience: epochs + 1,
      onEpoch: () => {
        epochSeconds.push((Date.now() - last) / 1000);
        last = Date.now();
      },
    }),
  );
  const total = (Date.now() - started) / 1000;
  const trainRows = result.trainSize;
  const perEpoch = Math.min(...epochSeconds);
  const scale = (0.6 * 2 * 100_000) / trainRows;

  // PyTorch on the training rows only (same count), one epoch.
  const rawPath = path.join(folder, "classifier-inputs.f32");
  const trainPerFile = Math.round(0.6 * rowsPerFile);
  const handle = fs.openSync(rawPath, "w");
  for (const array of inputs) fs.writeSync(handle, Buffer.from(array.buffer, array.byteOffset, trainPerFile * (voxels + 1) * 4));
  fs.closeSync(handle);
  const torchEpoch = JSON.parse(runPython(torchEpochScript, [rawPath, String(voxels + 1), String(os.availableParallelism())], 1_800_000)) as { seconds: number };
  fs.rmSync(rawPath, { force: true });

  results.lowLevelClassifier = {
    showersPerFile: rowsPerFile,
    trainRows,
    epochs: result.epochs,
    epochSeconds,
    totalSeconds: total,
    pytorchEpochSeconds: torchEpoch.seconds,
    ratioToPytorch: perEpoch / torchEpoch.seconds,
    estimate100kEpochSeconds: perEpoch * scale,
    estimate100kEpochsIn15Minutes: Math.floor(900 / (perEpoch * scale)),
    estimate100k50EpochsMinutes: (50 * perEpoch * scale) / 60,
  };
  console.log(JSON.stringify(results, null, 2));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
