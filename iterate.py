"""Iterative training: collect with C, fine-tune M, train C again (in M's dream, the env, or both); repeat."""
from pipeline.contract.cli import run_main
from pipeline.stages import iterative_training

if __name__ == "__main__":
    run_main(lambda: iterative_training.run(iterative_training.parse_args()))
