"""``hetero_lr``: vertical logistic regression; the guest holds the labels, each host a key.

Rows are aligned beforehand (``intersect``). No arbiter. Setup: each host h generates its own
Paillier key pair, packs each row's features (fixed point) into as few plaintexts as fit, encrypts
them once and sends the guest its public key and [[X_h]]. For each mini-batch B:

1. each host h sends its partial logits u_h = X_h[B] w_h;
2. the guest computes u = X_g[B] w_g + b + sum_h u_h and the residual d = sigmoid(u) - y[B];
3. for each host the guest folds [[X_h[B]]] with the integer weights e_i = d_i + 1 (fixed point,
   so never negative) into [[sum_i e_i X_h[i]]] (one multi-exponentiation per packed column: the
   packed slots make it X_h^T (d + 1) for every feature at once), re-randomises it and sends it;
4. host h decrypts, unpacks the slots, subtracts the column sums X_h[B]^T 1 it knows, and takes
   its gradient step with X_h[B]^T d. The guest's own step is in plaintext.

After each epoch the guest reports the loss and tells the hosts whether to stop (``tol``). At the
end each host sends X_h w_h for all rows and the guest writes the predictions.

Arguments: :class:`HeteroLRParams` (the guest's govern; it sends them to the hosts, whose own
values are not used, and each host checks them against the same declaration).

Threat model (semi-honest parties, each sees exactly what it is sent):

* A host sees the shared hyperparameters and batch schedule, when training stops, and its own
  gradient X_h[B]^T d for each batch (as in every gradient-descent scheme where the host keeps its
  weights). It never sees a label, a residual, the guest's features or weights, or another host's
  anything. The ciphertexts it gets back are re-randomised by the guest with uniform n-th
  residues (standard Paillier randomness, not DJN's, which the key holder could see through), so
  their randomness tells it nothing beyond the plaintext.
* The guest sees each host's public key, its feature count, [[X_h]] (encrypted under a key the
  guest does not have: semantically secure) and the partial logits u_h = X_h w_h (needed for the
  residual, as in every arbiter-free scheme; it does not know w_h, so it cannot solve for X_h). It
  decrypts nothing, so it never sees X_h, w_h or a host's gradient.
* Each party's model output holds only its own weights; predicting needs every party.
* Not covered: a malicious guest could fold chosen weights instead of residuals and watch how u_h
  moves; a malicious host could send chosen logits. Run it between parties who follow the
  protocol. The loss the guest reports leaves out the hosts' L2 terms, which it does not know.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import secrets
from dataclasses import asdict, dataclass
from typing import Any, Literal

import gmpy2
import numpy as np
from pydantic import Field, field_validator

from fedalgo import paillier
from fedalgo.components.registry import component
from fedalgo.computing import Computing, Rows
from fedalgo.context import Context
from fedalgo.errors import ArgumentError, DataError, ProtocolError
from fedalgo.logistic import batches, learning_rate, log_loss_sum, sigmoid, smallest_batch
from fedalgo.tables import (
    ID_COLUMN,
    LABEL_COLUMN,
    Dataset,
    format_floats,
    write_table,
)
from fedcore import floors
from fedcore.codec import IntArray
from fedcore.params import InvalidArguments, Params, hyphenate

RESIDUAL_EXPONENT = -8  # residuals in (-1, 1) at 16**-8 = 2**-32
FEATURE_EXPONENT = -6  # host features at 16**-6 = 2**-24
PACK_BLOCK_ROWS = 65_536
# The guest folds with d + 1 (in [0, 2)), so its weights are non-negative integers: negative
# exponents would cost a modular inverse per row. The host removes the +1 with its column sums.
RESIDUAL_OFFSET = paillier.BASE**-RESIDUAL_EXPONENT
mpz = gmpy2.mpz


class HeteroLRParams(Params):
    """``hetero_lr``'s arguments (the guest's govern; it sends them to the hosts)."""

    learning_rate: float = Field(0.15, gt=0, description="the step size at epoch 0")
    max_iter: int = Field(30, ge=1, le=10_000, description="the most epochs to train")
    penalty: Literal["L2", "none"] = Field("L2", description="L2 regularisation, or none")
    alpha: float = Field(0.01, ge=0, description="the L2 weight (ignored with penalty none)")
    batch_size: int = Field(-1, ge=-1, description="rows per mini-batch; -1 for the full batch")
    decay: float = Field(
        0.0, ge=0, description="the rate at epoch t is learning-rate / (1 + decay * t)"
    )
    tol: float = Field(
        1e-4, ge=0, description="stop when the loss changes less than this; 0 never stops early"
    )
    fit_intercept: bool = Field(True, description="fit an intercept (at the guest)")
    random_seed: int | None = Field(
        None, ge=0, le=2**32 - 1, description="the mini-batch shuffle's seed; random if unset"
    )
    key_bits: paillier.KeyBits = Field(
        paillier.DEFAULT_KEY_BITS, description="each host's Paillier key size (1024 warns)"
    )

    @field_validator("batch_size")
    @classmethod
    def _not_zero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("must be -1 or >= 1 (-1: the full batch)")
        return value


@dataclass(frozen=True)
class TrainingConfig:
    """The guest's hyperparameters; sent to the hosts so every party follows one schedule."""

    learning_rate: float
    max_iter: int
    alpha: float
    batch_size: int
    decay: float
    tol: float
    seed: int
    fit_intercept: bool
    key_bits: int

    @classmethod
    def from_params(cls, params: HeteroLRParams) -> TrainingConfig:
        return cls(
            learning_rate=params.learning_rate,
            max_iter=params.max_iter,
            alpha=0.0 if params.penalty == "none" else params.alpha,
            batch_size=params.batch_size,
            decay=params.decay,
            tol=params.tol,
            seed=secrets.randbits(32) if params.random_seed is None else params.random_seed,
            fit_intercept=params.fit_intercept,
            key_bits=params.key_bits,
        )

    @classmethod
    def from_setup(cls, setup: Any) -> TrainingConfig:
        """The configuration a guest sent, checked against the same declaration as its args."""
        if not isinstance(setup, dict) or set(setup) != set(cls.__dataclass_fields__):
            raise ProtocolError(
                f"the training setup must be a map of {sorted(cls.__dataclass_fields__)}"
            )
        args = {hyphenate(k): v for k, v in setup.items() if k != "seed"}
        try:
            params = HeteroLRParams.from_args({**args, "random-seed": setup["seed"]})
        except InvalidArguments as exc:
            raise ProtocolError(f"bad training setup from the guest: {exc}") from None
        return cls.from_params(params)


def _ids_digest(ids: list[str]) -> bytes:
    return hashlib.sha256("\n".join(ids).encode("utf-8")).digest()


def _tag(epoch: int, batch: int, what: str) -> str:
    return f"hetero_lr/{epoch}/{batch}/{what}"


@component(
    "hetero_lr",
    roles=("guest", "host"),
    inputs=("data",),
    outputs=("model", "predictions"),
    params=HeteroLRParams,
)
def hetero_lr(ctx: Context) -> None:
    """Vertical logistic regression; the guest holds the labels and the Paillier key."""
    if not ctx.party_ids("host"):
        raise ArgumentError("hetero_lr needs at least one host")
    if ctx.role == "guest":
        _Guest(ctx).run()
    else:
        _Host(ctx).run()


def _check_vector(value: Any, length: int, what: str) -> np.ndarray:
    if not isinstance(value, np.ndarray) or value.shape != (length,) or value.dtype.kind != "f":
        raise ProtocolError(f"{what} must be a float vector of length {length}")
    if not np.isfinite(value).all():
        raise ProtocolError(f"{what} is not finite")
    return value


@dataclass
class _HostKey:
    """What the guest holds of one host: its public key and encrypted, packed features."""

    encryptor: paillier.Encryptor
    # [[X_h]] where the computing engine keeps rows (Spark: the executors): row numbers and each
    # row's per_row ciphertexts; regrouped by mini-batch at every epoch.
    features: Rows
    per_row: int


@dataclass(frozen=True)
class _RowCiphertexts:
    """A host's [[X_h]] as received, by row: row i's ``per_row`` ciphertexts are elements
    ``i * per_row`` onwards of ``flat`` (still encoded, if the federation delivered it so).
    Sliced by rows, as an engine cuts what it distributes."""

    flat: IntArray | list[Any]
    per_row: int

    def __len__(self) -> int:
        return len(self.flat) // self.per_row

    def __getitem__(self, rows: slice) -> _RowCiphertexts:
        start, stop, _ = rows.indices(len(self))
        return _RowCiphertexts(self.flat[start * self.per_row : stop * self.per_row], self.per_row)


def _decoded_rows(rows: np.ndarray, cts: _RowCiphertexts) -> tuple[np.ndarray, list[list[Any]]]:
    """One partition of [[X_h]] decoded where the engine keeps it: each row's ciphertexts."""
    flat = cts.flat.ints() if isinstance(cts.flat, IntArray) else cts.flat
    p = cts.per_row
    return rows, [flat[i * p : (i + 1) * p] for i in range(len(rows))]


def _rows_product(rows: np.ndarray, cts: list[list[Any]], n: int) -> int | str:
    """One partition's share of checking [[X_h]] (:func:`fedalgo.paillier.product_or_error`)."""
    return paillier.product_or_error([c for row in cts for c in row], n)


def _kept_features(computing: Computing, cts: _RowCiphertexts, n: int) -> Rows:
    """A host's [[X_h]] as rows the engine keeps, each ciphertext decoded and checked there
    (as :func:`fedalgo.paillier.check_wire` checks them: in range, invertible)."""
    received = computing.distribute([np.arange(len(cts)), cts])
    try:
        features = received.map(_decoded_rows)
    finally:
        received.release()
    try:
        parts = features.collect(_rows_product, n)
        paillier.check_parts(parts, n, "the host's encrypted features")
    except BaseException:
        features.release()
        raise
    return features


def _fold_rows(
    rows: np.ndarray, cts: list[list[int]], idx: np.ndarray, weights: np.ndarray, nsquare: Any
) -> list[Any]:
    """Per packed column, prod c^e mod n^2 over these rows of a batch (``idx`` sorted, with
    ``weights`` in the same order)."""
    exps = weights[np.searchsorted(idx, rows)]
    per_row = len(cts[0])
    return [paillier.multi_exp([mpz(c[j]) for c in cts], exps, nsquare) for j in range(per_row)]


def _mul_columns(a: list[Any], b: list[Any], nsquare: Any) -> list[Any]:
    return [x * y % nsquare for x, y in zip(a, b, strict=True)]


class _Guest:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.config = TrainingConfig.from_params(ctx.params(HeteroLRParams))
        self.key_bits = self.config.key_bits  # the hosts generate the keys; 1024 warns there
        self.data = ctx.read_dataset("data", with_label=True)
        if self.data.n_samples == 0:
            raise DataError("the guest's data has no rows (is the intersection empty?)")
        # This party's floors: the key size is its policy for any job on its data; a small
        # batch would hand the hosts its labels (each decrypts X_h[B]^T d).
        floors.check_key_bits(ctx.floors, self.key_bits)
        rows = smallest_batch(self.data.n_samples, self.config.batch_size)
        floors.check_batch_rows(ctx.floors, rows)
        self.hosts = ctx.party_ids("host")

    def _handshake(self) -> dict[str, int]:
        """Check every host's rows; returns each host's feature count."""
        ctx, data = self.ctx, self.data
        infos = ctx.recv_all("host", "hetero_lr/host_info")
        digest = _ids_digest(data.ids)
        features: dict[str, int] = {}
        for host, info in infos.items():
            if info.get("samples") != data.n_samples or info.get("ids_digest") != digest:
                raise DataError(
                    f"host {host}'s rows are not aligned with the guest's "
                    f"({info.get('samples')} vs {data.n_samples} rows); run intersect first"
                )
            if not isinstance(info.get("features"), int) or info["features"] < 1:
                raise DataError(f"host {host} has no feature columns")
            features[host] = info["features"]
        return features

    def _host_keys(self, host_features: dict[str, int]) -> dict[str, _HostKey]:
        keys: dict[str, _HostKey] = {}
        # [[X_h]] still encoded: the engine's workers decode and check it where they keep it.
        received = self.ctx.recv_all("host", "hetero_lr/host_key", int_arrays=True)
        for host in list(received):
            value = received.pop(host)  # held once: by the engine, after it is distributed
            if not isinstance(value, dict) or set(value) != {"public_key_n", "per_row", "features"}:
                raise ProtocolError(f"host {host}'s key message must be a map of three fields")
            try:
                public_key = paillier.PublicKey(value["public_key_n"])
            except ValueError as exc:
                raise ProtocolError(f"host {host}'s public key: {exc}") from None
            if public_key.key_bits != self.key_bits:
                raise ProtocolError(f"host {host} made a {public_key.key_bits}-bit key")
            per_row = value["per_row"]
            if not isinstance(per_row, int) or not 1 <= per_row <= host_features[host]:
                raise ProtocolError(f"host {host} sent a bad packing ({per_row!r} per row)")
            n = self.data.n_samples
            cts, exponent = paillier.wire_parts(
                public_key, value["features"], expected_len=n * per_row
            )
            del value
            if exponent != FEATURE_EXPONENT:
                raise ProtocolError(f"host features must have exponent {FEATURE_EXPONENT}")
            by_row = _RowCiphertexts(cts, per_row)
            features = _kept_features(self.ctx.computing, by_row, public_key.n)
            # Standard randomness: the folded result goes back to the key holder, who knows the
            # factorisation, and DJN's h_s^a hides nothing from it (e.g. quadratic characters).
            encryptor = paillier.Encryptor(public_key, randomness="standard")
            keys[host] = _HostKey(encryptor, features, per_row)
        return keys

    def run(self) -> None:
        ctx, cfg, data = self.ctx, self.config, self.data
        host_features = self._handshake()
        ctx.send("host", "hetero_lr/setup", asdict(cfg))
        host_keys = self._host_keys(host_features)
        x, y = data.x, data.y
        assert y is not None  # read_dataset(with_label=True) guarantees it
        w = np.zeros(x.shape[1])
        b = 0.0
        losses: list[float] = []
        converged = False
        epoch = 0
        for epoch in range(cfg.max_iter):
            lr = learning_rate(cfg.learning_rate, cfg.decay, epoch)
            loss_sum = 0.0
            schedule = batches(len(y), cfg.batch_size, seed=cfg.seed, epoch=epoch)
            self._regroup(host_keys, schedule)
            for k, idx in enumerate(schedule):
                u = x[idx] @ w + b
                for host, u_h in ctx.recv_all("host", _tag(epoch, k, "u")).items():
                    u = u + _check_vector(u_h, len(idx), f"partial logits of host {host}")
                d = sigmoid(u) - y[idx]
                loss_sum += log_loss_sum(u, y[idx])
                weights = paillier.encode(d, RESIDUAL_EXPONENT) + RESIDUAL_OFFSET
                for host, key in host_keys.items():
                    folded = self._fold(key, k, idx, weights)
                    ctx.send(host, _tag(epoch, k, "gradient"), folded.to_wire())
                grad = x[idx].T @ d / len(idx) + cfg.alpha * w
                w = w - lr * grad
                if cfg.fit_intercept:
                    b -= lr * float(d.mean())
            losses.append(loss_sum / len(y) + 0.5 * cfg.alpha * float(w @ w))
            ctx.metric("loss", losses[-1], step=epoch)
            converged = cfg.tol > 0 and len(losses) > 1 and abs(losses[-2] - losses[-1]) < cfg.tol
            ctx.send("host", f"hetero_lr/{epoch}/stop", converged)
            if converged:
                ctx.logger.info("converged after %d iterations", epoch + 1)
                break

        u = x @ w + b
        for host, u_h in ctx.recv_all("host", "hetero_lr/final/u").items():
            u = u + _check_vector(u_h, len(y), f"final partial logits of host {host}")
        score = sigmoid(u)
        write_table(
            ctx.output("predictions"),
            [ID_COLUMN, LABEL_COLUMN, "score"],
            [
                [i, str(int(t)), s[0]]
                for i, t, s in zip(data.ids, y, format_floats(score[:, None]), strict=True)
            ],
        )
        model = {
            "component": "hetero_lr",
            "role": "guest",
            "features": data.features,
            "weights": w.tolist(),
            "intercept": b,
            "iterations": epoch + 1,
            "converged": converged,
            "loss": losses,
            "key_bits": self.key_bits,
        }
        ctx.output("model").write_text(json.dumps(model, indent=2))

    @staticmethod
    def _regroup(host_keys: dict[str, _HostKey], schedule: list[np.ndarray]) -> None:
        """Gather each host's [[X_h]] by this epoch's mini-batches (one shuffle an epoch, so
        that a batch's fold reads only its own rows)."""
        batch_of_row = np.empty(sum(len(idx) for idx in schedule), dtype=np.int32)
        for k, idx in enumerate(schedule):
            batch_of_row[idx] = k
        for key in host_keys.values():
            previous = key.features
            key.features = previous.regroup(batch_of_row, len(schedule))
            previous.release()

    @staticmethod
    def _fold(
        key: _HostKey, batch: int, idx: np.ndarray, weights: np.ndarray
    ) -> paillier.EncryptedVector:
        """[[sum_i weights_i X_h[idx_i]]] per packed column, re-randomised for the host."""
        if (weights < 0).any():
            raise ValueError("fold weights must be non-negative (offset residuals)")
        order = np.argsort(idx)
        public_key = key.encryptor.public_key
        nsq = public_key.nsquare
        combine = functools.partial(_mul_columns, nsquare=nsq)
        columns = key.features.group_reduce(
            batch, _fold_rows, combine, idx[order], weights[order], nsq
        )
        folded = paillier.EncryptedVector(public_key, columns, FEATURE_EXPONENT + RESIDUAL_EXPONENT)
        return key.encryptor.rerandomise(folded)


@dataclass(frozen=True)
class _Packing:
    """How a host lays its features out in plaintexts: ``slots`` features of ``slot_bits`` each."""

    slot_bits: int
    slots: int
    per_row: int

    @classmethod
    def for_data(cls, x_mantissas: np.ndarray, public_key: paillier.PublicKey) -> _Packing:
        # A slot ends up holding sum_i e_i x_ij over a batch, with 0 <= e_i < 2 * RESIDUAL_OFFSET;
        # bounded over all rows (float64 sum: int64 could overflow), plus a sign bit and margin.
        column_sums = np.abs(x_mantissas).astype(np.float64).sum(axis=0)
        largest = math.ceil(float(column_sums.max()) * (1 + 2**-40)) + 1
        slot_bits = (2 * RESIDUAL_OFFSET * largest).bit_length() + 2
        slots = paillier.slots_per_plaintext(public_key.max_int, slot_bits)
        if slots < 1:
            raise DataError("the host's features are too large for the Paillier key")
        return cls(slot_bits, slots, math.ceil(x_mantissas.shape[1] / slots))

    def pack_rows(self, x_mantissas: np.ndarray) -> list[int]:
        out = []
        # A block of rows at a time: the whole matrix as Python ints was 3.6 GB at 5M rows.
        for start in range(0, len(x_mantissas), PACK_BLOCK_ROWS):
            for row in x_mantissas[start : start + PACK_BLOCK_ROWS].tolist():
                for c in range(self.per_row):
                    out.append(
                        paillier.pack(row[c * self.slots : (c + 1) * self.slots], self.slot_bits)
                    )
        return out

    def unpack(self, packed: list[int], features: int) -> list[int]:
        values = []
        for c, value in enumerate(packed):
            count = min(self.slots, features - c * self.slots)
            values.extend(paillier.unpack(value, self.slot_bits, count))
        return values


class _Host:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.data: Dataset = ctx.read_dataset("data", with_label=False)

    def run(self) -> None:
        self._run(self.ctx.computing)

    def _setup(self) -> tuple[TrainingConfig, int]:
        cfg = TrainingConfig.from_setup(self.ctx.recv("guest", "hetero_lr/setup"))
        return cfg, cfg.key_bits

    def _run(self, pool: Computing) -> None:
        ctx, data = self.ctx, self.data
        ctx.send(
            "guest",
            "hetero_lr/host_info",
            {
                "samples": data.n_samples,
                "features": len(data.features),
                "ids_digest": _ids_digest(data.ids),
            },
        )
        if not data.features:
            raise DataError("the host's data has no feature columns (only 'id')")
        cfg, key_bits = self._setup()
        floors.check_key_bits(ctx.floors, key_bits)  # the key that [[X_h]] is sent under
        ctx.logger.info("training with the guest's settings: %s", cfg)
        x = data.x
        try:
            x_mantissas = paillier.encode(x, FEATURE_EXPONENT)
        except OverflowError as exc:
            raise DataError(f"host features too large for fixed point: {exc}") from None
        public_key, private_key = paillier.generate_keypair(key_bits)
        packing = _Packing.for_data(x_mantissas, public_key)
        encryptor = paillier.Encryptor(public_key, private_key=private_key)
        encrypted = encryptor.encrypt_to_wire(
            packing.pack_rows(x_mantissas), FEATURE_EXPONENT, pool=pool
        )
        ctx.send(
            "guest",
            "hetero_lr/host_key",
            {"public_key_n": public_key.n, "per_row": packing.per_row, "features": encrypted},
        )
        del encrypted  # sent: the guest keeps it for the whole training, the host need not
        w = np.zeros(x.shape[1])
        epoch = 0
        for epoch in range(cfg.max_iter):
            lr = learning_rate(cfg.learning_rate, cfg.decay, epoch)
            for k, idx in enumerate(batches(len(x), cfg.batch_size, seed=cfg.seed, epoch=epoch)):
                ctx.send("guest", _tag(epoch, k, "u"), x[idx] @ w)
                wire = ctx.recv("guest", _tag(epoch, k, "gradient"))
                grad = self._gradient(private_key, packing, x_mantissas[idx], wire)
                w = w - lr * (grad / len(idx) + cfg.alpha * w)
            if ctx.recv("guest", f"hetero_lr/{epoch}/stop") is True:
                break
        ctx.send("guest", "hetero_lr/final/u", x @ w)
        model = {
            "component": "hetero_lr",
            "role": "host",
            "features": data.features,
            "weights": w.tolist(),
            "iterations": epoch + 1,
        }
        ctx.output("model").write_text(json.dumps(model, indent=2))
        # Predictions are the guest's: the host has no labels and no scores to write.
        write_table(ctx.output("predictions"), [ID_COLUMN], [[i] for i in data.ids])

    @staticmethod
    def _gradient(
        private_key: paillier.PrivateKey, packing: _Packing, x_mantissas: np.ndarray, wire: Any
    ) -> np.ndarray:
        """X[B]^T d from the guest's folded [[X[B]^T (d + 1)]]."""
        folded = paillier.EncryptedVector.from_wire(
            private_key.public_key, wire, expected_len=packing.per_row
        )
        if folded.exponent != FEATURE_EXPONENT + RESIDUAL_EXPONENT:
            raise ProtocolError("the folded gradient has the wrong exponent")
        try:
            slots = packing.unpack(paillier.decrypt_ints(private_key, folded), x_mantissas.shape[1])
        except OverflowError:
            raise ProtocolError("the folded gradient is out of range") from None
        # |d| < 1, so |X^T d| cannot exceed the column sums of |x| at the residual's precision.
        column_sums = x_mantissas.sum(axis=0).tolist()
        abs_sums = np.abs(x_mantissas).sum(axis=0).tolist()
        gradient = []
        for value, total, bound in zip(slots, column_sums, abs_sums, strict=True):
            g = value - RESIDUAL_OFFSET * int(total)
            if abs(g) > RESIDUAL_OFFSET * int(bound):
                raise ProtocolError("the decrypted gradient is out of range")
            gradient.append(g)
        return paillier.decode(gradient, folded.exponent)
