import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { loadCheckpoint, tidy } from "../src/torch";

const cli = path.resolve(__dirname, "../../bin/caloscore.js");
const environment = { ...process.env, CALOSCORE_THREADS: "1" };

function caloscore(args: string[]): { status: number | null; output: string } {
  const result = spawnSync(process.execPath, [cli, ...args], { env: environment, encoding: "utf8" });
  return { status: result.status, output: result.stdout + result.stderr };
}

function writeConfig(dir: string, maxEpochs: number): string {
  const file = path.join(dir, "config.json");
  const config = {
    description: "tiny test model",
    dataset: "1-photons",
    network: { channels: [4, 8], kernel: 3, pooling: [4], embedding: 8, dropout: 0.1 },
    training: { batchSize: 32, learningRate: 0.002, maxEpochs, seed: 3, ema: 0.95 },
    sampling: { steps: 4, batchSize: 50 },
  };
  fs.writeFileSync(file, JSON.stringify(config));
  return file;
}

function epochOf(runDir: string): number {
  const file = path.join(runDir, "last.json");
  if (!fs.existsSync(file)) return 0;
  try {
    return (JSON.parse(fs.readFileSync(file, "utf8")) as { epoch: number }).epoch;
  } catch {
    return 0; // being replaced
  }
}

function modelTensors(runDir: string): Map<string, Float32Array> {
  return tidy(() => {
    const out = new Map<string, Float32Array>();
    for (const [name, t] of loadCheckpoint(path.join(runDir, "last.safetensors")).tensors) out.set(name, t.toFloat32());
    return out;
  });
}

test("train resumes exactly after kill -9", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "caloscore-cli-"));
  const data = path.join(dir, "showers.h5");
  const simulated = caloscore(["simulate", "--dataset", "1-photons", "--events", "1500", "--seed", "4", "--out", data]);
  assert.equal(simulated.status, 0, simulated.output);
  const epochs = 4;
  const config = writeConfig(dir, epochs);

  const straight = path.join(dir, "straight");
  const reference = caloscore(["train", "--config", config, "--sde", "VP", "--data", data, "--out", straight]);
  assert.equal(reference.status, 0, reference.output);
  assert.match(reference.output, /epoch 4\/4/);

  // Kill the second run as soon as its first epoch is checkpointed.
  const interrupted = path.join(dir, "interrupted");
  const child = spawn(process.execPath, [cli, "train", "--config", config, "--sde", "VP", "--data", data, "--out", interrupted], { env: environment, stdio: "ignore" });
  const exited = new Promise<void>((resolve) => child.on("exit", () => resolve()));
  const deadline = Date.now() + 120_000;
  while (epochOf(interrupted) < 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  child.kill("SIGKILL");
  await exited;
  const epochAtKill = epochOf(interrupted);
  assert.ok(epochAtKill >= 1, `the kill must land after the first checkpoint; last checkpoint at epoch ${epochAtKill}`);
  assert.ok(epochAtKill < epochs, `the kill must land before the run finishes; last checkpoint at epoch ${epochAtKill}`);

  const resumed = caloscore(["train", "--config", config, "--sde", "VP", "--data", data, "--out", interrupted]);
  assert.equal(resumed.status, 0, resumed.output);
  assert.match(resumed.output, new RegExp(`resumed from .* after epoch ${epochAtKill}`));

  const a = modelTensors(straight);
  const b = modelTensors(interrupted);
  assert.deepEqual([...b.keys()].sort(), [...a.keys()].sort());
  for (const [name, values] of a) assert.deepEqual(b.get(name), values, `tensor ${name} differs after kill -9 and resume`);
});

test("train rejects a configuration for another dataset", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "caloscore-cli-"));
  const data = path.join(dir, "showers.h5");
  assert.equal(caloscore(["simulate", "--dataset", "1-photons", "--events", "50", "--seed", "1", "--out", data]).status, 0);
  const config = path.resolve(__dirname, "../../configs/dataset2.json");
  const result = caloscore(["train", "--config", config, "--data", data, "--out", path.join(dir, "run")]);
  assert.notEqual(result.status, 0);
  assert.match(result.output, /showers\.h5/);
  assert.match(result.output, /6480|dataset 2/);
});

test("train reports an unknown SDE", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "caloscore-cli-"));
  const data = path.join(dir, "showers.h5");
  assert.equal(caloscore(["simulate", "--dataset", "1-photons", "--events", "50", "--seed", "1", "--out", data]).status, 0);
  const result = caloscore(["train", "--config", writeConfig(dir, 1), "--sde", "XY", "--data", data, "--out", path.join(dir, "run")]);
  assert.notEqual(result.status, 0);
  assert.match(result.output, /unknown SDE 'XY'; expected VE, VP or subVP/);
});
