// Loads the compiled libtorch binding (native/build/Release/caloscore_torch.node).
import * as path from "node:path";
import * as fs from "node:fs";

/** Opaque handle to a native at::Tensor. */
export interface NativeTensor {
  readonly __nativeTensor: unique symbol;
}

/** Native CPU random-number generator (at::CPUGeneratorImpl, Philox/MT19937 state). */
export interface NativeGenerator {
  getState(): Uint8Array;
  setState(state: Uint8Array): void;
}

type Fn = (...args: unknown[]) => unknown;
export type NativeBinding = Record<string, Fn> & {
  Generator: new (seed: number) => NativeGenerator;
};

function locateBinding(): string {
  const candidates = [
    path.resolve(__dirname, "../../native/build/Release/caloscore_torch.node"),
    path.resolve(__dirname, "../../../native/build/Release/caloscore_torch.node"),
  ];
  for (const candidate of candidates) {
    if (fs.existsSync(candidate)) return candidate;
  }
  throw new Error(
    `the native libtorch binding is not built (looked for ${candidates.join(" and ")}); ` +
      "run `npm run setup` to install libtorch and build it",
  );
}

export const native: NativeBinding = require(locateBinding()) as NativeBinding;
