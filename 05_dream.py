"""Stage 05: look inside the world model: V's reconstructions, M's dreams, real against dream, and report.html.

    python 05_dream.py --env carracing [--temperature 1.15] [--dreams 4] [--steps 200]
    python 05_dream.py --env carracing --play        # drive inside the dream with the keyboard (pygame window)

Writes <run>/dreams/: reconstructions.png (real frames and V's reconstructions), latent_sweep.png (single
latent dimensions swept), dream_<i>.gif (dreams from real frames, rolled forward by M alone at --temperature,
driven by the trained controller when there is one, else by the collection policy; also .mp4 when ffmpeg is
available), real_vs_dream.gif and real_vs_dream_error.png (one real episode and M's dream of the same
actions), summary.json; then <run>/report.html, one self-contained page with the whole run.
"""
from pipeline.cli import run_main
from pipeline.stages import dream

if __name__ == "__main__":
    run_main(lambda: dream.run(dream.parse_args()))
