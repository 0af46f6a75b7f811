// Simulates a run in chunks and writes it to a CaloChallenge HDF5 file.
import * as os from "node:os";
import { createShowerFile, initHdf5 } from "../calo/hdf5";
import { voxelCounts } from "../calo/binning";
import type { ShowerBatch, SimulationRequest } from "./batch";
import { SimulationPool } from "./pool";

export interface RunOptions {
  /** Showers simulated and written per chunk; default about 16 MiB of float32 voxels. */
  chunk?: number;
  /** Simulation threads; default os.availableParallelism(). */
  threads?: number;
  /** Receives one line per written chunk. */
  log?: (line: string) => void;
}

/**
 * Runs synchronous h5wasm calls with Date.now fixed at 0. HDF5 stores access, modification,
 * change and birth times in each dataset's object header and reads the clock through Date.now
 * in h5wasm's build. h5wasm 0.10.3 cannot turn those times off (HDF5's H5Pset_obj_track_times),
 * so without this two runs with the same seed differ in those bytes. No other JavaScript runs
 * during a synchronous call, and worker threads have their own Date.
 */
function withFixedClock<T>(call: () => T): T {
  const now = Date.now;
  Date.now = () => 0;
  try {
    return call();
  } finally {
    Date.now = now;
  }
}

/** Default chunk: about 16 MiB of voxel data, at least one shower. */
export function defaultChunk(voxels: number): number {
  return Math.max(1, Math.floor((16 * 1024 * 1024) / (4 * voxels)));
}

/**
 * Simulates `request` and writes it to `outPath` (under a temporary name, renamed when complete).
 * At most two chunks are held in memory: the next one is simulated while the current one is
 * written.
 */
export async function simulateToFile(request: SimulationRequest, outPath: string, options: RunOptions = {}): Promise<void> {
  const voxels = voxelCounts[request.dataset];
  const chunk = options.chunk ?? defaultChunk(voxels);
  if (!Number.isInteger(chunk) || chunk < 1) throw new Error(`chunk must be a positive integer, found ${chunk}`);
  const threads = options.threads ?? os.availableParallelism();

  await initHdf5();
  const writer = withFixedClock(() => createShowerFile(outPath, voxels));
  const pool = new SimulationPool(request, threads);
  const started = process.hrtime.bigint();
  let next: Promise<ShowerBatch> | null = null;
  try {
    next = request.events > 0 ? pool.simulate(0, Math.min(chunk, request.events)) : null;
    while (next !== null) {
      const batch = await next;
      const end = batch.start + batch.count;
      next = end < request.events ? pool.simulate(end, Math.min(chunk, request.events - end)) : null;
      withFixedClock(() => writer.append(batch.energies, batch.showers));
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      options.log?.(`simulate: wrote showers ${batch.start}..${end - 1} of ${request.events} (${(end / Math.max(seconds, 1e-3)).toFixed(0)} showers/s)`);
    }
    withFixedClock(() => writer.finish());
  } catch (error) {
    // The chunk simulated ahead is no longer wanted; its own failure must not go unhandled.
    next?.catch(() => undefined);
    writer.abort();
    throw error;
  } finally {
    await pool.close();
  }
}
