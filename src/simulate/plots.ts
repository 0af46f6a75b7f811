// Profile plots of simulated showers against the parametrisation's mean, for docs/simulation.md.
import { loadGeometry } from "../calo/binning";
import { stepHistogramSvg } from "../evaluate/plot";
import { calorimeterFor } from "./detector";
import { predictProfiles } from "./prediction";
import { showerRng } from "./random";
import { ShowerSimulator } from "./shower";

/** SVG documents of the longitudinal and radial profiles. */
export interface ProfilePlots {
  longitudinal: string;
  radial: string;
}

/**
 * Simulates `count` dataset 3 showers at each energy and plots the mean energy per layer and per
 * r bin (fractions of the incident energy) with the GFlash prediction as a second line.
 */
export function profilePlots(energiesGeV: readonly number[], count: number, seed: number): ProfilePlots {
  const calorimeter = calorimeterFor("3");
  const geometry = loadGeometry("3");
  const simulator = new ShowerSimulator(calorimeter, geometry);
  const layers = geometry.layers.length;
  const rEdges = geometry.layers[0].rEdges;
  const rBins = rEdges.length - 1;
  const alphaBins = geometry.layers[0].alphaBins;
  const voxels = geometry.voxelCount;
  const row = new Float32Array(voxels);

  const longitudinalSeries = [];
  const radialSeries = [];
  for (const energyGeV of energiesGeV) {
    const energyMeV = energyGeV * 1000;
    const layerSums = new Float64Array(layers);
    const radialSums = new Float64Array(rBins);
    for (let i = 0; i < count; i++) {
      simulator.simulate(energyMeV, showerRng(seed, i), row, 0);
      for (let voxel = 0; voxel < voxels; voxel++) {
        const value = row[voxel];
        if (value === 0) continue;
        layerSums[Math.floor(voxel / (alphaBins * rBins))] += value;
        radialSums[voxel % rBins] += value;
      }
    }
    const predicted = predictProfiles(calorimeter, energyMeV, rEdges);
    const scale = 1 / (count * energyMeV);
    longitudinalSeries.push(
      { label: `${energyGeV} GeV, simulated`, values: layerSums.map((value) => value * scale) },
      { label: `${energyGeV} GeV, GFlash mean`, values: predicted.layerFractions },
    );
    radialSeries.push(
      { label: `${energyGeV} GeV, simulated`, values: radialSums.map((value) => value * scale) },
      { label: `${energyGeV} GeV, GFlash mean`, values: predicted.radialFractions },
    );
  }

  const longitudinal = stepHistogramSvg({
    title: `Longitudinal profile, dataset 3 geometry, ${count} electrons per energy`,
    xLabel: "layer (3.4 mm = 0.81 X0 each)",
    yLabel: "mean energy / E_inc",
    edges: Float64Array.from({ length: layers + 1 }, (_, k) => k),
    series: longitudinalSeries,
    logY: true,
    reference: false,
  });
  const radial = stepHistogramSvg({
    title: `Radial profile, dataset 3 geometry, ${count} electrons per energy`,
    xLabel: "r [mm]",
    yLabel: "mean energy / E_inc per r bin",
    edges: Float64Array.from(rEdges),
    series: radialSeries,
    logY: true,
    reference: false,
  });
  return { longitudinal, radial };
}
