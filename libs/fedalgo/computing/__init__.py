"""Where a component's data-parallel work runs: ``local`` (a process pool) or ``spark``.

    with LocalComputing() as computing:              # or SparkComputing.start("local[2]")
        enc = encryptor.encrypt(values, exponent=-8, pool=computing)
        sums = computing.bin_sums(limbs, flat_bins, total_bins, nsquare)

A step gets its engine from :func:`fedalgo.computing.choice.open_computing` (what the job asked
for, within what this party offers); components reach it as ``ctx.computing``.
"""

from fedalgo.computing.base import Computing, Rows, chunk_bounds
from fedalgo.computing.local import LocalComputing

__all__ = ["Computing", "LocalComputing", "Rows", "chunk_bounds"]
