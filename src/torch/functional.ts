// Neural-network functions over tensors, named as in torch.nn.functional.
import { native } from "./native";
import { adopt, Tensor } from "./tensor";

function repeatTo(value: number | readonly number[], n: number): number[] {
  return typeof value === "number" ? Array<number>(n).fill(value) : [...value];
}

export interface ConvOptions {
  stride?: number | readonly number[];
  padding?: number | readonly number[];
  dilation?: number | readonly number[];
  groups?: number;
}

/**
 * Convolution over 1, 2 or 3 spatial dimensions; the dimensionality follows the input.
 * x: [batch, inChannels, ...spatial], weight: [outChannels, inChannels / groups, ...kernel].
 */
export function conv(x: Tensor, weight: Tensor, bias: Tensor | null, options: ConvOptions = {}): Tensor {
  const spatial = x.ndim - 2;
  return adopt(
    native.conv(
      x.handle,
      weight.handle,
      bias === null ? null : bias.handle,
      repeatTo(options.stride ?? 1, spatial),
      repeatTo(options.padding ?? 0, spatial),
      repeatTo(options.dilation ?? 1, spatial),
      options.groups ?? 1,
    ),
  );
}

/** x @ weight^T + bias, weight: [out, in]. */
export function linear(x: Tensor, weight: Tensor, bias: Tensor | null): Tensor {
  return adopt(native.linear(x.handle, weight.handle, bias === null ? null : bias.handle));
}

/** Average pooling without padding; the kernel's length sets the dimensionality (1 to 3). */
export function avgPool(x: Tensor, kernel: readonly number[], stride: readonly number[] = kernel): Tensor {
  return adopt(native.avgPool(x.handle, [...kernel], [...stride]));
}

/** Nearest-neighbour upsampling by integer factors: each value repeated scale times per dimension. */
export function upsampleNearest(x: Tensor, scale: readonly number[]): Tensor {
  return adopt(native.upsampleNearest(x.handle, [...scale]));
}

/**
 * Batch normalisation over [batch, channels, ...]. In training mode the batch statistics are
 * used and the running statistics updated in place with `momentum`; in evaluation mode the
 * running statistics are used.
 */
export function batchNorm(
  x: Tensor,
  runningMean: Tensor | null,
  runningVar: Tensor | null,
  weight: Tensor | null,
  bias: Tensor | null,
  training: boolean,
  momentum = 0.1,
  eps = 1e-5,
): Tensor {
  const h = (t: Tensor | null) => (t === null ? null : t.handle);
  return adopt(native.batchNorm(x.handle, h(weight), h(bias), h(runningMean), h(runningVar), training, momentum, eps));
}

/** Zeroes elements with probability p in training mode and scales the rest by 1 / (1 - p). */
export function dropout(x: Tensor, p: number, training: boolean): Tensor {
  return adopt(native.dropout(x.handle, p, training));
}

/** Mean binary cross-entropy of logits against targets in [0, 1]. */
export function binaryCrossEntropyWithLogits(logits: Tensor, targets: Tensor): Tensor {
  return adopt(native.binaryCrossEntropyWithLogits(logits.handle, targets.handle));
}
