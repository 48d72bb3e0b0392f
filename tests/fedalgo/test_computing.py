"""The computing seam on both engines: the local process pool and real Spark (``local[2]``).

One Spark session serves the module (its JVM takes seconds to start); every engine is built with
``min_items=1`` so that even these small inputs go to the executors.
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import chunk_functions
import numpy as np
import pytest
from fedalgo_helpers import GUEST, HOST, party, read_rows, write_rows

from fedalgo import blinding, paillier
from fedalgo.bin_edges import fit_binning
from fedalgo.components import hetero_lr, secureboost
from fedalgo.components.scale import fit_scaling
from fedalgo.computing import Computing, LocalComputing, Rows
from fedalgo.computing.spark import PERIODIC_GC, SparkComputing
from fedalgo.errors import DataError, ProtocolError
from fedalgo.federation import InMemoryFederation, run_parties
from fedalgo.histogram import bin_sums
from fedalgo.logistic import linear
from fedalgo.tables import read_dataset
from fedcore import codec
from fedcore.codec import IntArray
from hdfs_cluster import hdfs

ROWS = 120
__all__ = ["hdfs"]  # the session fixture, imported for this module's tests


@pytest.fixture(scope="module")
def spark_session() -> Iterator[Any]:
    computing = SparkComputing.start("local[2]")
    computing._sc.addPyFile(chunk_functions.__file__)
    yield computing._session
    computing.close()


@pytest.fixture
def spark(spark_session: Any) -> SparkComputing:
    return SparkComputing(spark_session, min_items=1)


@pytest.fixture
def local() -> Iterator[LocalComputing]:
    with LocalComputing(max_workers=2, min_items=1) as computing:
        yield computing


@pytest.fixture(scope="module")
def breast(fl_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The first ROWS rows of the shared breast split (guest with labels, host)."""
    out = tmp_path_factory.mktemp("breast")
    files = {}
    for role in ("guest", "host"):
        header, rows = read_rows(fl_data / f"breast_hetero_{role}.csv")
        files[role] = write_rows(out / f"{role}.csv", header, rows[:ROWS])
    return files


def test_spark_runs_every_primitive_as_the_process_does(spark: SparkComputing) -> None:
    assert spark.name == "spark" and spark.master == "local[2]" and spark.executors == 2
    public_key, private_key = paillier.generate_keypair(1024)
    encryptor = paillier.Encryptor(public_key, private_key=private_key)
    values = list(range(-20, 20))
    vector = encryptor.encrypt_ints(values, pool=spark)
    assert paillier.decrypt_ints(private_key, vector) == values
    weights = np.arange(40, dtype=np.int64)
    folded = vector.dot_ints(weights, pool=spark)
    assert paillier.decrypt_ints(private_key, folded) == [int(np.array(values) @ weights)]

    rng = np.random.default_rng(3)
    flat = np.stack([rng.integers(0, 3, 40), rng.integers(3, 7, 40)], axis=1)
    nsq = public_key.nsquare
    assert bin_sums(vector.ciphertexts, flat, 7, nsq, spark) == bin_sums(
        vector.ciphertexts, flat, 7, nsq
    )

    salt = bytes(range(32))
    ids = [f"id{i}" for i in range(50)]
    assert blinding.hash_ids(salt, ids, spark) == blinding.hash_ids(salt, ids)
    blinder = blinding.Blinder()
    points = blinding.hash_ids(salt, ids)
    assert blinder.blind(points, spark) == blinder.blind(points)

    x = rng.normal(size=(60, 5))
    for method in ("standard", "min-max"):
        got, want = fit_scaling(x, method, spark), fit_scaling(x, method)
        assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))
    binned, plain = fit_binning(x, 6, "quantile", spark), fit_binning(x, 6, "quantile")
    assert np.array_equal(binned.bins, plain.bins)
    assert all(np.array_equal(a, b) for a, b in zip(binned.splits, plain.splits, strict=True))
    w = rng.normal(size=5)
    assert np.allclose(linear(x, w, spark), x @ w, rtol=0, atol=1e-12)


@pytest.mark.parametrize("engine", ["local", "spark"])
def test_many_chunks_come_back_whole_and_in_order(
    engine: str, request: pytest.FixtureRequest
) -> None:
    """``min_chunks`` above one: Spark receives the results a partition at a time (a job's
    results are bounded by spark.driver.maxResultSize), in the same order as a single chunk."""
    computing: Computing = request.getfixturevalue(engine)
    count = 53
    sliced = [np.arange(count), [2**300 + i for i in range(count)], np.arange(count) * 3]
    whole = chunk_functions.square(*sliced)
    for min_chunks in (1, 5, count):
        parts = computing.map_chunks(chunk_functions.square, sliced, min_chunks=min_chunks)
        assert len(parts) == max(min_chunks, computing.executors)
        assert np.array_equal(np.concatenate([p[0] for p in parts]), whole[0])
        assert [v for p in parts for v in p[1]] == whole[1]
        assert np.array_equal(np.concatenate([p[2] for p in parts]), whole[2])


@pytest.mark.parametrize("engine", ["local", "spark"])
def test_rows_stay_with_the_engine_and_regroup(engine: str, request: pytest.FixtureRequest) -> None:
    computing: Computing = request.getfixturevalue(engine)
    count = 50
    rows = np.arange(count)
    big = [2**300 + i for i in range(count)]  # ints beyond int64, as ciphertexts are
    small = np.arange(count, dtype=np.int64) * 3
    held = computing.distribute([rows, big, small])
    assert held.count == count
    total = sum(big) + int(rows.sum()) + int(small.sum())
    assert sum(held.collect(chunk_functions.sum_rows, 1)) == total
    squared = held.map(chunk_functions.square)
    held.release()
    assert squared.reduce(chunk_functions.sum_rows, chunk_functions.add, 2) == 2 * (
        sum(b * b for b in big) + int(rows.sum()) + 2 * int(small.sum())
    )
    keys = (rows * 7) % 4  # four groups of uneven rows
    grouped = squared.regroup(keys, 4)
    for g in range(4):
        members = np.flatnonzero(keys == g)
        want = sum(big[i] ** 2 + int(i) + 6 * int(i) for i in members.tolist())
        assert grouped.group_reduce(g, chunk_functions.sum_rows, chunk_functions.add, 1) == want
    grouped.release()
    squared.release()


@pytest.mark.parametrize("engine", ["local", "spark"])
def test_reading_a_dataset_gives_the_same_numbers_on_both_engines(
    engine: str, request: pytest.FixtureRequest, breast: dict[str, Path], tmp_path: Path
) -> None:
    computing: Computing = request.getfixturevalue(engine)
    want = read_dataset(breast["guest"], with_label=True)
    got = computing.read_dataset(str(breast["guest"]), with_label=True)
    assert got.ids == want.ids and got.features == want.features
    assert np.array_equal(got.x, want.x) and got.y is not None and want.y is not None
    assert np.array_equal(got.y, want.y) and got.has_label_column
    host = computing.read_dataset(str(breast["host"]), with_label=False)
    assert host.y is None and not host.has_label_column and host.x.shape[0] == ROWS
    bad = write_rows(tmp_path / "bad.csv", ["id", "x"], [["a", "1.5"], ["b", "oops"]])
    with pytest.raises(DataError, match=r"column 'x' has non-numeric value 'oops'"):
        computing.read_dataset(str(bad), with_label=False)
    # a path is read as it is, not as a pattern (Hadoop globs []{}*? and backslashes)
    for name in ("out-local[*]", "a{1,2}?", "back\\slash"):
        (tmp_path / name).mkdir()
        path = write_rows(tmp_path / name / "t.csv", ["id", "x"], [["a", "1.5"]])
        assert computing.read_dataset(str(path), with_label=False).x.tolist() == [[1.5]]


def _jvm_weakref(spark: SparkComputing, rows: Rows) -> Any:
    """A JVM weak reference to the RDD behind ``rows``, holding no py4j proxy of it."""
    proxy = rows._rdd._jrdd.rdd()  # type: ignore[attr-defined]
    weak = spark._sc._jvm.java.lang.ref.WeakReference(proxy)
    spark._sc._gateway.detach(proxy)
    return weak


def _collected(spark: SparkComputing, weak: Any) -> bool:
    """Whether the JVM lets ``weak``'s RDD go within 20 s (py4j tells the JVM which proxies
    Python dropped from a thread of its own, about once a second)."""
    deadline = time.monotonic() + 20
    while True:
        spark._sc._jvm.System.gc()
        if weak.get() is None:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


def test_spark_lets_the_jvm_drop_released_rows(spark: SparkComputing) -> None:
    """Released rows, and what parallelize copied into the driver's heap for them, are garbage
    in the JVM at once, while the rows mapped from them live on: not whenever Python's cycle
    collector next runs (a 1M-row tree's 0.6 GB outlived the tree that way)."""
    n = 3000
    big = [int(i) << 600 for i in range(n)]
    gc.disable()  # so that only release() may collect the proxies' cycles
    try:
        received = spark.distribute([np.arange(n), big, np.ones((n, 2))])
        parallelized = _jvm_weakref(spark, received)
        squared = received.map(chunk_functions.square)
        mapped = _jvm_weakref(spark, squared)
        received.release()
        received.release()  # idempotent
        assert _collected(spark, parallelized)
        assert mapped.get() is not None
        assert (
            squared.reduce(chunk_functions.sum_rows, chunk_functions.add, 1)
            == sum(range(n)) + sum(b * b for b in big) + 4 * n
        )
        squared.release()
        assert _collected(spark, mapped)
    finally:
        gc.enable()


def test_the_spark_driver_runs_with_periodic_collections(spark: SparkComputing) -> None:
    """The driver's JVM has the flags that make an idle one give free heap back (a party
    waiting on its peer would otherwise hold its largest heap to the end of the step; what
    they save is measured in bench/README.md, not here)."""
    runtime = spark._sc._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
    assert set(PERIODIC_GC.split()) <= set(runtime.getInputArguments())


def test_spark_times_its_work_per_kind(spark: SparkComputing) -> None:
    before = spark.stage_timings().get("column_stats", {"jobs": 0, "tasks": 0})
    fit_scaling(np.random.default_rng(1).normal(size=(40, 4)), "standard", spark)
    after = spark.stage_timings()["column_stats"]
    assert after["jobs"] == before["jobs"] + 1
    assert after["tasks"] == before["tasks"] + 2  # a chunk per executor core
    assert LocalComputing().stage_timings() == {}


def test_spark_reads_csv_and_parquet_uris(spark: SparkComputing, tmp_path: Path) -> None:
    csv = write_rows(tmp_path / "t.csv", ["id", "x"], [["a", "1.5"], ["b", "2"]])
    table = spark.read_table(f"file://{csv}")
    assert table.header == ["id", "x"] and table.rows == [["a", "1.5"], ["b", "2"]]
    parquet = tmp_path / "t.parquet"
    spark._session.createDataFrame([("a", 1.5), ("b", 2.0)], ["id", "x"]).coalesce(1).write.parquet(
        f"file://{parquet}"
    )
    table = spark.read_table(f"file://{parquet}")
    assert table.header == ["id", "x"] and sorted(table.rows) == [["a", "1.5"], ["b", "2.0"]]


def test_spark_reads_a_dataset_from_a_real_hdfs(
    spark: SparkComputing, hdfs: str, breast: dict[str, Path]
) -> None:
    jvm = spark._sc._jvm
    fs = jvm.org.apache.hadoop.fs.FileSystem.get(
        jvm.java.net.URI(hdfs), spark._sc._jsc.hadoopConfiguration()
    )
    fs.copyFromLocalFile(
        jvm.org.apache.hadoop.fs.Path(str(breast["guest"])),
        jvm.org.apache.hadoop.fs.Path("/data/guest.csv"),
    )
    got = spark.read_dataset(f"{hdfs}/data/guest.csv", with_label=True)
    want = read_dataset(breast["guest"], with_label=True)
    assert got.ids == want.ids and got.features == want.features
    assert np.array_equal(got.x, want.x) and np.array_equal(got.y, want.y)  # type: ignore[arg-type]
    table = spark.read_table(f"{hdfs}/data/guest.csv")
    assert table.rows == read_rows(breast["guest"])[1]


def test_the_local_engine_refuses_remote_uris() -> None:
    with pytest.raises(ValueError, match=r"hdfs:// .*spark-master-name"):
        LocalComputing().read_table("hdfs://namenode/data.csv")


def _train(
    component: str, out: Path, data: dict[str, Path], args: dict[str, Any], computing: Computing
) -> dict[str, dict[str, Any]]:
    outputs = ("model", "predictions")
    specs = {
        GUEST: party("guest", out / "g", outputs, {"key-bits": 1024, **args}, data=data["guest"]),
        HOST: party("host", out / "h", outputs, data=data["host"]),
    }
    for spec in specs.values():
        spec["computing"] = computing
    run_parties(component, specs, timeout_s=300)
    return {p: json.loads((out / d / "model").read_text()) for p, d in ((GUEST, "g"), (HOST, "h"))}


def test_secureboost_grows_identical_trees_on_both_engines(
    tmp_path: Path, breast: dict[str, Path], spark: SparkComputing, local: LocalComputing
) -> None:
    args = {"num-trees": 2, "max-depth": 2, "random-seed": 7, "subsample": 0.8}
    on_spark = _train("hetero_secureboost", tmp_path / "spark", breast, args, spark)
    on_local = _train("hetero_secureboost", tmp_path / "local", breast, args, local)
    assert on_spark[GUEST]["trees"] == on_local[GUEST]["trees"]
    assert on_spark[HOST]["splits"] == on_local[HOST]["splits"]
    assert on_spark[GUEST]["trees"]  # something was learnt


class _Recording(SparkComputing):
    """The real engine, noting the types a component hands it and gets back from its chunks."""

    def __init__(self, session: Any) -> None:
        super().__init__(session, min_items=1)
        self.distributed: list[list[type]] = []
        self.sliced: list[Any] = []
        self.chunk_results: dict[str, set[type]] = {}

    def distribute(self, sliced: Any) -> Rows:
        self.distributed.append([type(s) for s in sliced])
        self.sliced.append(sliced)
        return super().distribute(sliced)

    def map_chunks(self, fn: Any, sliced: Any, *shared: Any, min_chunks: int = 1) -> list[Any]:
        results = super().map_chunks(fn, sliced, *shared, min_chunks=min_chunks)
        self.chunk_results.setdefault(fn.__name__, set()).update(type(r) for r in results)
        return results


def _run_recorded(
    algorithm: str,
    args: dict[str, Any],
    tmp_path: Path,
    breast: dict[str, Path],
    spark_session: Any,
) -> tuple[_Recording, _Recording, InMemoryFederation]:
    """``algorithm`` between a guest and a host on Spark, recording what each distributes and
    what crosses between them."""
    guest, host = _Recording(spark_session), _Recording(spark_session)
    outputs = ("model", "predictions")
    specs = {
        GUEST: party("guest", tmp_path / "g", outputs, args, data=breast["guest"]),
        HOST: party("host", tmp_path / "h", outputs, data=breast["host"]),
    }
    specs[GUEST]["computing"], specs[HOST]["computing"] = guest, host
    hub = InMemoryFederation(recv_timeout_s=300, record=True)
    run_parties(algorithm, specs, timeout_s=300, federation=hub)
    return guest, host, hub


def test_secureboost_drivers_hold_the_gradients_encoded_never_as_ints(
    tmp_path: Path, breast: dict[str, Path], spark_session: Any
) -> None:
    """On Spark the guest's executors encode the ciphertexts they encrypt and the host hands
    the bytes it received to its executors: neither driver builds a list of ints for them."""
    args = {"key-bits": 1024, "num-trees": 2, "max-depth": 2, "random-seed": 7}
    guest, host, hub = _run_recorded("hetero_secureboost", args, tmp_path, breast, spark_session)

    encrypting = {k: v for k, v in guest.chunk_results.items() if "encrypt" in k}
    assert encrypting == {"_encrypt_chunk_encoded": {bytes}}
    assert host.distributed == [[np.ndarray, IntArray, np.ndarray]] * 2  # one per tree
    # What crossed is the wire's list of ints, a ciphertext per row, as before.
    sent = [m.value for m in hub.received_by(HOST) if m.tag.endswith("/gh")]
    assert len(sent) == 2
    for message in sent:
        cts = message["gh"]["ciphertexts"]
        assert len(cts) == ROWS and all(isinstance(c, int) and c > 2**64 for c in cts)


def test_hetero_lr_guest_hands_the_hosts_features_to_its_executors_encoded(
    tmp_path: Path, breast: dict[str, Path], spark_session: Any
) -> None:
    """On Spark the guest's driver distributes [[X_h]] as the bytes it received; its executors
    decode and check them. What crossed is the wire's list of ints, as before."""
    args = {"key-bits": 1024, "max-iter": 1, "tol": 0, "batch-size": 64}
    guest, _, hub = _run_recorded("hetero_lr", args, tmp_path, breast, spark_session)

    assert guest.distributed == [[np.ndarray, hetero_lr._RowCiphertexts]]
    assert isinstance(guest.sliced[0][1].flat, IntArray)
    (sent,) = [m.value for m in hub.received_by(GUEST) if m.tag == "hetero_lr/host_key"]
    cts = sent["features"]["ciphertexts"]
    assert len(cts) == ROWS * sent["per_row"]
    assert all(isinstance(c, int) and c > 2**64 for c in cts)


@pytest.mark.parametrize("engine", ["local", "spark"])
def test_received_ciphertexts_are_checked_where_they_are_decoded(
    engine: str, request: pytest.FixtureRequest
) -> None:
    computing: Computing = request.getfixturevalue(engine)
    public_key, private_key = paillier.generate_keypair(1024)
    n = public_key.n
    good = [int(c) for c in paillier.Encryptor(public_key).encrypt_raw(list(range(40)))]
    bins = np.zeros((40, 1), dtype=np.int64)
    for bad, problem in [(n * n + 1, "not an integer in"), (private_key.p, "not invertible")]:
        wire = {"ciphertexts": [*good[:-1], bad], "exponent": 0}
        received = codec.unpackb(codec.packb(wire), int_arrays=True)["ciphertexts"]
        assert isinstance(received, IntArray)
        held = computing.distribute([np.arange(40), received, bins])
        with pytest.raises(ProtocolError, match=f"the encrypted gradients: .*{problem}"):
            secureboost._check_ciphertexts(held, n)
        held.release()
        # hetero_lr's [[X_h]], two ciphertexts a row
        by_row = hetero_lr._RowCiphertexts(received, 2)
        with pytest.raises(ProtocolError, match=f"the host's encrypted features: .*{problem}"):
            hetero_lr._kept_features(computing, by_row, n)
    kept = hetero_lr._kept_features(computing, hetero_lr._RowCiphertexts(good, 2), n)
    assert kept.collect(chunk_functions.second) == [
        [good[i : i + 2] for i in range(a, b, 2)] for a, b in [(0, 20), (20, 40)]
    ]
    kept.release()


def test_hetero_lr_weights_agree_on_both_engines(
    tmp_path: Path, breast: dict[str, Path], spark: SparkComputing, local: LocalComputing
) -> None:
    args = {"max-iter": 3, "tol": 0, "batch-size": 64, "random-seed": 5}
    on_spark = _train("hetero_lr", tmp_path / "spark", breast, args, spark)
    on_local = _train("hetero_lr", tmp_path / "local", breast, args, local)
    for pid in (GUEST, HOST):
        got, want = np.array(on_spark[pid]["weights"]), np.array(on_local[pid]["weights"])
        assert got.shape == want.shape and np.abs(got - want).max() <= 1e-9
