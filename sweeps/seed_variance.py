"""Calibration-seed variance: one method (GPTQ 4-bit) with several calibration seeds. Ends with
the table that splits each perspective's variance into a calibration-seed and an item-sampling
part, and says whether the effect against the dense model exceeds the seed spread.

    python sweeps/seed_variance.py [--profile smoke|quick|paper] [--seeds 0,1,2,3,4]
"""

from pathlib import Path

from trustray.cli.pipeline import sweep_script

if __name__ == "__main__":
    sweep_script(Path(__file__).with_name("seed_variance.yaml"), seed_table=True)
