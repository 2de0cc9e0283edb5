"""Shared helpers of the bench scripts: whole-process timing of a command."""
import statistics
import subprocess
import time


def timed(cmd, runs):
    """Median and minimum wall time (ms) of `runs` runs of `cmd`."""
    t = []
    for _ in range(runs):
        s = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        t.append((time.perf_counter() - s) * 1000)
    return statistics.median(t), min(t)
