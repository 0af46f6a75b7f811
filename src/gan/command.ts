// `caloscore train --model wgan-gp`: prepares the run folder, builds the generator and critic, and
// trains them with progress output.
import { datasetFromVoxelCount } from "../calo/binning";
import { ShowerFile } from "../calo/hdf5";
import { progressReporter } from "../cli/progress";
import { ModelConfig } from "../score/config";
import { preprocessedData, prepareRun, usableShowers } from "../score/run";
import { createGanNetworks } from "./run";
import { trainGan } from "./train";

export interface TrainGanCommandOptions {
  config: ModelConfig;
  file: ShowerFile;
  runDir: string;
  /** Stop after this many minutes at a batch boundary (the epoch is checkpointed). */
  minutes?: number;
}

/** Trains (or resumes) a WGAN-GP run in `runDir`; returns the process exit code. */
export async function trainGanCommand(options: TrainGanCommandOptions): Promise<number> {
  const { config, file, runDir, minutes } = options;
  const gan = config.gan;
  console.log(
    `train: WGAN-GP; ${config.description || `dataset ${config.dataset}`}; data ${file.path} (${file.count} showers, dataset ${datasetFromVoxelCount(file.voxels)}); ` +
      `noise ${gan.noiseDim}, ${gan.criticSteps} critic steps per generator step, lambda ${gan.gradientPenalty}, RMSprop lr ${gan.learningRate}`,
  );
  const { preprocessing } = prepareRun(runDir, config, null, "wgan-gp", file);
  const { generator, critic } = createGanNetworks(config, preprocessing.modelShape);
  console.log(
    `train: model input [${preprocessing.modelShape.join(", ")}], generator ${generator.parameterCount().toLocaleString("en-US")} parameters, ` +
      `critic ${critic.parameterCount().toLocaleString("en-US")} parameters`,
  );
  const progress = progressReporter();
  try {
    const state = trainGan({
      config,
      generator,
      critic,
      data: preprocessedData(file, preprocessing, usableShowers(config, file)),
      runDir,
      minutes,
      log: (line) => progress.log(line),
      onProgress: (event) =>
        progress.update(
          `epoch ${event.epoch}/${event.maxEpochs}`,
          event.done / event.total,
          `critic loss ${event.loss.toFixed(4)}, ${event.showersPerSecond.toFixed(0)} showers/s`,
        ),
    });
    progress.done();
    const last = state.history[state.history.length - 1];
    const estimate = last !== undefined ? `, last validation Wasserstein estimate ${last.validationWasserstein.toFixed(5)}` : "";
    console.log(`train: ${state.epoch} epochs${estimate}; checkpoint in ${runDir}`);
  } finally {
    generator.dispose();
    critic.dispose();
  }
  return 0;
}
