// Reproducible randomness (global seed, explicit generators and their saved state) and the
// CALOSCORE_THREADS setting, each checked in child processes where a fresh process matters.
import * as assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Generator, manualSeed, rand, randint, randn, randperm, tidy } from "../src/torch";
import { runNode, runPython } from "./helpers/engine";

const engineModule = JSON.stringify(require.resolve("../src/torch"));

/** Source of a child process that seeds the global generator and prints a few draws as JSON. */
function seededDrawsSource(seed: number): string {
  return `
    const torch = require(${engineModule});
    torch.manualSeed(${seed});
    const draws = torch.tidy(() => ({
      randn: Array.from(torch.randn([6]).toFloat64()),
      rand: Array.from(torch.rand([4], { dtype: "float64" }).toFloat64()),
      randint: Array.from(torch.randint(0, 1000, [4]).toFloat64()),
      randperm: Array.from(torch.randperm(8).toFloat64()),
      dropout: Array.from(torch.F.dropout(torch.ones([16]), 0.5, true).toFloat64()),
    }));
    console.log(JSON.stringify(draws));
  `;
}

function childDraws(seed: number): Record<string, number[]> {
  const child = runNode(seededDrawsSource(seed));
  assert.equal(child.status, 0, child.stderr);
  return JSON.parse(child.stdout) as Record<string, number[]>;
}

describe("engine randomness", () => {
  test("manualSeed gives the same numbers in two processes", () => {
    const first = childDraws(1234);
    const second = childDraws(1234);
    assert.deepEqual(second, first);
    const other = childDraws(1235);
    assert.notDeepEqual(other.randn, first.randn, "another seed gives other numbers");
  });

  test("manualSeed gives the numbers of torch.manual_seed", () => {
    // The binding and Debian's Python torch run the same libtorch 1.13, so one seed gives one stream.
    const ours = childDraws(99);
    const script = [
      "import json, torch",
      "torch.manual_seed(99)",
      "print(json.dumps({'randn': torch.randn(6).tolist(), 'rand': torch.rand(4, dtype=torch.float64).tolist()}))",
    ].join("\n");
    const reference = JSON.parse(runPython(script)) as Record<string, number[]>;
    // Both sides convert float32 draws to doubles exactly, so they compare exactly.
    assert.deepEqual(ours.randn, reference.randn);
    assert.deepEqual(ours.rand, reference.rand);
  });

  test("manualSeed in one process repeats its stream", () => {
    tidy(() => {
      manualSeed(5);
      const a = randn([10]).toFloat32();
      manualSeed(5);
      const b = randn([10]).toFloat32();
      assert.deepEqual(Array.from(b), Array.from(a));
    });
  });

  test("generators with the same seed give the same numbers", () => {
    tidy(() => {
      const a = new Generator(42);
      const b = new Generator(42);
      manualSeed(1);
      const first = randn([8], { generator: a }).toFloat32();
      // Draws from the global generator in between must not disturb an explicit generator.
      randn([100]);
      const second = randn([8], { generator: b }).toFloat32();
      assert.deepEqual(Array.from(second), Array.from(first));
      assert.deepEqual(
        Array.from(randint(0, 100, [6], { generator: a }).toFloat64()),
        Array.from(randint(0, 100, [6], { generator: b }).toFloat64()),
      );
      assert.deepEqual(Array.from(randperm(9, { generator: a }).toFloat64()), Array.from(randperm(9, { generator: b }).toFloat64()));
      assert.notDeepEqual(
        Array.from(randn([8], { generator: new Generator(43) }).toFloat32()),
        Array.from(first),
        "another seed gives other numbers",
      );
    });
  });

  test("generator state restores the stream", () => {
    tidy(() => {
      const generator = new Generator(7);
      randn([3], { generator });
      const state = generator.getState();
      assert.ok(state.length > 0);
      const expected = Array.from(rand([5], { generator, dtype: "float64" }).toFloat64());
      const afterwards = Array.from(randn([4], { generator }).toFloat64());

      generator.setState(state);
      assert.deepEqual(Array.from(rand([5], { generator, dtype: "float64" }).toFloat64()), expected);
      assert.deepEqual(Array.from(randn([4], { generator }).toFloat64()), afterwards);

      // A state moves between generators.
      const other = new Generator(1000);
      other.setState(state);
      assert.deepEqual(Array.from(rand([5], { generator: other, dtype: "float64" }).toFloat64()), expected);
    });
  });
});

describe("engine threads", () => {
  function childThreads(value: string | undefined): { status: number | null; stdout: string; stderr: string } {
    const env: Record<string, string> = {};
    if (value !== undefined) env.CALOSCORE_THREADS = value;
    return runNode(`const torch = require(${engineModule}); console.log(torch.getNumThreads());`, env);
  }

  test("CALOSCORE_THREADS sets the intra-op thread count", () => {
    for (const value of ["1", "2", "3"]) {
      const child = childThreads(value);
      assert.equal(child.status, 0, child.stderr);
      assert.equal(child.stdout.trim(), value, `CALOSCORE_THREADS=${value}`);
    }
  });

  test("invalid CALOSCORE_THREADS raises a clear error", () => {
    for (const value of ["0", "-2", "1.5", "many"]) {
      const child = childThreads(value);
      assert.notEqual(child.status, 0, `CALOSCORE_THREADS=${value} was accepted`);
      assert.match(child.stderr, new RegExp(`CALOSCORE_THREADS must be a positive integer, found '${value.replace(".", "\\.")}'`));
    }
  });
});
