// `caloscore simulate`: GFlash-style reference showers in the CaloChallenge file format.
import { incidentEnergyRange } from "../../calo/hdf5";
import { optionalNumber, optionalString, parseOptions, requireString } from "../args";
import type { SimulationRequest } from "../../simulate/batch";
import { simulateToFile } from "../../simulate/run";

export const summary = "simulate GFlash-style reference showers for dataset 1-photons, 2 or 3 into an HDF5 file";

const help = `usage: caloscore simulate --dataset 1-photons|2|3 --events N --seed S --out FILE.h5 [options]

Simulates N electromagnetic showers with the GFlash parametrisation in the detector of the
dataset and writes them in the CaloChallenge format (incident_energies and showers, MeV).
Incident energies follow the dataset (1-photons: 15 energies 256 MeV .. 4194.304 GeV with the
real set's shares; 2 and 3: log-uniform 1 GeV .. 1 TeV) unless --energies is given. The same
seed gives the same showers for any --chunk and --threads, and the same bytes for the same
--chunk (the HDF5 layout depends on how the showers are appended).

options:
  --dataset NAME    1-photons, 2 or 3
  --events N        number of showers
  --seed S          integer seed, 0 .. 2^53 - 1
  --out FILE        output HDF5 file, written as FILE.partial and renamed when complete
  --energies LIST   one incident energy or a comma-separated list, in MeV, inside the dataset's
                    range (1-photons: 256 .. 4194304, 2 and 3: 1000 .. 1000000); the showers
                    are split evenly over the list, in list order
  --chunk N         showers simulated and written at a time (default: about 16 MiB of voxels)
  --threads N       simulation threads (default: all cores)`;

const datasets = ["1-photons", "2", "3"] as const;

/**
 * Parses --energies. Energies outside the dataset's range are rejected because the shower-file
 * reader rejects such files for that dataset.
 */
function parseEnergies(text: string, dataset: (typeof datasets)[number]): number[] {
  const range = incidentEnergyRange[dataset];
  return text.split(",").map((part) => {
    const value = Number(part.trim());
    if (part.trim() === "" || !Number.isFinite(value) || value <= 0) {
      throw new Error(`simulate: --energies must be positive numbers of MeV separated by commas, found '${part}' in '${text}'`);
    }
    if (value < range.min || value > range.max) {
      throw new Error(`simulate: --energies ${value} MeV is outside the range of dataset ${dataset}, ${range.min} to ${range.max} MeV`);
    }
    return value;
  });
}

export async function run(args: string[]): Promise<number> {
  const parsed = parseOptions("simulate", args, {
    dataset: { type: "string" },
    events: { type: "string" },
    seed: { type: "string" },
    out: { type: "string" },
    energies: { type: "string" },
    chunk: { type: "string" },
    threads: { type: "string" },
  });
  if (parsed.values.help) {
    console.log(help);
    return 0;
  }

  const dataset = requireString("simulate", parsed, "dataset");
  if (!(datasets as readonly string[]).includes(dataset)) {
    throw new Error(`simulate: --dataset must be one of ${datasets.join(", ")}, found '${dataset}'`);
  }
  const events = optionalNumber("simulate", parsed, "events", { integer: true, min: 1 });
  if (events === undefined) throw new Error("simulate: missing required option --events");
  const seed = optionalNumber("simulate", parsed, "seed", { integer: true, min: 0 });
  if (seed === undefined) throw new Error("simulate: missing required option --seed");
  if (!Number.isSafeInteger(seed)) throw new Error(`simulate: --seed must be below 2^53, found ${seed}`);
  const out = requireString("simulate", parsed, "out");
  const energiesText = optionalString(parsed, "energies");
  const chunk = optionalNumber("simulate", parsed, "chunk", { integer: true, min: 1 });
  const threads = optionalNumber("simulate", parsed, "threads", { integer: true, min: 1 });

  const datasetName = dataset as (typeof datasets)[number];
  const request: SimulationRequest = {
    dataset: datasetName,
    events,
    seed,
    energiesMeV: energiesText === undefined ? undefined : parseEnergies(energiesText, datasetName),
  };
  const started = Date.now();
  await simulateToFile(request, out, { chunk, threads, log: (line) => console.error(line) });
  console.error(`simulate: wrote ${events} showers of dataset ${dataset} to ${out} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return 0;
}
