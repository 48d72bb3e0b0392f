"""The example job (examples/hetero_lr): its demo data, its job.yaml with real paths, its baseline.

Shared by ``python -m tessera.demo`` and the end-to-end test so that both submit the same job.
"""

from __future__ import annotations

import csv
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from numpy.typing import NDArray

from tessera.envfiles import ROOT
from tessera.sdk import Grant, Tessera

EXAMPLE_DIR = ROOT / "examples" / "hetero_lr"
PIPELINE_YAML = EXAMPLE_DIR / "pipeline.yaml"
JOB_TEMPLATE = EXAMPLE_DIR / "job.yaml"
MAKE_DATA = ROOT / "examples" / "make_demo_data.py"
LABEL_COLUMNS = ("label", "y")


class ExampleError(RuntimeError):
    """The example's files are missing or malformed."""


@dataclass(frozen=True)
class DemoData:
    guest_csv: Path
    host_csv: Path


def make_demo_data(out_dir: Path, seed: int = 0) -> DemoData:
    """Run examples/make_demo_data.py's ``make_breast_split`` into ``out_dir``."""
    spec = importlib.util.spec_from_file_location("tessera_make_demo_data", MAKE_DATA)
    if spec is None or spec.loader is None or not MAKE_DATA.exists():
        raise ExampleError(f"{MAKE_DATA} is missing")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out_dir.mkdir(parents=True, exist_ok=True)
    guest, host = module.make_breast_split(out_dir, seed=seed)
    return DemoData(Path(guest).resolve(), Path(host).resolve())


def party_roles(job: dict[str, Any]) -> dict[str, str]:
    """``{"10000": "guest", ...}`` from job.yaml's ``parties: ["10000=guest", ...]``."""
    roles = {}
    for entry in job.get("parties") or []:
        party, sep, role = str(entry).partition("=")
        if not sep:
            raise ExampleError(f"job.yaml: party entry {entry!r} is not '<id>=<role>'")
        roles[party.strip()] = role.strip()
    return roles


def render_job(data: DemoData, output_root: Path, template: Path = JOB_TEMPLATE) -> str:
    """The example job.yaml with each party's ``input`` and ``output`` set to real paths."""
    try:
        job = yaml.safe_load(template.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ExampleError(f"cannot read {template}: {exc}") from exc
    args: dict[Any, Any] = job.setdefault("parties-args", {}) or {}
    job["parties-args"] = args
    for party, role in party_roles(job).items():
        key = next((k for k in args if str(k) == party), party)
        own = args.get(key) or {}
        own["input"] = str(data.guest_csv if role == "guest" else data.host_csv)
        own["output"] = str((output_root / party).resolve())
        args[key] = own
    return yaml.safe_dump(job, sort_keys=False)


def grant_host_data(host: Tessera, guest_id: str, data: DemoData) -> Grant:
    """The host's grant step of the example: the guest may name the host's CSV as the host's
    input (as the host, for any component). Without it the host refuses the guest's proposal."""
    return host.grant(guest_id, path=str(data.host_csv), role="host")


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise ExampleError(f"{path} is empty")
    return rows[0], rows[1:]


@dataclass(frozen=True)
class JoinedData:
    """Guest and host rows joined on id (the intersection), in guest order."""

    ids: list[str]
    labels: NDArray[np.float64]
    features: NDArray[np.float64]


def join(data: DemoData) -> JoinedData:
    g_head, g_rows = _read_csv(data.guest_csv)
    h_head, h_rows = _read_csv(data.host_csv)
    label = next((c for c in LABEL_COLUMNS if c in g_head), None)
    if label is None or g_head[0] != "id" or h_head[0] != "id":
        raise ExampleError("expected 'id' first in both CSVs and a 'label' or 'y' guest column")
    li = g_head.index(label)
    g_feats = [i for i in range(1, len(g_head)) if i != li]
    host_by_id = {row[0]: [float(v) for v in row[1:]] for row in h_rows}
    ids, labels, feats = [], [], []
    for row in g_rows:
        host = host_by_id.get(row[0])
        if host is None:
            continue
        ids.append(row[0])
        labels.append(float(row[li]))
        feats.append([float(row[i]) for i in g_feats] + host)
    return JoinedData(ids, np.asarray(labels), np.asarray(feats))


def sklearn_auc(data: DemoData) -> float:
    """scikit-learn's LogisticRegression AUC on the joined, standardised training data."""
    # scikit-learn comes with the `demo` extra, not with the platform itself
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    joined = join(data)
    x = StandardScaler().fit_transform(joined.features)
    model = LogisticRegression(max_iter=1000).fit(x, joined.labels)
    return float(roc_auc_score(joined.labels, model.predict_proba(x)[:, 1]))
