"""Calibration-seed variance: one method (GPTQ 4-bit) with several calibration seeds.

    python sweeps/seed_variance.py [--profile smoke|quick|paper] [--seeds 0,1,2,3,4]
"""

from pathlib import Path

from trustray.cli.pipeline import sweep_script

if __name__ == "__main__":
    sweep_script(Path(__file__).with_name("seed_variance.yaml"))
