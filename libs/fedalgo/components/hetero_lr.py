"""``hetero_lr``: vertical logistic regression; the guest holds the labels and the Paillier key.

Rows are aligned beforehand (``intersect``). No arbiter. For each mini-batch B:

1. each host h sends its partial logits u_h = X_h[B] w_h;
2. the guest computes u = X_g[B] w_g + b + sum_h u_h and the residual d = sigmoid(u) - y[B],
   encrypts d under its Paillier key and sends [[d]] to every host;
3. host h computes [[X_h[B]^T d]] on the ciphertexts, adds a random mask R_h (re-encrypting, so
   the ciphertext is fresh) and sends [[X_h^T d + R_h]];
4. the guest decrypts and returns X_h^T d + R_h; the host subtracts R_h and takes its gradient
   step. The guest's own step is in plaintext.

After each epoch the guest reports the loss and tells the hosts whether to stop (``tol``). At the
end each host sends X_h w_h for all rows and the guest writes the predictions.

Arguments (the guest's govern; it sends them to the hosts, whose own values are not used):
``learning-rate`` (0.15), ``max-iter`` (30 epochs), ``penalty`` (``L2`` or ``none``),
``alpha`` (0.01, the L2 weight), ``batch-size`` (-1: full batch), ``decay`` (0: the rate at epoch
t is ``learning-rate / (1 + decay * t)``), ``tol`` (1e-4: stop when the loss changes less; 0 never
stops early), ``fit-intercept`` (true), ``random-seed`` (random: the mini-batch shuffle), and
``key-bits`` (2048; 1024 is accepted with a warning).

Threat model (semi-honest parties, each sees exactly what it is sent):

* A host sees the Paillier public key, ciphertexts of residuals, its own gradient, the shared
  hyperparameters and batch schedule, and when training stops. It never sees a label or a
  residual in plaintext, nor the guest's features or weights.
* The guest sees each host's partial logits u_h = X_h w_h (needed for the residual, as in every
  arbiter-free scheme; it does not know w_h, so it cannot solve for X_h), each host's feature
  count, and X_h^T d + R_h, where R_h has 80 bits more than any possible |X_h^T d|: the host's
  gradient is statistically hidden. It never sees X_h, w_h or the host's gradient.
* Each party's model output holds only its own weights; predicting needs every party.
* Not covered: a malicious host could ask the guest to decrypt other ciphertexts (the residuals),
  and a malicious guest could send a chosen "residual" to learn X_h^T v. Run it between parties
  who follow the protocol. The loss the guest reports leaves out the hosts' L2 terms, which the
  guest does not know.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from fedalgo import paillier
from fedalgo.components.registry import component
from fedalgo.context import Context
from fedalgo.errors import ArgumentError, DataError, ProtocolError
from fedalgo.logistic import batches, learning_rate, log_loss_sum, sigmoid
from fedalgo.tables import (
    ID_COLUMN,
    LABEL_COLUMN,
    Dataset,
    format_floats,
    read_dataset,
    read_table,
    write_table,
)

KEY_BITS = (1024, 2048)
RESIDUAL_EXPONENT = -8  # residuals in (-1, 1) at 16**-8 = 2**-32
FEATURE_EXPONENT = -6  # host features at 16**-6 = 2**-24
MASK_SECURITY_BITS = 80  # statistical distance of the masked gradient from uniform: 2**-79


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

    @classmethod
    def from_context(cls, ctx: Context) -> TrainingConfig:
        seed = ctx.arg("random-seed", int, None)
        penalty = ctx.choice("penalty", ("L2", "l2", "none"), "L2")
        config = cls(
            learning_rate=ctx.arg("learning-rate", float, 0.15),
            max_iter=ctx.arg("max-iter", int, 30),
            alpha=0.0 if penalty == "none" else ctx.arg("alpha", float, 0.01),
            batch_size=ctx.arg("batch-size", int, -1),
            decay=ctx.arg("decay", float, 0.0),
            tol=ctx.arg("tol", float, 1e-4),
            seed=secrets.randbits(32) if seed is None else seed,
            fit_intercept=ctx.arg("fit-intercept", bool, True),
        )
        config.validate()
        return config

    def validate(self) -> None:
        checks = [
            (self.learning_rate > 0, "learning-rate", "must be > 0", self.learning_rate),
            (self.max_iter >= 1, "max-iter", "must be >= 1", self.max_iter),
            (self.alpha >= 0, "alpha", "must be >= 0", self.alpha),
            (
                self.batch_size == -1 or self.batch_size >= 1,
                "batch-size",
                "must be -1 or >= 1",
                self.batch_size,
            ),
            (self.decay >= 0, "decay", "must be >= 0", self.decay),
            (self.tol >= 0, "tol", "must be >= 0", self.tol),
        ]
        for ok, name, rule, value in checks:
            if not ok:
                raise ArgumentError(f"argument {name!r} {rule}, got {value!r}")


def key_bits_arg(ctx: Context) -> int:
    bits = ctx.arg("key-bits", int, 2048)
    if bits not in KEY_BITS:
        raise ArgumentError(f"argument 'key-bits' must be 1024 or 2048, got {bits}")
    if bits == 1024:
        ctx.logger.warning("key-bits 1024 is below current recommendations; use 2048 in production")
    return bits


def _ids_digest(ids: list[str]) -> bytes:
    return hashlib.sha256("\n".join(ids).encode("utf-8")).digest()


def _tag(epoch: int, batch: int, what: str) -> str:
    return f"hetero_lr/{epoch}/{batch}/{what}"


@component("hetero_lr", roles=("guest", "host"), inputs=("data",), outputs=("model", "predictions"))
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


class _Guest:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.config = TrainingConfig.from_context(ctx)
        self.key_bits = key_bits_arg(ctx)
        self.data = read_dataset(ctx.input("data"), with_label=True)
        if self.data.n_samples == 0:
            raise DataError("the guest's data has no rows (is the intersection empty?)")
        self.hosts = ctx.party_ids("host")

    def _handshake(self) -> dict[str, int]:
        """Exchange the setup; returns each host's feature count."""
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

    def run(self) -> None:
        ctx, cfg, data = self.ctx, self.config, self.data
        public_key, private_key = paillier.generate_keypair(self.key_bits)
        ctx.send("host", "hetero_lr/setup", {"public_key_n": public_key.n, **asdict(cfg)})
        host_features = self._handshake()
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
            for k, idx in enumerate(batches(len(y), cfg.batch_size, seed=cfg.seed, epoch=epoch)):
                u = x[idx] @ w + b
                for host, u_h in ctx.recv_all("host", _tag(epoch, k, "u")).items():
                    u = u + _check_vector(u_h, len(idx), f"partial logits of host {host}")
                d = sigmoid(u) - y[idx]
                loss_sum += log_loss_sum(u, y[idx])
                enc = paillier.encrypt(public_key, d, RESIDUAL_EXPONENT, private_key=private_key)
                ctx.send("host", _tag(epoch, k, "residual"), enc.to_wire())
                grad = x[idx].T @ d / len(idx) + cfg.alpha * w
                for host, wire in ctx.recv_all("host", _tag(epoch, k, "masked_gradient")).items():
                    masked = paillier.EncryptedVector.from_wire(
                        public_key, wire, expected_len=host_features[host]
                    )
                    plain = paillier.decrypt_mantissas(private_key, masked)
                    ctx.send(host, _tag(epoch, k, "gradient"), plain)
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


class _Host:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        path = ctx.input("data")
        if LABEL_COLUMN in read_table(path).header:
            ctx.logger.warning("ignoring the label column %r in the host's data", LABEL_COLUMN)
        self.data: Dataset = read_dataset(path, with_label=False)

    def run(self) -> None:
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
        setup = ctx.recv("guest", "hetero_lr/setup")
        if not isinstance(setup, dict):
            raise ProtocolError("the training setup must be a map")
        public_key_n = setup.get("public_key_n")
        if not isinstance(public_key_n, int) or public_key_n.bit_length() < min(KEY_BITS) - 1:
            raise ProtocolError("the guest's Paillier key is missing or too short")
        public_key = paillier.public_key_from_n(public_key_n)
        try:
            cfg = TrainingConfig(**{k: v for k, v in setup.items() if k != "public_key_n"})
        except TypeError as exc:
            raise ProtocolError(f"bad training setup from the guest: {exc}") from None
        cfg.validate()
        ctx.logger.info("training with the guest's settings: %s", cfg)
        x = data.x
        try:
            x_mantissas = paillier.encode(x, FEATURE_EXPONENT)
        except OverflowError as exc:
            raise DataError(f"host features too large for fixed point: {exc}") from None
        w = np.zeros(x.shape[1])
        epoch = 0
        for epoch in range(cfg.max_iter):
            lr = learning_rate(cfg.learning_rate, cfg.decay, epoch)
            for k, idx in enumerate(batches(len(x), cfg.batch_size, seed=cfg.seed, epoch=epoch)):
                ctx.send("guest", _tag(epoch, k, "u"), x[idx] @ w)
                grad = self._gradient(public_key, x_mantissas[idx], epoch, k)
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

    def _gradient(
        self, public_key: paillier.PublicKey, x_mantissas: np.ndarray, epoch: int, k: int
    ) -> np.ndarray:
        """X^T d for this batch, via the guest, without either side seeing the other's part."""
        ctx = self.ctx
        residual = paillier.EncryptedVector.from_wire(
            public_key, ctx.recv("guest", _tag(epoch, k, "residual")), expected_len=len(x_mantissas)
        )
        if residual.exponent != RESIDUAL_EXPONENT:
            raise ProtocolError(f"residuals must have exponent {RESIDUAL_EXPONENT}")
        product = paillier.matvec_t(x_mantissas, residual, FEATURE_EXPONENT)
        # |d| <= 1, so no entry of X^T d can exceed the column's sum of |x| at this precision.
        # Summed in float64 (int64 could overflow) and rounded up with room for rounding error.
        column_sums = np.abs(x_mantissas).astype(np.float64).sum(axis=0)
        largest_sum = math.ceil(float(column_sums.max()) * (1 + 2**-40)) + 1
        bound = largest_sum * paillier.BASE**-RESIDUAL_EXPONENT
        mask_bits = bound.bit_length() + MASK_SECURITY_BITS
        if mask_bits + 2 >= public_key.max_int.bit_length():
            raise DataError("the host's features are too large for the Paillier key")
        masks = [secrets.randbits(mask_bits) for _ in range(len(product))]
        masked = paillier.add_mantissas(product, masks)
        ctx.send("guest", _tag(epoch, k, "masked_gradient"), masked.to_wire())
        plain = ctx.recv("guest", _tag(epoch, k, "gradient"))
        if (
            not isinstance(plain, list)
            or len(plain) != len(masks)
            or not all(isinstance(p, int) and not isinstance(p, bool) for p in plain)
        ):
            raise ProtocolError("the decrypted gradient must be a list with one value per feature")
        unmasked = [p - r for p, r in zip(plain, masks, strict=True)]
        if any(abs(g) > bound for g in unmasked):
            raise ProtocolError("the decrypted gradient is out of range")
        return paillier.decode(unmasked, product.exponent)
