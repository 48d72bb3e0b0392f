"""intersect: the right rows, in the same order on every side, with any number of hosts."""

from __future__ import annotations

from pathlib import Path

import pytest
from fedalgo_helpers import GUEST, HOST, HOST2, party, read_rows, write_rows

from fedalgo.errors import DataError
from fedalgo.federation import InMemoryFederation, run_parties


def run_intersect(tmp_path: Path, guest: Path, *hosts: Path, args: dict | None = None, **kw):
    specs = {GUEST: party("guest", tmp_path / "g", ("data",), args, data=guest)}
    for pid, path in zip((HOST, HOST2), hosts, strict=False):
        specs[pid] = party("host", tmp_path / pid, ("data",), data=path)
    return run_parties("intersect", specs, **kw)


def id_table(path: Path, ids: list[str], extra: str = "v") -> Path:
    return write_rows(path, ["id", extra], [[i, f"{extra}-{i}"] for i in ids])


def test_demo_data_aligns_on_the_common_ids(tmp_path: Path, demo_data: tuple[Path, Path]) -> None:
    guest_csv, host_csv = demo_data
    result = run_intersect(tmp_path, guest_csv, host_csv)
    g_header, g_rows = read_rows(tmp_path / "g" / "data")
    h_header, h_rows = read_rows(tmp_path / HOST / "data")
    expected = {r[0] for r in read_rows(guest_csv)[1]} & {r[0] for r in read_rows(host_csv)[1]}
    assert [r[0] for r in g_rows] == [r[0] for r in h_rows]
    assert set(r[0] for r in g_rows) == expected and len(g_rows) == len(expected) == 513
    assert (g_header, h_header) == (read_rows(guest_csv)[0], read_rows(host_csv)[0])
    # Rows are copied unchanged.
    original = {r[0]: r for r in read_rows(host_csv)[1]}
    assert all(original[r[0]] == r for r in h_rows)
    assert result.last(GUEST, "intersection_size") == result.last(HOST, "intersection_size") == 513


def test_two_hosts_keep_only_ids_all_three_share(tmp_path: Path) -> None:
    guest = id_table(tmp_path / "g.csv", [str(i) for i in range(0, 100)])
    host1 = id_table(tmp_path / "h1.csv", [str(i) for i in range(150, 40, -1)], "a")
    host2 = id_table(tmp_path / "h2.csv", [str(i) for i in range(0, 200, 3)], "b")
    result = run_intersect(tmp_path, guest, host1, host2)
    expected = {str(i) for i in range(41, 100) if i % 3 == 0}
    columns = [
        [r[0] for r in read_rows(p)[1]]
        for p in (tmp_path / "g" / "data", tmp_path / HOST / "data", tmp_path / HOST2 / "data")
    ]
    assert columns[0] == columns[1] == columns[2]
    assert set(columns[0]) == expected
    assert all(r[1] == f"b-{r[0]}" for r in read_rows(tmp_path / HOST2 / "data")[1])
    assert result.last(HOST2, "intersection_size") == len(expected)


def test_keep_guest_order_when_shuffle_is_off(tmp_path: Path) -> None:
    ids = [str(i) for i in (9, 3, 7, 1, 5)]
    guest = id_table(tmp_path / "g.csv", ids)
    host = id_table(tmp_path / "h.csv", ["1", "3", "5", "7", "9", "11"])
    run_intersect(tmp_path, guest, host, args={"shuffle": False})
    assert [r[0] for r in read_rows(tmp_path / HOST / "data")[1]] == ids


def test_disjoint_ids_give_empty_outputs(tmp_path: Path) -> None:
    guest = id_table(tmp_path / "g.csv", ["a", "b", "c"])
    host = id_table(tmp_path / "h.csv", ["d", "e"])
    result = run_intersect(tmp_path, guest, host)
    assert read_rows(tmp_path / "g" / "data") == (["id", "v"], [])
    assert read_rows(tmp_path / HOST / "data") == (["id", "v"], [])
    assert result.last(GUEST, "intersection_size") == 0


def test_duplicate_ids_are_kept_once(tmp_path: Path) -> None:
    guest = write_rows(tmp_path / "g.csv", ["id", "v"], [["a", 1], ["b", 2], ["a", 3], ["c", 4]])
    host = write_rows(tmp_path / "h.csv", ["id", "w"], [["c", 5], ["a", 6], ["a", 7], ["c", 8]])
    run_intersect(tmp_path, guest, host, args={"shuffle": False})
    assert read_rows(tmp_path / "g" / "data")[1] == [["a", "1"], ["c", "4"]]
    assert read_rows(tmp_path / HOST / "data")[1] == [["a", "6"], ["c", "5"]]


def test_ids_are_text_not_numbers(tmp_path: Path) -> None:
    guest = id_table(tmp_path / "g.csv", ["01", "1", "ünï"])
    host = id_table(tmp_path / "h.csv", ["1", "ünï", "001"])
    run_intersect(tmp_path, guest, host)
    assert sorted(r[0] for r in read_rows(tmp_path / "g" / "data")[1]) == ["1", "ünï"]


def test_no_raw_ids_cross_the_wire(tmp_path: Path) -> None:
    ids = [f"customer-{i}" for i in range(50)]
    guest = id_table(tmp_path / "g.csv", ids)
    host = id_table(tmp_path / "h.csv", [*ids[25:], "secret-host-id"])
    hub = InMemoryFederation(record=True)
    run_intersect(tmp_path, guest, host, federation=hub)
    for message in hub.messages:
        blob = message.value if isinstance(message.value, bytes) else repr(message.value).encode()
        assert b"customer" not in blob and b"secret" not in blob
    tags = {m.tag: type(m.value).__name__ for m in hub.received_by(HOST)}
    assert tags == {
        "intersect/salt": "bytes",
        "intersect/guest_blinded": "bytes",
        "intersect/positions": "ndarray",
    }


def test_missing_id_column_is_a_clear_error(tmp_path: Path) -> None:
    guest = write_rows(tmp_path / "g.csv", ["key", "v"], [["a", 1]])
    host = id_table(tmp_path / "h.csv", ["a"])
    with pytest.raises(DataError, match="no 'id' column"):
        run_intersect(tmp_path, guest, host, timeout_s=20)
