// Splits shower ranges over worker threads. Each shower has its own random stream, so the
// output is identical for any number of threads, including the in-process path for one thread.
import * as path from "node:path";
import { Worker } from "node:worker_threads";
import { PreparedRun, ShowerBatch, SimulationRequest, prepareRun, simulateBatch } from "./batch";
import type { WorkerTask } from "./worker";

interface WorkerReply {
  id: number;
  batch?: ShowerBatch;
  error?: string;
}

interface Pending {
  resolve: (batch: ShowerBatch) => void;
  reject: (error: Error) => void;
}

/** A pool of `threads` simulation threads; call close() when done. */
export class SimulationPool {
  private readonly workers: Worker[] = [];
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  private local: PreparedRun | null = null;

  constructor(
    private readonly request: SimulationRequest,
    readonly threads: number,
  ) {
    if (!Number.isInteger(threads) || threads < 1) throw new Error(`threads must be a positive integer, found ${threads}`);
    if (threads === 1) {
      this.local = prepareRun(request);
      return;
    }
    for (let i = 0; i < threads; i++) {
      const worker = new Worker(path.join(__dirname, "worker.js"));
      worker.on("message", (reply: WorkerReply) => this.settle(reply));
      worker.on("error", (error) => this.failAll(error));
      // A worker that exits while showers are pending (killed, out of memory) would leave them
      // pending for ever, so they fail instead.
      worker.on("exit", (code) => {
        if (this.pending.size > 0) this.failAll(new Error(`worker thread exited with code ${code}`));
      });
      this.workers.push(worker);
    }
  }

  private settle(reply: WorkerReply): void {
    const pending = this.pending.get(reply.id);
    if (pending === undefined) return;
    this.pending.delete(reply.id);
    if (reply.batch !== undefined) pending.resolve(reply.batch);
    else pending.reject(new Error(`simulation worker failed: ${reply.error ?? "no reason given"}`));
  }

  private failAll(error: Error): void {
    for (const pending of this.pending.values()) pending.reject(new Error(`simulation worker failed: ${error.message}`));
    this.pending.clear();
  }

  private runOnWorker(worker: Worker, start: number, count: number): Promise<ShowerBatch> {
    const id = this.nextId++;
    const task: WorkerTask = { id, request: this.request, start, count };
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      worker.postMessage(task);
    });
  }

  /** Simulates showers start .. start + count - 1, split into one contiguous piece per thread. */
  async simulate(start: number, count: number): Promise<ShowerBatch> {
    if (this.local !== null) return simulateBatch(this.local, start, count);

    const pieces: Promise<ShowerBatch>[] = [];
    const threads = this.workers.length;
    for (let t = 0; t < threads; t++) {
      const pieceStart = start + Math.floor((count * t) / threads);
      const pieceEnd = start + Math.floor((count * (t + 1)) / threads);
      if (pieceEnd > pieceStart) pieces.push(this.runOnWorker(this.workers[t], pieceStart, pieceEnd - pieceStart));
    }
    const batches = await Promise.all(pieces);
    if (batches.length === 1) return batches[0];

    const energies = new Float32Array(count);
    const voxels = batches[0].showers.length / batches[0].count;
    const showers = new Float32Array(count * voxels);
    for (const batch of batches) {
      energies.set(batch.energies, batch.start - start);
      showers.set(batch.showers, (batch.start - start) * voxels);
    }
    return { start, count, energies, showers };
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((worker) => worker.terminate()));
    this.workers.length = 0;
  }
}
