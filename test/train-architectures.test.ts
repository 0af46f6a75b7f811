import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { initHdf5, openShowerFile } from "../src/calo/hdf5";
import { liveTensors, noGrad, tensor, tidy } from "../src/torch";
import { parseModelConfig } from "../src/score/config";
import { createSde } from "../src/score/sde";
import { createScoreModel, loadScoreRun, preprocessedData, prepareRun, usableShowers } from "../src/score/run";
import { trainScoreModel } from "../src/score/train";

const cli = path.resolve(__dirname, "../../bin/caloscore.js");

function simulate(dataset: string, events: number, file: string): void {
  const result = spawnSync(process.execPath, [cli, "simulate", "--dataset", dataset, "--events", String(events), "--seed", "9", "--out", file], { encoding: "utf8" });
  assert.equal(result.status, 0, result.stdout + result.stderr);
}

// Every geometry and layout with each SDE: one small epoch, a checkpoint, a resumed second
// epoch, and a score evaluation from the saved run with the expected model shape.
const cases = [
  { dataset: "1-photons", layout: "cartesian", sde: "VE", pooling: [4], shape: [1, 384] },
  { dataset: "2", layout: "cartesian", sde: "VP", pooling: [3, 2, 2], shape: [1, 45, 12, 12] },
  { dataset: "2", layout: "cylindrical", sde: "subVP", pooling: [3, 2, 2], shape: [1, 45, 16, 9] },
  { dataset: "3", layout: "cartesian", sde: "subVP", pooling: [3, 2, 2], shape: [1, 45, 32, 32] },
];

for (const c of cases) {
  test(`dataset ${c.dataset} ${c.layout} trains and resumes with ${c.sde}`, async () => {
    await initHdf5();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "caloscore-arch-"));
    const dataFile = path.join(dir, "showers.h5");
    simulate(c.dataset, 40, dataFile);
    const config = parseModelConfig(
      {
        dataset: c.dataset,
        layout: c.layout,
        network: { channels: [2, 4], kernel: 3, pooling: c.pooling, embedding: 8, dropout: 0.1 },
        training: { batchSize: 8, maxEpochs: 2, seed: 2 },
        sampling: { steps: 2 },
      },
      "test config",
    );
    const sde = createSde(c.sde, config.sde);
    const before = liveTensors();
    const file = openShowerFile(dataFile);
    const runDir = path.join(dir, "run");
    const { preprocessing } = prepareRun(runDir, config, sde.name, "score", file);
    assert.deepEqual(preprocessing.modelShape, c.shape);
    const data = preprocessedData(file, preprocessing, usableShowers(config, file));

    const first = createScoreModel(config, sde, preprocessing.modelShape);
    const state1 = trainScoreModel({ config, sde, model: first, data, runDir, epochsThisCall: 1, log: () => {} });
    assert.equal(state1.epoch, 1);
    first.dispose();
    const second = createScoreModel(config, sde, preprocessing.modelShape);
    const lines: string[] = [];
    const state2 = trainScoreModel({ config, sde, model: second, data, runDir, log: (l) => lines.push(l) });
    assert.equal(state2.epoch, 2);
    assert.match(lines[0], /resumed from .* after epoch 1/);
    assert.ok(Number.isFinite(state2.history[1].validationLoss));
    second.dispose();
    file.close();

    const loaded = loadScoreRun(runDir);
    const shape = noGrad(() =>
      tidy(() => {
        const x = tensor(new Float32Array(2 * c.shape.reduce((a, b) => a * b, 1)), [2, ...c.shape]);
        const score = loaded.model.score(x, tensor(new Float32Array([0.5, 0.9]), [2]), tensor(new Float32Array([0.2, 0.7]), [2]));
        assert.equal(score.isfinite().logicalNot().sum().item(), 0);
        return score.shape;
      }),
    );
    assert.deepEqual(shape, [2, ...c.shape]);
    loaded.model.dispose();
    assert.equal(liveTensors(), before);
  });
}
