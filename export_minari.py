"""Write a data folder's episodes as a Minari dataset that minari.load_dataset opens (frames stored losslessly).

    python export_minari.py --data data/demo-carracing --dataset world-models/carracing/demo-v0
"""
from pipeline.contract.cli import run_main
from pipeline.minari_io import main

if __name__ == "__main__":
    run_main(main)
