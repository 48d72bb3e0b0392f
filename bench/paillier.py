"""Paillier micro-benchmark: ops/s per key size and operation, on one core unless it says pool.

Lines: ``encrypt`` (mode ``djn``: public key only, fixed-base DJN randomness; ``djn_crt``: the key
holder's CRT route; ``standard``: r^n with a full powmod), ``decrypt`` (CRT), ``add``
(ciphertext + ciphertext), ``scalar_mul`` (one powmod by a 62-bit scalar), ``dot`` (per element of
a Pippenger fold with 34-bit scalars, as hetero_lr uses), ``encrypt`` with ``pool`` (every core),
and ``gmpy2_powmod`` (bare r^n mod n^2, the cost standard encryption pays per ciphertext).
``ops_per_s`` is wall clock; one-core lines add ``ops_per_cpu_s`` (the thread's CPU time), which is
the fair figure when other jobs share the machine (``loadavg_1m`` says how busy it was).
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gmpy2
import numpy as np

from bench.common import Options, emit
from fedalgo import paillier
from fedalgo.computing import LocalComputing

KEY_BITS = (1024, 2048)
MIN_SECONDS = 1.0


@dataclass(frozen=True)
class Rate:
    ops_per_s: float  # wall clock
    ops_per_cpu_s: float  # this thread's CPU time: the one-core figure when others share the CPU
    count: int


def _rate(fn: Callable[[int], Any], batch: int) -> Rate:
    """Calls ``fn(batch)`` until MIN_SECONDS passed."""
    fn(min(batch, 8))  # warm-up
    done, started, cpu_started = 0, time.perf_counter(), time.thread_time()
    while True:
        fn(batch)
        done += batch
        elapsed = time.perf_counter() - started
        if elapsed >= MIN_SECONDS:
            cpu = max(time.thread_time() - cpu_started, 1e-9)
            return Rate(done / elapsed, done / cpu, done)


def _line(options: Options, bits: int, op: str, rate: Rate, **extra: Any) -> None:
    line = {
        "bench": "paillier",
        "key_bits": bits,
        "op": op,
        "ops_per_s": round(rate.ops_per_s, 1),
        "n": rate.count,
        **extra,
    }
    if extra.get("cores") == 1:
        line["ops_per_cpu_s"] = round(rate.ops_per_cpu_s, 1)
    line["loadavg_1m"] = round(os.getloadavg()[0], 2)
    emit(line, options)


def run(options: Options) -> None:
    for bits in KEY_BITS:
        _bench_key(options, bits)


def _bench_key(options: Options, bits: int) -> None:
    pk, sk = paillier.generate_keypair(bits)
    public = paillier.Encryptor(pk)
    crt = paillier.Encryptor(pk, private_key=sk)
    standard = paillier.Encryptor(pk, randomness="standard")
    mantissas = [secrets.randbits(62) - 2**61 for _ in range(256)]

    def encrypt_with(enc: paillier.Encryptor) -> Callable[[int], Any]:
        return lambda k: enc.encrypt_ints(mantissas[:k])

    for mode, enc in (("djn", public), ("djn_crt", crt)):
        rate = _rate(encrypt_with(enc), 64)
        _line(options, bits, "encrypt", rate, mode=mode, cores=1)
    # One at a time: a list would be spread over threads by gmpy2's GIL-free list functions.
    rate = _rate(lambda k: [standard.encrypt_ints([m]) for m in mantissas[:k]], 8)
    _line(options, bits, "encrypt", rate, mode="standard", cores=1)

    vector = crt.encrypt_ints(mantissas)
    cts = vector.ciphertexts
    rate = _rate(lambda k: [sk.decrypt_ints([c]) for c in cts[:k]], 32)
    _line(options, bits, "decrypt", rate, mode="crt", cores=1)
    rate = _rate(lambda k: vector[:k] + vector[:k], 256)
    _line(options, bits, "add", rate, cores=1)
    scalars = [secrets.randbits(62) for _ in range(256)]
    rate = _rate(lambda k: vector[:k].mul_ints(scalars[:k]), 32)
    _line(options, bits, "scalar_mul", rate, scalar_bits=62, cores=1)
    big = crt.encrypt_ints([secrets.randbits(32) for _ in range(4096)])
    weights = np.array([secrets.randbits(34) for _ in range(4096)], dtype=np.int64)
    rate = _rate(lambda k: big.dot_ints(weights), 4096)
    _line(options, bits, "dot", rate, scalar_bits=34, cores=1)
    with LocalComputing() as pool:
        many = list(range(4096))
        crt.encrypt_ints(many, pool=pool)  # start the workers and build their tables first
        rate = _rate(lambda k: crt.encrypt_ints(many[:k], pool=pool), 4096)
        _line(options, bits, "encrypt", rate, mode="djn_crt", cores=pool.max_workers)

    n, nsq = gmpy2.mpz(pk.n), pk.nsquare
    rs = [gmpy2.mpz(secrets.randbelow(pk.n)) for _ in range(64)]
    rate = _rate(lambda k: [gmpy2.powmod(r, n, nsq) for r in rs[:k]], 8)
    _line(options, bits, "gmpy2_powmod", rate, what="r^n mod n^2", cores=1)
