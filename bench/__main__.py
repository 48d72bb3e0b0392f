"""``python -m bench <name> [--dataset NAME] [--data-dir DIR] [--out FILE]
[--engine local|spark] [--spark-master URL] [--spark-submit-args ARGS]
[--database sqlite|postgresql] [--against DIR] [--rounds N]``."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from bench import (
    binning,
    bridge,
    bridge_compare,
    dashboard_start,
    datasets,
    hetero_lr,
    intersect,
    paillier,
    secureboost,
    spark_phases,
    spark_start,
)
from bench.common import Options

BENCHMARKS: dict[str, Callable[[Options], None]] = {
    "paillier": paillier.run,
    "hetero_lr": hetero_lr.run,
    "bridge": bridge.run,
    "bridge_compare": bridge_compare.run,
    "hetero_secureboost": secureboost.run,
    "intersect": intersect.run,
    "binning": binning.run,
    "spark_start": spark_start.run,
    "spark_phases": spark_phases.run,
    "dashboard_start": dashboard_start.run,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("name", choices=sorted(BENCHMARKS))
    parser.add_argument(
        "--dataset", help="one data set (default: every one but the largest; see bench/README.md)"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=datasets.DATA_DIR,
        help="where breast_hetero_*.csv and default_credit_hetero_*.csv are",
    )
    parser.add_argument("--out", type=Path, help="also append each JSON line to this file")
    parser.add_argument(
        "--engine",
        choices=("local", "spark"),
        default="local",
        help="where hetero_lr and hetero_secureboost compute (fedalgo.computing)",
    )
    parser.add_argument(
        "--spark-master", default="local[*]", help="the Spark master of --engine spark"
    )
    parser.add_argument(
        "--spark-submit-args",
        default="",
        help="spark-submit flags every party's operator sets (e.g. '--driver-memory 2g')",
    )
    parser.add_argument(
        "--database",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="dashboard_start: the dashboard's database (postgresql: a throwaway cluster)",
    )
    parser.add_argument(
        "--against", type=Path, help="bridge_compare: another checkout whose bridges to compare"
    )
    parser.add_argument(
        "--rounds", type=int, default=12, help="bridge_compare: rounds (both pairs in each)"
    )
    args = parser.parse_args(argv)
    options = Options(
        dataset=args.dataset,
        data_dir=args.data_dir,
        out=args.out,
        engine=args.engine,
        spark_master=args.spark_master,
        spark_submit_args=args.spark_submit_args,
        database=args.database,
        against=args.against,
        rounds=args.rounds,
    )
    BENCHMARKS[args.name](options)


if __name__ == "__main__":
    main()
