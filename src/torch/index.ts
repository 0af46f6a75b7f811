// Public entry of the tensor engine.
import * as os from "node:os";
import { setNumThreads } from "./tensor";

export * from "./tensor";
export * as F from "./functional";
export * as nn from "./nn";
export * as optim from "./optim";
export * from "./safetensors";

/**
 * Intra-op thread count: the CALOSCORE_THREADS environment variable when set, else every core
 * the process may use. Call configureThreads(n) to override from an option.
 */
export function configureThreads(threads?: number): number {
  const fromEnv = process.env.CALOSCORE_THREADS;
  let count = threads ?? (fromEnv !== undefined && fromEnv !== "" ? Number(fromEnv) : os.availableParallelism());
  if (!Number.isInteger(count) || count < 1) {
    throw new Error(`CALOSCORE_THREADS must be a positive integer, found '${fromEnv}'`);
  }
  count = Math.floor(count);
  setNumThreads(count);
  return count;
}

configureThreads();
