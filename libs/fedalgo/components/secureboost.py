"""``hetero_secureboost``: gradient-boosted trees over vertically split data (SecureBoost).

The guest holds the labels and the Paillier key; every party bins its own columns (quantile,
``bins``) once. For each tree:

1. the guest computes each row's gradient g and hessian h of the logistic loss, packs the pair
   into one plaintext (fixed point, :class:`fedalgo.histogram.GradientPacking`), encrypts it and
   sends the hosts [[g, h]] for the rows of this tree's subsample;
2. level by level, the guest sends the hosts every row's current node and which nodes to build
   histograms for. For the root that is the root; below it, only the smaller child of each split:
   the guest gets the sibling by subtracting it from the parent (histogram subtraction).
   Each host multiplies, per node and per bin of each of its columns, the ciphertexts of the node's
   sampled rows in that bin ([[sum g, sum h]]), folds the bin sums a dozen to a ciphertext,
   re-randomises them (standard Paillier randomness) and sends them;
3. the guest decrypts the hosts' histograms, builds its own in plaintext, and finds each node's
   best split by the second-order gain over every party's bins (``min-child-weight`` on the
   hessian of each side). For a host's split it sends that host (node, column, bin); the host
   keeps the threshold under a split id and returns which of the node's rows go left;
4. leaves get ``-learning-rate * G / (H + reg-lambda)``; the guest updates its scores.

At the end the guest writes its model (the trees; a host split names only its party, an
anonymous column ``host20000_f3`` and the split id), its training predictions, a ``loss`` metric
per tree and the ``feature_importance`` metric ({column: value}, by ``importance-type``:
``split`` counts or total ``gain``). Each host writes its split ids with its own columns and
thresholds: predicting needs every party (the ``predict`` component).

Arguments: :class:`BoostParams` (the guest's govern; each host checks the ones it is sent against
the same declaration).

Threat model (semi-honest parties, each sees exactly what it is sent):

* A host sees the guest's public key, [[g, h]] per sampled row (semantically secure: no
  gradient, hessian or label in the clear), which rows each tree samples, every row's node at
  every level (the instance space of each split, as in SecureBoost), and which of its own
  (column, bin) the guest chose at each of its splits. It never sees a label, a gradient, the
  guest's features or thresholds, leaf weights, or another host's anything.
* The guest sees each host's number of bins per column, the per-bin sums of g and h of each
  node over each host column, in bin order (as in SecureBoost), and which rows go left at the
  host's splits. It never sees a host's feature values, column names or split thresholds; the
  sums are re-randomised, so their randomness does not show which rows were multiplied.
* Not covered: a malicious guest could encrypt chosen values instead of gradients and read a
  host's bin membership of chosen rows off the histograms; a malicious host could lie about its
  splits. Run it between parties who follow the protocol.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field

from fedalgo import paillier
from fedalgo.alignment import check_hosts, host_feature_name, host_info
from fedalgo.bin_edges import Binning, fit_binning
from fedalgo.components.registry import component
from fedalgo.computing import Rows
from fedalgo.context import Context
from fedalgo.errors import ArgumentError, DataError, ProtocolError
from fedalgo.histogram import GradientPacking, limb_rows, node_bin_sums, part_product
from fedalgo.logistic import log_loss_sum, sigmoid
from fedalgo.tables import (
    ID_COLUMN,
    LABEL_COLUMN,
    Dataset,
    format_floats,
    write_table,
)
from fedalgo.tree import Node, SplitCandidate, Tree, best_split, leaf_weight
from fedcore import floors
from fedcore.params import InvalidArguments, Params, hyphenate

NAME = "hetero_secureboost"
TAG = "secureboost"


class BoostParams(Params):
    """``hetero_secureboost``'s arguments (the guest's govern; the hosts check what it sends)."""

    num_trees: int = Field(10, ge=1, le=1000, description="how many trees to fit")
    max_depth: int = Field(3, ge=1, le=16, description="the depth of each tree")
    learning_rate: float = Field(0.3, gt=0, description="the shrinkage of each tree's leaves")
    bins: int = Field(32, ge=2, le=1024, description="quantile bins per column (every party)")
    min_child_weight: float = Field(
        1.0, ge=0, description="the least hessian sum on each side of a split"
    )
    reg_lambda: float = Field(0.1, ge=0, description="the L2 weight on leaf values")
    min_split_gain: float = Field(0.0, ge=0, description="the least gain a split must bring")
    subsample: float = Field(
        1.0, gt=0, le=1, description="the fraction of rows each tree is fitted on"
    )
    random_seed: int | None = Field(
        None, ge=0, le=2**32 - 1, description="the row sampling's seed; random if unset"
    )
    key_bits: paillier.KeyBits = Field(
        paillier.DEFAULT_KEY_BITS, description="the guest's Paillier key size (1024 warns)"
    )
    importance_type: Literal["split", "gain"] = Field(
        "split", description="feature importance as split counts or total gain"
    )


@dataclass(frozen=True)
class BoostConfig:
    """The guest's hyperparameters (the hosts get the ones they need from it)."""

    num_trees: int
    max_depth: int
    learning_rate: float
    bins: int
    min_child_weight: float
    reg_lambda: float
    min_split_gain: float
    subsample: float
    seed: int
    key_bits: int
    importance_type: str

    @classmethod
    def from_params(cls, params: BoostParams) -> BoostConfig:
        fields = params.model_dump(exclude={"random_seed"})
        seed = secrets.randbits(32) if params.random_seed is None else params.random_seed
        return cls(**fields, seed=seed)

    @classmethod
    def from_setup(cls, setup: dict[str, Any]) -> BoostConfig:
        """The configuration a guest sent, checked against the same declaration as its args."""
        missing = [k for k in cls.__dataclass_fields__ if k not in setup]
        if missing:
            raise ProtocolError(f"the training setup lacks {missing}")
        args = {hyphenate(k): setup[k] for k in cls.__dataclass_fields__ if k != "seed"}
        try:
            params = BoostParams.from_args({**args, "random-seed": setup["seed"]})
        except InvalidArguments as exc:
            raise ProtocolError(f"bad training setup from the guest: {exc}") from None
        return cls.from_params(params)


@component(
    NAME,
    roles=("guest", "host"),
    inputs=("data",),
    outputs=("model", "predictions"),
    params=BoostParams,
)
def hetero_secureboost(ctx: Context) -> None:
    """Vertical gradient-boosted trees; the guest holds the labels and the Paillier key."""
    if not ctx.party_ids("host"):
        raise ArgumentError(f"{NAME} needs at least one host")
    if ctx.role == "guest":
        _Guest(ctx).run()
    else:
        _Host(ctx).run()


def _tag(tree: int, depth: int, what: str) -> str:
    return f"{TAG}/{tree}/{depth}/{what}"


def _node_rows(node_of_row: np.ndarray, node: int, sampled: np.ndarray | None = None) -> np.ndarray:
    mask = node_of_row == node
    if sampled is not None:
        mask &= sampled
    return np.flatnonzero(mask)


@dataclass
class _Histogram:
    g: np.ndarray
    h: np.ndarray

    def __sub__(self, other: _Histogram) -> _Histogram:
        return _Histogram(self.g - other.g, self.h - other.h)


@dataclass(frozen=True)
class _Choice:
    party: str
    candidate: SplitCandidate


class _Guest:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.config = BoostConfig.from_params(ctx.params(BoostParams))
        # This party's floors: its key hides the gradients (its labels), its bins its values.
        floors.check_key_bits(ctx.floors, self.config.key_bits)
        floors.check_bins(ctx.floors, self.config.bins)
        self.data = ctx.read_dataset("data", with_label=True)
        if self.data.n_samples == 0:
            raise DataError("the guest's data has no rows (is the intersection empty?)")
        y = self.data.y
        assert y is not None  # read_dataset(with_label=True)
        if y.min() == y.max():
            raise DataError("the labels are all one class; boosting needs both 0 and 1")
        self.y = y.astype(np.float64)
        self.hosts = ctx.party_ids("host")
        self.split_count: dict[str, int] = {}
        self.split_gain: dict[str, float] = {}

    def run(self) -> None:
        ctx, cfg, data = self.ctx, self.config, self.data
        check_hosts(ctx, f"{TAG}/host_info", data)
        public_key, private_key = paillier.generate_keypair(cfg.key_bits)
        self.private_key = private_key
        self.packing = GradientPacking.for_rows(data.n_samples, public_key)
        ctx.send(
            "host",
            f"{TAG}/setup",
            {
                **asdict(self.config),
                "public_key_n": public_key.n,
                "precision_bits": self.packing.precision_bits,
                "slot_bits": self.packing.slot_bits,
                "pairs_per_ciphertext": self.packing.pairs_per_ciphertext,
            },
        )
        self.binning = fit_binning(data.x, cfg.bins, "quantile", ctx.computing)
        self.flat = self.binning.flat()
        self.host_bins = self._host_bins()
        encryptor = paillier.Encryptor(public_key, private_key=private_key)
        prior = float(self.y.mean())
        init_score = float(np.log(prior / (1 - prior)))
        scores = np.full(data.n_samples, init_score)
        rng = np.random.default_rng(cfg.seed)
        trees: list[Tree] = []
        for t in range(cfg.num_trees):
            tree, node_of_row = self._tree(t, scores, encryptor, rng)
            weights = {n.id: n.weight for n in tree.nodes if n.is_leaf}
            scores = scores + np.vectorize(weights.__getitem__, otypes=[float])(node_of_row)
            trees.append(tree)
            ctx.metric("loss", log_loss_sum(scores, self.y) / data.n_samples, step=t)
        self._write(trees, init_score, scores)

    def _host_bins(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for host, counts in self.ctx.recv_all("host", f"{TAG}/host_bins").items():
            if (
                not isinstance(counts, list)
                or not counts
                or not all(isinstance(c, int) and 1 <= c <= self.config.bins for c in counts)
            ):
                raise ProtocolError(f"host {host} sent bad bin counts")
            out[host] = counts
        return out

    def _tree(
        self,
        t: int,
        scores: np.ndarray,
        encryptor: paillier.Encryptor,
        rng: np.random.Generator,
    ) -> tuple[Tree, np.ndarray]:
        ctx, cfg = self.ctx, self.config
        n = self.data.n_samples
        if cfg.subsample < 1:
            size = max(1, round(cfg.subsample * n))
            rows = np.sort(rng.choice(n, size=size, replace=False))
        else:
            rows = np.arange(n)
        sampled = np.zeros(n, dtype=bool)
        sampled[rows] = True
        p = sigmoid(scores)
        g, h = p - self.y, p * (1 - p)
        g[~sampled] = 0.0
        h[~sampled] = 0.0
        packed = encryptor.encrypt_to_wire(
            self.packing.pack(g[rows], h[rows]), 0, pool=ctx.computing
        )
        ctx.send("host", f"{TAG}/{t}/gh", {"rows": rows.astype(np.int64), "gh": packed})
        del packed  # a ciphertext per row, not needed once sent

        node_of_row = np.zeros(n, dtype=np.int32)
        nodes: dict[int, Node] = {0: Node(0)}
        host_hists: dict[int, dict[str, _Histogram]] = {}
        level, compute = [0], [0]
        derived: dict[int, tuple[int, int]] = {}  # node -> (parent, computed sibling)
        for depth in range(cfg.max_depth):
            ctx.send(
                "host",
                _tag(t, depth, "nodes"),
                {"node_of_row": node_of_row, "compute": compute},
            )
            self._receive_histograms(t, depth, compute, host_hists)
            for node in level:
                if node in derived:
                    parent, sibling = derived[node]
                    host_hists[node] = {
                        host: host_hists[parent][host] - host_hists[sibling][host]
                        for host in self.hosts
                    }
            choices = {}
            for node in level:
                members = _node_rows(node_of_row, node, sampled)
                choice = self._best(members, g, h, host_hists[node])
                if choice is not None:
                    choices[node] = choice
            lefts = self._partition(t, depth, node_of_row, choices)
            level, compute, derived = [], [], {}
            for node, choice in choices.items():
                left_id, right_id = len(nodes), len(nodes) + 1
                self._record_split(nodes[node], choice, t, left_id, right_id)
                nodes[left_id], nodes[right_id] = Node(left_id), Node(right_id)
                members = _node_rows(node_of_row, node)
                go_left = lefts[node]
                node_of_row[members[go_left]] = left_id
                node_of_row[members[~go_left]] = right_id
                left_n = int(sampled[members[go_left]].sum())
                right_n = int(sampled[members[~go_left]].sum())
                small, large = (left_id, right_id) if left_n <= right_n else (right_id, left_id)
                compute.append(small)
                derived[large] = (node, small)
                level += [left_id, right_id]
            for done in set(host_hists) - set(choices):
                host_hists.pop(done)  # leaves and split parents are not needed any more
            if not level:
                if depth + 1 < cfg.max_depth:
                    ctx.send("host", _tag(t, depth + 1, "nodes"), None)
                break
        for leaf in nodes.values():
            if leaf.is_leaf:
                members = _node_rows(node_of_row, leaf.id, sampled)
                w = leaf_weight(float(g[members].sum()), float(h[members].sum()), cfg.reg_lambda)
                leaf.weight = cfg.learning_rate * w
        return Tree(sorted(nodes.values(), key=lambda nd: nd.id)), node_of_row

    def _receive_histograms(
        self, t: int, depth: int, compute: list[int], out: dict[int, dict[str, _Histogram]]
    ) -> None:
        packing, private_key = self.packing, self.private_key
        for host, wire in self.ctx.recv_all("host", _tag(t, depth, "hist")).items():
            bins = sum(self.host_bins[host])
            per_node = -(-bins // packing.pairs_per_ciphertext)
            vector = paillier.EncryptedVector.from_wire(
                private_key.public_key, wire, expected_len=per_node * len(compute)
            )
            try:
                plain = paillier.decrypt_ints(private_key, vector)
            except OverflowError:
                raise ProtocolError(f"host {host}'s histogram is out of range") from None
            for k, node in enumerate(compute):
                g_sum, h_sum = packing.unpack_sums(plain[k * per_node : (k + 1) * per_node], bins)
                out.setdefault(node, {})[host] = _Histogram(g_sum, h_sum)

    def _best(
        self, members: np.ndarray, g: np.ndarray, h: np.ndarray, hosts: dict[str, _Histogram]
    ) -> _Choice | None:
        cfg = self.config
        total = sum(self.binning.bin_counts)
        features = self.flat.shape[1]
        cells = self.flat[members].ravel()
        own = _Histogram(
            np.bincount(cells, weights=np.repeat(g[members], features), minlength=total),
            np.bincount(cells, weights=np.repeat(h[members], features), minlength=total),
        )
        options = {"guest": (own, self.binning.bin_counts)}
        for host, hist in hosts.items():
            options[host] = (hist, self.host_bins[host])
        best: _Choice | None = None
        for party, (hist, counts) in options.items():
            found = best_split(
                hist.g,
                hist.h,
                counts,
                reg_lambda=cfg.reg_lambda,
                min_child_weight=cfg.min_child_weight,
                min_split_gain=cfg.min_split_gain,
            )
            if found is not None and (best is None or found.gain > best.candidate.gain):
                best = _Choice(party, found)
        return best

    def _partition(
        self, t: int, depth: int, node_of_row: np.ndarray, choices: dict[int, _Choice]
    ) -> dict[int, np.ndarray]:
        """Which of each split node's rows go left (asking the hosts about their splits)."""
        ctx = self.ctx
        lefts: dict[int, np.ndarray] = {}
        asks: dict[str, list[int]] = {host: [] for host in self.hosts}
        for node, choice in choices.items():
            members = _node_rows(node_of_row, node)
            if choice.party == "guest":
                column = self.binning.bins[members, choice.candidate.feature]
                lefts[node] = column <= choice.candidate.bin
            else:
                asks[choice.party].append(node)
        for host, ask in asks.items():
            request = [
                [node, choices[node].candidate.feature, choices[node].candidate.bin] for node in ask
            ]
            ctx.send(host, _tag(t, depth, "splits"), request)
        for host, reply in ctx.recv_all("host", _tag(t, depth, "left")).items():
            ask = asks[host]
            if not isinstance(reply, list) or len(reply) != len(ask):
                raise ProtocolError(f"host {host} must answer each of its {len(ask)} splits")
            for node, left in zip(ask, reply, strict=True):
                size = int((node_of_row == node).sum())
                if (
                    not isinstance(left, np.ndarray)
                    or left.dtype != np.bool_
                    or left.shape != (size,)
                ):
                    raise ProtocolError(
                        f"host {host}'s split of node {node} is not {size} booleans"
                    )
                lefts[node] = left
        return lefts

    def _record_split(self, node: Node, choice: _Choice, t: int, left: int, right: int) -> None:
        cand = choice.candidate
        node.left, node.right, node.gain = left, right, cand.gain
        if choice.party == "guest":
            node.party = self.ctx.party_id
            node.feature = self.data.features[cand.feature]
            node.feature_index = cand.feature
            node.threshold = float(self.binning.splits[cand.feature][cand.bin])
        else:
            node.party = choice.party
            node.feature = host_feature_name(choice.party, cand.feature)
            node.split_id = f"{t}:{node.id}"
        self.split_count[node.feature] = self.split_count.get(node.feature, 0) + 1
        self.split_gain[node.feature] = self.split_gain.get(node.feature, 0.0) + cand.gain

    def _write(self, trees: list[Tree], init_score: float, scores: np.ndarray) -> None:
        ctx, data, cfg = self.ctx, self.data, self.config
        importance = {
            "split": dict(sorted(self.split_count.items(), key=lambda kv: -kv[1])),
            "gain": dict(sorted(self.split_gain.items(), key=lambda kv: -kv[1])),
        }
        ctx.metric("feature_importance", importance[cfg.importance_type])
        model = {
            "component": NAME,
            "role": "guest",
            "features": data.features,
            "init_score": init_score,
            "learning_rate": cfg.learning_rate,
            "params": {k: v for k, v in asdict(cfg).items() if k != "seed"},
            "trees": [tree.to_json() for tree in trees],
            "feature_importance": importance,
        }
        ctx.output("model").write_text(json.dumps(model, indent=2))
        y = self.y.astype(int)
        write_table(
            ctx.output("predictions"),
            [ID_COLUMN, LABEL_COLUMN, "score"],
            [
                [i, str(int(t)), s[0]]
                for i, t, s in zip(
                    data.ids, y, format_floats(sigmoid(scores)[:, None]), strict=True
                )
            ],
        )


def _check_ciphertexts(received: Rows, n: int) -> None:
    """Every ciphertext of :func:`limb_rows`' partitions checked where it is decoded, as
    :func:`fedalgo.paillier.check_wire` checks them (in range, invertible)."""
    paillier.check_parts(received.collect(part_product, n), n, "the encrypted gradients")


class _Host:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.data: Dataset = ctx.read_dataset("data", with_label=False)
        self.splits: dict[str, dict[str, Any]] = {}

    def _setup(self) -> tuple[BoostConfig, paillier.PublicKey, GradientPacking]:
        setup = self.ctx.recv("guest", f"{TAG}/setup")
        if not isinstance(setup, dict):
            raise ProtocolError("the training setup must be a map")
        cfg = BoostConfig.from_setup(setup)
        try:
            public_key = paillier.PublicKey(setup["public_key_n"])
            packing = GradientPacking(
                int(setup["precision_bits"]),
                int(setup["slot_bits"]),
                int(setup["pairs_per_ciphertext"]),
            )
        except (TypeError, KeyError, ValueError) as exc:
            raise ProtocolError(f"bad training setup from the guest: {exc}") from None
        limit = paillier.slots_per_plaintext(public_key.max_int, 2 * packing.slot_bits)
        if not 1 <= packing.pairs_per_ciphertext <= limit or packing.slot_bits > 512:
            raise ProtocolError("the guest asked for a packing that does not fit its key")
        return cfg, public_key, packing

    def run(self) -> None:
        ctx, data = self.ctx, self.data
        ctx.send("guest", f"{TAG}/host_info", host_info(data))
        if not data.features:
            raise DataError("the host's data has no feature columns (only 'id')")
        cfg, public_key, packing = self._setup()
        floors.check_bins(ctx.floors, cfg.bins)  # the guest's bins split this party's columns
        binning = fit_binning(data.x, cfg.bins, "quantile", ctx.computing)
        ctx.send("guest", f"{TAG}/host_bins", binning.bin_counts)
        # Standard randomness: the guest holds the key (see the threat model).
        rerandomiser = paillier.Encryptor(public_key, randomness="standard")
        for t in range(cfg.num_trees):
            self._tree(t, cfg, public_key, packing, binning, rerandomiser)
        model = {
            "component": NAME,
            "role": "host",
            "features": data.features,
            "splits": self.splits,
        }
        ctx.output("model").write_text(json.dumps(model, indent=2))
        write_table(ctx.output("predictions"), [ID_COLUMN], [[i] for i in data.ids])

    def _tree(
        self,
        t: int,
        cfg: BoostConfig,
        public_key: paillier.PublicKey,
        packing: GradientPacking,
        binning: Binning,
        rerandomiser: paillier.Encryptor,
    ) -> None:
        ctx, n = self.ctx, self.data.n_samples
        # Still encoded: the ciphertexts go to the engine as the bytes received, and are
        # decoded (and checked) where the engine keeps them.
        message = ctx.recv("guest", f"{TAG}/{t}/gh", int_arrays=True)
        if not isinstance(message, dict) or set(message) != {"rows", "gh"}:
            raise ProtocolError("the encrypted gradients must be {rows, gh}")
        rows = message["rows"]
        if (
            not isinstance(rows, np.ndarray)
            or rows.ndim != 1
            or rows.dtype.kind not in "iu"
            or not len(rows)
            or rows.min() < 0
            or rows.max() >= n
            or (np.diff(rows) <= 0).any()
        ):
            raise ProtocolError("the sampled rows must be increasing row numbers")
        cts, _ = paillier.wire_parts(public_key, message["gh"], expected_len=len(rows))
        del message
        nsq = public_key.nsquare
        # The ciphertexts live where the engine keeps rows (Spark: the executors), as limbs
        # beside their rows' bins; every level's histograms are one pass over them.
        received = ctx.computing.distribute([rows, cts, binning.flat()[rows]])
        del cts
        try:
            _check_ciphertexts(received, public_key.n)
            gh = received.map(limb_rows, nsq)
        finally:
            received.release()
        try:
            self._levels(t, cfg, packing, binning, gh, rerandomiser)
        finally:
            gh.release()

    def _levels(
        self,
        t: int,
        cfg: BoostConfig,
        packing: GradientPacking,
        binning: Binning,
        gh: Rows,
        rerandomiser: paillier.Encryptor,
    ) -> None:
        ctx, n = self.ctx, self.data.n_samples
        public_key = rerandomiser.public_key
        nsq = public_key.nsquare
        total = sum(binning.bin_counts)
        for depth in range(cfg.max_depth):
            nodes = ctx.recv("guest", _tag(t, depth, "nodes"))
            if nodes is None:
                break
            node_of_row, compute = self._check_nodes(nodes, n)
            folded: list[Any] = []
            for sums in node_bin_sums(gh, node_of_row, compute, total, nsq):
                folded += packing.compress(sums, nsq)
            reply = rerandomiser.rerandomise(paillier.EncryptedVector(public_key, folded, 0))
            ctx.send("guest", _tag(t, depth, "hist"), reply.to_wire())
            ctx.send("guest", _tag(t, depth, "left"), self._splits(t, depth, node_of_row, binning))

    @staticmethod
    def _check_nodes(nodes: Any, n: int) -> tuple[np.ndarray, list[int]]:
        if not isinstance(nodes, dict) or set(nodes) != {"node_of_row", "compute"}:
            raise ProtocolError("a level must be {node_of_row, compute}")
        node_of_row, compute = nodes["node_of_row"], nodes["compute"]
        if not isinstance(node_of_row, np.ndarray) or node_of_row.shape != (n,):
            raise ProtocolError(f"node_of_row must be {n} node numbers")
        if node_of_row.dtype.kind not in "iu":
            raise ProtocolError("node numbers must be integers")
        if not isinstance(compute, list) or not all(isinstance(c, int) for c in compute):
            raise ProtocolError("compute must be a list of node numbers")
        return node_of_row, compute

    def _splits(
        self, t: int, depth: int, node_of_row: np.ndarray, binning: Binning
    ) -> list[np.ndarray]:
        request = self.ctx.recv("guest", _tag(t, depth, "splits"))
        if not isinstance(request, list):
            raise ProtocolError("the split request must be a list")
        lefts = []
        for item in request:
            if (
                not isinstance(item, list)
                or len(item) != 3
                or not all(isinstance(v, int) for v in item)
            ):
                raise ProtocolError("a split request is [node, column, bin]")
            node, feature, b = item
            if not 0 <= feature < len(binning.splits) or not 0 <= b < len(binning.splits[feature]):
                raise ProtocolError(f"no bin {b} of column {feature} to split on")
            members = _node_rows(node_of_row, node)
            lefts.append(binning.bins[members, feature] <= b)
            self.splits[f"{t}:{node}"] = {
                "feature": self.data.features[feature],
                "threshold": float(binning.splits[feature][b]),
            }
        return lefts
