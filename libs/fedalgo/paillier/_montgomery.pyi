# Types of the C extension built from _montgomery.c (see its comment for what each loop does).
from typing import Any

import numpy as np
from typing_extensions import Buffer

_Raw = Buffer | np.ndarray[Any, Any]

def fixed_base_table(base: _Raw, modulus: _Raw, digits: int, window_bits: int) -> bytes: ...
def fixed_base_pow(table: _Raw, modulus: _Raw, window_bits: int, exponents: _Raw) -> bytes: ...
def bin_products(
    values: _Raw, bins: _Raw, columns: int, total_bins: int, modulus: _Raw
) -> bytes: ...
