// `caloscore bench`: times the tensor engine on a U-Net-like 3D block at dataset-2 shapes against
// the same network in PyTorch (bench/engine.ts and bench/engine_reference.py).
import { defaultEngineBenchOptions, formatEngineBench, runEngineBench } from "../../../bench/engine";
import { flag, optionalNumber, parseOptions } from "../args";

export const summary = "time a training step and a forward of a 3D U-Net block against PyTorch";

const help = `usage: caloscore bench [--json] [--batch N] [--warmup N] [--repeat N] [--threads N] [--no-reference]

Times a training step (forward, backward, Adam) and a no-grad forward of a U-Net-like 3D block
at the shapes of dataset 2 (45x12x12 grid, channels 32/64/128, average pooling 3x2x2), in this
engine and in PyTorch through Debian's /usr/bin/python3 with the same settings, and reports the
median times, GFLOP/s and the engine's throughput relative to PyTorch's.

options:
  --json           print one JSON object instead of text
  --batch N        showers per step (default 64)
  --warmup N       untimed steps before timing (default 1)
  --repeat N       timed steps; the median is reported (default 3)
  --threads N      intra-op threads for both engines (default CALOSCORE_THREADS, else every core)
  --no-reference   skip the PyTorch run`;

export async function run(args: string[]): Promise<number> {
  const parsed = parseOptions("bench", args, {
    json: { type: "boolean" },
    batch: { type: "string" },
    warmup: { type: "string" },
    repeat: { type: "string" },
    threads: { type: "string" },
    "no-reference": { type: "boolean" },
  });
  if (flag(parsed, "help")) {
    console.log(help);
    return 0;
  }

  const defaults = defaultEngineBenchOptions();
  const options = {
    batch: optionalNumber("bench", parsed, "batch", { integer: true, min: 1 }) ?? defaults.batch,
    warmup: optionalNumber("bench", parsed, "warmup", { integer: true, min: 0 }) ?? defaults.warmup,
    repeat: optionalNumber("bench", parsed, "repeat", { integer: true, min: 1 }) ?? defaults.repeat,
    threads: optionalNumber("bench", parsed, "threads", { integer: true, min: 1 }) ?? defaults.threads,
    reference: !flag(parsed, "no-reference"),
  };

  const result = await runEngineBench(options);
  console.log(flag(parsed, "json") ? JSON.stringify(result, null, 2) : formatEngineBench(result));
  return 0;
}
