"""Stage 05: look inside the world model: V's reconstructions, M's dreams, real against dream, and report.html.

    python 05_dream.py --env carracing [--temperature 1.15] [--dreams 4] [--steps 200]
    python 05_dream.py --env carracing --play        # drive inside the dream with the keyboard (pygame window)

What it does and writes: pipeline/stages/stage05_dream.py; every flag: --help.
"""
from pipeline.contract.cli import run_main
from pipeline.stages import stage05_dream

if __name__ == "__main__":
    run_main(lambda: stage05_dream.run(stage05_dream.parse_args()))
