"""Bits sweep: the dense model and GPTQ / AWQ at 8, 4 and 3 bits.

    python sweeps/bits_sweep.py [--profile smoke|quick|paper] [--seeds 0,1,2]
    ray job submit --working-dir . -- python sweeps/bits_sweep.py --profile paper
"""

from pathlib import Path

from trustray.cli.pipeline import sweep_script

if __name__ == "__main__":
    sweep_script(Path(__file__).with_name("bits.yaml"))
