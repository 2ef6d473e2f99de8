"""Pruning sweep: SparseGPT, Wanda and magnitude pruning at 50 % and 2:4.

    python sweeps/prune_sweep.py [--profile smoke|quick|paper] [--seeds 0,1,2]
"""

from pathlib import Path

from trustray.cli.pipeline import sweep_script

if __name__ == "__main__":
    sweep_script(Path(__file__).with_name("prune.yaml"))
