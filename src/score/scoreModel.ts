// The interface between score networks (or analytic scores in tests) and the samplers and
// likelihood.
import { Tensor } from "../torch";

export interface ScoreModel {
  /**
   * Estimate of grad_x log p_t(x | condition).
   * x: [batch, ...modelShape] in preprocessed space; t: [batch] in (0, 1]; condition: [batch]
   * (transformed incident energy in [0, 1]) -> [batch, ...modelShape].
   */
  score(x: Tensor, t: Tensor, condition: Tensor): Tensor;
}
