"""Wall time of `rethink --help` (imports nothing heavy) against `rethink study --help` (imports what the
study command needs), same run, median of N fresh processes each. Prints one JSON object."""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from datetime import date


def wall(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "study.commands.cli", *argv], capture_output=True, check=True)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    top = [wall(["--help"]) for _ in range(args.repeats)]
    study = [wall(["study", "--help"]) for _ in range(args.repeats)]
    print(
        json.dumps(
            {
                "benchmark": "cli_startup",
                "date": date.today().isoformat(),
                "machine": platform.processor() or platform.machine(),
                "python": platform.python_version(),
                "repeats": args.repeats,
                "rethink_help_s_median": round(statistics.median(top), 3),
                "rethink_study_help_s_median": round(statistics.median(study), 3),
                "ratio_study_over_top": round(statistics.median(study) / statistics.median(top), 1),
            }
        )
    )


if __name__ == "__main__":
    main()
