// Simulation of a contiguous range of shower indices: the unit of work of one thread.
import { loadGeometry } from "../calo/binning";
import { calorimeterFor } from "./detector";
import { EnergyPlan, energyPlan } from "./energies";
import { showerRng } from "./random";
import { ShowerSimulator } from "./shower";

/** Request for one simulation run. It is plain data, so it can be sent to worker threads. */
export interface SimulationRequest {
  dataset: "1-photons" | "2" | "3";
  /** Total number of showers in the run (the dataset 1 energy shares depend on it). */
  events: number;
  /** Run seed, a non-negative integer below 2^53. */
  seed: number;
  /** Fixed incident energies in MeV instead of the dataset's spectrum. */
  energiesMeV?: number[];
}

/** Showers [count] with their incident energies, in MeV. */
export interface ShowerBatch {
  start: number;
  count: number;
  energies: Float32Array;
  /** [count, voxels], row-major. */
  showers: Float32Array;
}

/** Simulator and energy plan of a request, built once per thread. */
export interface PreparedRun {
  simulator: ShowerSimulator;
  plan: EnergyPlan;
  seed: number;
}

export function prepareRun(request: SimulationRequest): PreparedRun {
  const calorimeter = calorimeterFor(request.dataset);
  const simulator = new ShowerSimulator(calorimeter, loadGeometry(request.dataset));
  return { simulator, plan: energyPlan(request.dataset, request.events, request.energiesMeV), seed: request.seed };
}

/**
 * Simulates showers start .. start + count - 1. Shower i uses only the stream showerRng(seed, i),
 * which first gives its energy (when the plan draws one) and then its shower, so a shower's
 * content never depends on how the run is split into batches.
 */
export function simulateBatch(run: PreparedRun, start: number, count: number): ShowerBatch {
  const voxels = run.simulator.voxelCount;
  const energies = new Float32Array(count);
  const showers = new Float32Array(count * voxels);
  for (let i = 0; i < count; i++) {
    const rng = showerRng(run.seed, start + i);
    const energy = run.plan.energyOf(start + i, rng);
    energies[i] = energy;
    run.simulator.simulate(energy, rng, showers, i * voxels);
  }
  return { start, count, energies, showers };
}
