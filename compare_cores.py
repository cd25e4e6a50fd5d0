"""Train every recurrent core of M on the same data, budget and seed, and compare them.

    python compare_cores.py --env carracing --cores lstm,attention,vsg,svsg --epochs 20

Needs <run>/vae.pt (stage 02). Each core is trained by the real 03_train_mdnrnn.py into
<run>/cores/<core>/ (re-running resumes), then scored on the held-out episodes: validation NLL of the
next z, reward and done error, open-loop prediction error k steps ahead (decoded through V against the
real frames), the update fraction of the gated cores, parameter count and training steps/s. Writes
<run>/cores/comparison.md, comparison.json and comparison.png.
"""
from pipeline.cli import run_main
from pipeline.stages import compare_cores

if __name__ == "__main__":
    run_main(lambda: compare_cores.run(compare_cores.parse_args()))
