// Detector descriptions for the simulator: the materials, the effective medium of a sampling
// calorimeter, and the depth ranges that feed each readout layer of datasets 1 (photons), 2 and 3.

/**
 * A pure material: radiation length X0, Moliere radius R_M, density.
 * NOTE: the values below are the PDG "Atomic and nuclear properties" figures as commonly quoted,
 * not re-read from the PDG tables for this code.
 */
export interface Material {
  name: string;
  /** Atomic number. */
  z: number;
  /** Density in g/cm^3. */
  density: number;
  /** Radiation length in mm. */
  radiationLength: number;
  /** Moliere radius in mm. */
  moliereRadius: number;
}

/** Tungsten (PDG): X0 = 0.3504 cm, R_M = 0.9327 cm, 19.3 g/cm^3. */
export const TUNGSTEN: Material = { name: "W", z: 74, density: 19.3, radiationLength: 3.504, moliereRadius: 9.327 };
/** Silicon (PDG): X0 = 9.370 cm, R_M = 4.944 cm, 2.329 g/cm^3. */
export const SILICON: Material = { name: "Si", z: 14, density: 2.329, radiationLength: 93.7, moliereRadius: 49.44 };
/** Lead (PDG): X0 = 0.5612 cm, R_M = 1.602 cm, 11.35 g/cm^3. */
export const LEAD: Material = { name: "Pb", z: 82, density: 11.35, radiationLength: 5.612, moliereRadius: 16.02 };
/** Liquid argon (PDG): X0 = 14.00 cm, R_M = 9.043 cm, 1.396 g/cm^3. */
export const LIQUID_ARGON: Material = { name: "LAr", z: 18, density: 1.396, radiationLength: 140.0, moliereRadius: 90.43 };

/** Scale energy E_s = m_e c^2 sqrt(4 pi / alpha) in MeV, as used in the PDG Moliere radius. */
export const SCALE_ENERGY_MEV = 21.2052;

/**
 * Homogeneous medium equivalent to a stack of absorber and active layers, in the quantities the
 * GFlash sampling parametrisation uses (Grindhammer and Peters, hep-ex/0001020, section 3).
 */
export interface EffectiveMedium {
  /** Mass-weighted mean atomic number. */
  z: number;
  /** Radiation length of the mixture in mm. */
  radiationLength: number;
  /** Moliere radius of the mixture in mm. */
  moliereRadius: number;
  /** Critical energy of the mixture in MeV (E_s X0 / R_M). */
  criticalEnergy: number;
  /** F_S = X0_eff / (d_absorber + d_active): sampling frequency in layers per X0. */
  samplingFrequency: number;
  /** e/mip = 1 / (1 + 0.007 (Z_absorber - Z_active)). */
  electronToMip: number;
}

/**
 * Computes the effective medium of a repeated (absorber, active) cell with thicknesses in mm.
 * 1/X0 and 1/R_M are thickness-weighted means of the pure materials' inverse values; this equals
 * the mass-weighted rule in g/cm^2 divided by the mean density.
 */
export function effectiveMedium(absorber: Material, absorberMm: number, active: Material, activeMm: number): EffectiveMedium {
  const cell = absorberMm + activeMm;
  const absorberFraction = absorberMm / cell;
  const activeFraction = activeMm / cell;
  const radiationLength = 1 / (absorberFraction / absorber.radiationLength + activeFraction / active.radiationLength);
  const moliereRadius = 1 / (absorberFraction / absorber.moliereRadius + activeFraction / active.moliereRadius);

  const absorberMass = absorberMm * absorber.density;
  const activeMass = activeMm * active.density;
  const z = (absorberMass * absorber.z + activeMass * active.z) / (absorberMass + activeMass);

  return {
    z,
    radiationLength,
    moliereRadius,
    criticalEnergy: (SCALE_ENERGY_MEV * radiationLength) / moliereRadius,
    samplingFrequency: radiationLength / cell,
    electronToMip: 1 / (1 + 0.007 * (absorber.z - active.z)),
  };
}

/** Depth range, in radiation lengths of the effective medium, that feeds one readout layer. */
export interface DepthRange {
  /** Index of the readout layer in the binning file. */
  layer: number;
  /** Front of the range in X0. */
  start: number;
  /** Back of the range in X0. */
  end: number;
}

/** Everything the simulator needs to know about one dataset's detector. */
export interface Calorimeter {
  /** Dataset name as given on the command line. */
  dataset: "1-photons" | "2" | "3";
  /** Incident particle. Photons start their shower after an exponential conversion depth. */
  particle: "electron" | "photon";
  /** Cell description for the documentation. */
  description: string;
  medium: EffectiveMedium;
  /**
   * Depth ranges of the readout layers, ordered by depth. Energy deposited outside every range
   * (dead material, leakage) is lost, as in a real detector.
   */
  ranges: DepthRange[];
  /** Stochastic term a of the resolution a / sqrt(E / GeV), as a fraction. */
  stochasticTerm: number;
  /** Constant term b of the resolution, as a fraction. */
  constantTerm: number;
  /**
   * Ratio of active to total deposited energy. The simulator draws calibrated voxel energies
   * (active-layer energy divided by this fraction) directly.
   */
  samplingFraction: number;
  /** Calibrated voxel energies below this value (MeV) are set to zero. */
  thresholdMeV: number;
}

/** Datasets 2 and 3: tungsten-silicon cell of GEANT4's example Par04, 1.4 mm W + 0.3 mm Si. */
const SIW_ABSORBER_MM = 1.4;
const SIW_ACTIVE_MM = 0.3;
const SIW_READOUT_LAYERS = 45;
/** One readout layer of datasets 2 and 3 is two physical W/Si cells, 3.4 mm. */
const SIW_READOUT_LAYER_MM = 2 * (SIW_ABSORBER_MM + SIW_ACTIVE_MM);

function siliconTungsten(dataset: "2" | "3"): Calorimeter {
  const medium = effectiveMedium(TUNGSTEN, SIW_ABSORBER_MM, SILICON, SIW_ACTIVE_MM);
  const layerX0 = SIW_READOUT_LAYER_MM / medium.radiationLength;
  const ranges: DepthRange[] = [];
  for (let layer = 0; layer < SIW_READOUT_LAYERS; layer++) {
    ranges.push({ layer, start: layer * layerX0, end: (layer + 1) * layerX0 });
  }
  return {
    dataset,
    particle: "electron",
    description: "45 readout layers of 2 x (1.4 mm W + 0.3 mm Si), particle entering at (0, 0, 0) along z",
    medium,
    ranges,
    // NOTE: the resolution of the Par04 W/Si calorimeter is not published with the datasets;
    // 12%/sqrt(E) (+) 1% is an assumed value of the order of silicon-tungsten calorimeters.
    stochasticTerm: 0.12,
    constantTerm: 0.01,
    samplingFraction: 0.033,
    // 0.5 keV in silicon, divided by the sampling fraction (the value of the CaloChallenge files).
    thresholdMeV: 0.5e-3 / 0.033,
  };
}

/**
 * ATLAS-like barrel at |eta| about 0.2 for dataset 1 photons: lead / liquid-argon accordion
 * (1.53 mm Pb + 2 x 2.1 mm LAr gaps, ignoring the steel cladding and the electrode), with the
 * depth layout below in X0 of that medium along the photon direction.
 *
 * | range (X0)  | what                                            | readout layer |
 * | 0.0 - 2.0   | inner detector, solenoid and cryostat (dead)    | none          |
 * | 2.0 - 2.1   | presampler, 11 mm liquid argon                  | 0             |
 * | 2.1 - 2.6   | material between presampler and accordion       | none          |
 * | 2.6 - 6.9   | accordion strips, 4.3 X0                        | 1             |
 * | 6.9 - 22.9  | accordion middle, 16 X0                         | 2             |
 * | 22.9 - 24.9 | accordion back, 2 X0                            | 3             |
 * | 24.9 - 25.9 | cryostat between the LAr and tile calorimeters  | none          |
 * | 25.9 - 41.9 | first tile layer                                | 12            |
 *
 * NOTE: the layer depths are chosen to match the published ATLAS barrel figures at low |eta|
 * (strips about 4.3 X0, middle about 16 X0, back about 2 X0, about 2 X0 in front of the
 * presampler); they are not taken from the ATLAS geometry used for the real dataset.
 */
function atlasBarrel(): Calorimeter {
  return {
    dataset: "1-photons",
    particle: "photon",
    description: "ATLAS-like barrel at |eta| = 0.2: presampler, three Pb/LAr accordion layers, tile",
    medium: effectiveMedium(LEAD, 1.53, LIQUID_ARGON, 4.2),
    ranges: [
      { layer: 0, start: 2.0, end: 2.1 },
      { layer: 1, start: 2.6, end: 6.9 },
      { layer: 2, start: 6.9, end: 22.9 },
      { layer: 3, start: 22.9, end: 24.9 },
      { layer: 12, start: 25.9, end: 41.9 },
    ],
    // The ATLAS LAr barrel design resolution as commonly quoted, 10%/sqrt(E) (+) 0.7%.
    stochasticTerm: 0.1,
    constantTerm: 0.007,
    // ATLAS cell energies are calibrated to the electromagnetic scale, so the simulator never
    // divides by this value. NOTE: 0.18 is an estimate of the accordion's active share near
    // eta = 0, kept for the documentation only.
    samplingFraction: 0.18,
    // The dataset 1 files carry no readout threshold.
    thresholdMeV: 0,
  };
}

/** Returns the calorimeter of a dataset name from the command line. */
export function calorimeterFor(dataset: string): Calorimeter {
  switch (dataset) {
    case "1-photons":
      return atlasBarrel();
    case "2":
    case "3":
      return siliconTungsten(dataset);
    default:
      throw new Error(`unknown dataset '${dataset}'; expected 1-photons, 2 or 3`);
  }
}
