"""Stage 04: evolve C, the linear controller on [z, h], with CMA-ES in the real environment or in M's dream.

    python 04_train_controller.py --env carracing --pop 64 --trials 16 --workers 64
    python 04_train_controller.py --env carracing --in dream --temperature 1.15 --real-every 25
    python 04_train_controller.py --env carracing --evaluate 100      # mean ± std over 100 fresh episodes

Every generation logs best/mean/worst fitness and sigma to metrics/controller.csv and saves the ES
state (<run>/es_state.pkl): re-running resumes after the last completed generation. An evaluation worker
that dies, or hangs past --task-timeout, is replaced and its tasks are played again (same results). Every
--eval-every generations (and at the last) the CMA mean is scored on --eval-episodes real episodes; the
best-scoring mean becomes <run>/controller.pt, the controller --evaluate and later stages use.

With --in dream the fitness is the mean return in M's dream (pipeline/dream.py): population × trials play as
one batch through M and C on --device, rewards from M's reward head, an episode ends when M's done
probability passes 0.5, each trial starts from a real frame. Every --real-every generations the generation's
best candidate and the CMA mean are also scored in the real env (and the mean in the dream), so the
dream–reality gap shows in metrics/controller.csv and plots/controller_dream_vs_real.png.
"""
from pipeline.cli import run_main
from pipeline.stages import controller

if __name__ == "__main__":
    run_main(lambda: controller.run(controller.parse_args()))
