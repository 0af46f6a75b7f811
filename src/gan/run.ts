// WGAN-GP run folders: the same layout as a score run (with model "wgan-gp" in run.json), with both
// networks, both optimizers' moments and the training state in RUN/last.safetensors.
import * as fs from "node:fs";
import * as path from "node:path";
import { PreprocessingState } from "../calo/preprocess";
import { Generator, noGrad, Tensor, tidy } from "../torch";
import { ModelConfig } from "../score/config";
import { readPreprocessing, readRunInfo, RunInfo, unetConfig } from "../score/run";
import { sampleNoise, UNetCritic, UNetGenerator } from "./model";
import { ganCheckpointName, loadGeneratorWeights } from "./train";

export interface GanNetworks {
  generator: UNetGenerator;
  critic: UNetCritic;
}

/**
 * Builds both networks of a configuration for a model input shape ([1, 45, 12, 12], ...), with
 * initial weights drawn from generators seeded by training.seed (one stream per network).
 */
export function createGanNetworks(config: ModelConfig, modelShape: number[]): GanNetworks {
  const unet = unetConfig(config, modelShape);
  const generator = new UNetGenerator(unet, config.gan.noiseDim, new Generator(config.training.seed));
  const critic = new UNetCritic(unet, new Generator(config.training.seed + 1));
  return { generator, critic };
}

export interface LoadedGanRun {
  info: RunInfo;
  preprocessing: PreprocessingState;
  /** Path of the loaded checkpoint (the last epoch's; a GAN run keeps no other). */
  checkpoint: string;
  /** Completed training epochs of the loaded checkpoint. */
  epoch: number;
  /**
   * Generates one sample per condition in preprocessed space, without gradients.
   * condition: [batch] in [0, 1] -> [batch, ...modelShape]; the caller owns the result.
   */
  generate(condition: Tensor, generator?: Generator): Tensor;
  /** Frees the generator's weights. */
  dispose(): void;
}

/** Loads the generator of a trained WGAN-GP run (last epoch) in evaluation mode. */
export function loadGanRun(runDir: string): LoadedGanRun {
  const info = readRunInfo(runDir);
  if (info.model !== "wgan-gp") throw new Error(`${runDir} is a ${info.model} run, not a wgan-gp run`);
  const checkpoint = path.join(runDir, ganCheckpointName);
  if (!fs.existsSync(checkpoint)) throw new Error(`${runDir} has no checkpoint yet (${ganCheckpointName}); train it first`);
  const preprocessing = readPreprocessing(runDir);

  const unet = unetConfig(info.config, preprocessing.modelShape);
  const network = new UNetGenerator(unet, info.config.gan.noiseDim);
  let epoch: number;
  try {
    epoch = loadGeneratorWeights(network, checkpoint).epoch;
  } catch (error) {
    network.dispose();
    throw error;
  }
  network.eval();

  return {
    info,
    preprocessing,
    checkpoint,
    epoch,
    generate(condition: Tensor, generator?: Generator): Tensor {
      if (condition.ndim !== 1) throw new Error(`generate: condition must have shape [batch], found [${condition.shape.join(", ")}]`);
      return noGrad(() => tidy(() => network.forward(sampleNoise(condition.shape[0], network.noiseDim, generator), condition)));
    },
    dispose(): void {
      network.dispose();
    },
  };
}
