// Native memory of the engine: a sampler-shaped loop keeps the live-tensor count and the resident
// set flat, dispose frees at once, a disposed tensor cannot be used, and tensor storage is
// reported to V8 as external memory.
import * as assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  cpuAllocatorStats,
  externalMemoryBytes,
  Generator,
  getNumThreads,
  keep,
  liveTensors,
  nn,
  noGrad,
  randn,
  releaseCpuCache,
  setNumThreads,
  Tensor,
  tidy,
  zeros,
} from "../src/torch";
import { runNode } from "./helpers/engine";

/** A small conditional 3D convolutional network, shaped like one level of the score U-Net. */
class TinyScoreNet extends nn.Module {
  readonly conv1: nn.Conv;
  readonly norm: nn.BatchNorm;
  readonly embed: nn.Linear;
  readonly conv2: nn.Conv;
  constructor(channels: number, hidden: number, generator: Generator) {
    super();
    this.conv1 = this.child("conv1", new nn.Conv(3, channels, hidden, 3, { padding: "same", generator }));
    this.norm = this.child("norm", new nn.BatchNorm(hidden));
    this.embed = this.child("embed", new nn.Linear(1, hidden, true, { generator }));
    this.conv2 = this.child("conv2", new nn.Conv(3, hidden, channels, 3, { padding: "same", generator }));
  }
  /** x: [batch, channels, depth, height, width], t: [batch, 1] -> same shape as x. */
  forward(x: Tensor, t: Tensor): Tensor {
    const bias = this.embed.forward(t).reshape([t.shape[0], -1, 1, 1, 1]);
    const h = this.norm.forward(this.conv1.forward(x)).silu().add(bias);
    return this.conv2.forward(h);
  }
}

describe("engine memory", () => {
  test("sampler loop keeps live tensors and resident memory flat", (context) => {
    // One intra-op thread: on a loaded machine OpenMP's waiting threads make small convolutions
    // ten times slower, and memory behaviour does not depend on the thread count.
    const threads = getNumThreads();
    setNumThreads(1);
    context.after(() => setNumThreads(threads));
    const baseline = liveTensors();
    const generator = new Generator(7);
    const net = new TinyScoreNet(4, 8, generator).eval();
    const shape = [8, 4, 8, 12, 12];
    // One leaked copy of x per step would add 180 x 144 KiB = 25 MiB between steps 20 and 200,
    // twice the tolerance.
    const toleranceBytes = 12 * 1024 * 1024;
    let x = randn(shape, { generator });
    const start = liveTensors();
    const steps = 200;
    const dt = 1 / steps;
    let rssAtStep20 = 0;
    let allocatorAtStep20 = cpuAllocatorStats();

    for (let step = 0; step < steps; step++) {
      const next = tidy(() =>
        noGrad(() => {
          const t = zeros([shape[0], 1]).add(1 - step * dt);
          const score = net.forward(x, t);
          return x.add(score.mul(dt)).add(randn(shape, { generator }).mul(Math.sqrt(dt) * 0.01));
        }),
      );
      x.dispose();
      x = next;
      assert.equal(liveTensors(), start, `live tensors after step ${step + 1}`);
      if (step + 1 === 20) {
        rssAtStep20 = process.memoryUsage().rss;
        allocatorAtStep20 = cpuAllocatorStats();
      }
    }

    const rssAtStep200 = process.memoryUsage().rss;
    const growth = rssAtStep200 - rssAtStep20;
    assert.ok(
      growth < toleranceBytes,
      `resident memory grew by ${(growth / 2 ** 20).toFixed(1)} MiB between steps 20 and 200; tolerance ${toleranceBytes / 2 ** 20} MiB`,
    );
    const allocator = cpuAllocatorStats();
    assert.ok(
      allocator.mappedBytes <= allocatorAtStep20.mappedBytes,
      `mapped CPU memory grew from ${allocatorAtStep20.mappedBytes} to ${allocator.mappedBytes} bytes between steps 20 and 200`,
    );
    const hits = allocator.hits - allocatorAtStep20.hits;
    const misses = allocator.misses - allocatorAtStep20.misses;
    assert.ok(hits > 4 * misses, `steps 21 to 200 reused ${hits} cached blocks and mapped ${misses} new ones`);
    assert.ok(Number.isFinite(tidy(() => x.mean().item())), "the sampler state stays finite");

    x.dispose();
    net.dispose();
    assert.equal(liveTensors(), baseline, "disposing the state and the network frees everything");
  });

  test("tidy frees intermediates, keeps returned tensors and frees on errors", () => {
    const start = liveTensors();
    const kept = tidy(() => {
      const a = randn([10]);
      const b = a.exp().add(1);
      tidy(() => b.mul(2).sin());
      return { result: b.square(), list: [a.neg()] };
    });
    assert.equal(liveTensors(), start + 2, "only the two returned tensors survive");
    kept.result.dispose();
    kept.list[0].dispose();
    assert.equal(liveTensors(), start);

    assert.throws(() =>
      tidy(() => {
        randn([3]).exp();
        throw new Error("failure inside tidy");
      }),
    /failure inside tidy/);
    assert.equal(liveTensors(), start, "tensors made before the error are freed");

    assert.throws(() => tidy(() => Promise.resolve(randn([2]))), /async/);
    assert.equal(liveTensors(), start, "an async function's tensors are freed");
  });

  test("keep moves a tensor out of its scope", () => {
    const start = liveTensors();
    let survivor: Tensor | undefined;
    tidy(() => {
      survivor = keep(randn([4]));
      randn([4]);
    });
    assert.equal(liveTensors(), start + 1);
    assert.equal(survivor?.isDisposed, false);
    survivor?.dispose();
    assert.equal(liveTensors(), start);
  });

  test("tensors made outside tidy stay alive until dispose", () => {
    const start = liveTensors();
    const made = [randn([2]), randn([2]), randn([2])];
    assert.equal(liveTensors(), start + 3);
    for (const t of made) t.dispose();
    assert.equal(liveTensors(), start);
  });

  test("dispose frees at once and a disposed tensor raises", () => {
    const start = liveTensors();
    const t = randn([3, 4]);
    const view = t.slice(0, 0, 2);
    assert.equal(liveTensors(), start + 2);
    t.dispose();
    assert.equal(liveTensors(), start + 1);
    assert.equal(t.isDisposed, true);
    assert.deepEqual(view.shape, [2, 4], "a view keeps its storage after its base is disposed");

    assert.throws(() => t.exp(), /exp\(disposed\): argument 1 is a disposed tensor/);
    assert.throws(() => t.data(), /disposed tensor/);
    assert.throws(() => t.shape, /disposed tensor/);
    assert.throws(() => t.add(view), /add\(disposed, \[2, 4\] float32\)/);
    assert.throws(() => view.matmul(t), /disposed tensor/);
    t.dispose();
    assert.equal(liveTensors(), start + 1, "a second dispose is a no-op");
    view.dispose();
    assert.equal(liveTensors(), start);
  });

  test("CPU allocator reuses freed blocks and releases its cache", () => {
    const bytes = 256 * 1024;
    zeros([bytes / 4]).dispose();
    const before = cpuAllocatorStats();
    assert.ok(before.cachedBytes >= bytes, `cache holds ${before.cachedBytes} bytes after freeing a ${bytes}-byte tensor`);
    const again = zeros([bytes / 4]);
    const during = cpuAllocatorStats();
    assert.equal(during.hits, before.hits + 1, "a tensor of the same size reuses the cached block");
    assert.equal(during.misses, before.misses);
    assert.equal(during.mappedBytes, before.mappedBytes);
    assert.deepEqual(Array.from(again.toFloat32().subarray(0, 4)), [0, 0, 0, 0], "zeros() clears a reused block");
    again.dispose();

    const released = releaseCpuCache();
    const after = cpuAllocatorStats();
    assert.ok(released >= bytes, `released ${released} bytes`);
    assert.equal(after.cachedBytes, 0);
    assert.equal(after.mappedBytes, during.mappedBytes - released);
  });

  test("CPU allocator cache stays below the peak of live memory", () => {
    // Fresh process, so the peak is that of this loop: one tensor at a time, of 17 to 116 pages
    // of 4 KiB, each of another size that no later request can reuse.
    const child = runNode(`
      const torch = require(${JSON.stringify(require.resolve("../src/torch"))});
      const start = torch.cpuAllocatorStats();
      for (let pages = 17; pages <= 116; pages++) torch.zeros([pages * 1024]).dispose();
      console.log(JSON.stringify({ start, end: torch.cpuAllocatorStats() }));
    `);
    assert.equal(child.status, 0, child.stderr);
    const { start, end } = JSON.parse(child.stdout) as Record<"start" | "end", { mappedBytes: number; misses: number }>;
    assert.equal(start.mappedBytes, 0, "loading the engine maps no block");
    assert.equal(end.misses, 100, "each size maps a new block");
    const peak = 116 * 4096;
    assert.ok(end.mappedBytes <= 2 * peak, `${end.mappedBytes} bytes mapped, more than twice the peak of ${peak} live bytes`);
  });

  test("tensor storage is reported to V8 as external memory", () => {
    const bytes = 4 * 1024 * 1024 * 4;
    const before = externalMemoryBytes();
    const big = zeros([4, 1024, 1024]);
    const during = externalMemoryBytes();
    assert.ok(during - before >= bytes, `external memory grew by ${during - before} bytes, expected at least ${bytes}`);
    assert.ok(during - before < bytes + 65536, `external memory grew by ${during - before} bytes, expected about ${bytes}`);
    big.dispose();
    const after = externalMemoryBytes();
    assert.ok(during - after >= bytes, `external memory shrank by ${during - after} bytes after dispose, expected ${bytes}`);
  });

  test("garbage collection frees unreachable tensors", () => {
    const source = `
      const torch = require(${JSON.stringify(require.resolve("../src/torch"))});
      const start = torch.liveTensors();
      (function () { for (let i = 0; i < 100; i++) torch.randn([1000]); })();
      const made = torch.liveTensors() - start;
      const settle = (rounds) => {
        global.gc();
        if (rounds === 0) { console.log(JSON.stringify({ made, left: torch.liveTensors() - start })); return; }
        setImmediate(() => settle(rounds - 1));
      };
      settle(5);
    `;
    const child = runNode(source, {}, 60_000, ["--expose-gc"]);
    assert.equal(child.status, 0, child.stderr);
    const report = JSON.parse(child.stdout) as { made: number; left: number };
    assert.equal(report.made, 100);
    assert.equal(report.left, 0, "every unreachable tensor was finalized");
  });
});
