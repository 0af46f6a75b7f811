// Denoising score matching (Vincent 2011; Song et al. 2021, Eq. 7 there, Eq. 6 in CaloScore).
import { Generator, rand, randnLike, Tensor, tidy } from "../torch";
import { perSample, Sde, trainTimeMin } from "./sde";
import { ScoreModel } from "./scoreModel";

/**
 * Mean over the batch of lambda(t) || s(x_t, t) - grad log p_t(x_t | x0) ||^2 with
 * lambda(t) = std(t)^2, t ~ U(trainTimeMin, 1), x_t = m(t) x0 + std(t) z. Since the kernel's score
 * is -z / std(t), the summand is || std(t) s(x_t, t) + z ||^2; it is averaged over the entries of
 * a sample (not summed) so the value does not scale with the voxel count. With entryWeights
 * [...modelShape], each entry's squared error is multiplied by its weight before the average.
 * x0: [batch, ...modelShape], condition: [batch] -> scalar tensor.
 */
export function denoisingScoreMatchingLoss(model: ScoreModel, sde: Sde, x0: Tensor, condition: Tensor, generator?: Generator, entryWeights?: Tensor): Tensor {
  return tidy(() => {
    const batch = x0.shape[0];
    const t = rand([batch], { generator }).mul(1 - trainTimeMin).add(trainTimeMin);
    const z = randnLike(x0, generator);
    const { meanScale, std } = sde.marginal(t);
    const xt = x0.mul(perSample(meanScale, x0)).add(z.mul(perSample(std, x0)));
    const score = model.score(xt, t, condition);
    const squared = score.mul(perSample(std, x0)).add(z).square();
    return (entryWeights === undefined ? squared : squared.mul(entryWeights)).mean();
  });
}
