"""A drawn mixture on disk: `mixtures/<id>/{samples.jsonl, manifest.json, COMPLETE}`, written atomically.

The folder is built under a temporary name next to its final place and renamed into it in one step, so a
reader never sees half a mixture, and two processes materialising the same mixture at once both end up with
the one complete folder. `COMPLETE` records the sha256 of the other two files; an existing folder is checked
against it and reused (materialising the same spec twice is a no-op), a damaged one is reported, never
silently rewritten.

`samples.jsonl` holds the DoIT record of every sample (plus its `uid`): curated abilities sorted by key, each
in its nested order, then the synthetic draw. `manifest.json` is meant to be read by people: the spec, and per
pool what was requested, what the pool had, what was taken (uids in order), the source file and its sha256.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpc_instruct.data.doit_reader import SYNTHETIC, DoitData
from hpc_instruct.data.mixtures import MIXTURE_FORMAT, MixtureError, MixturePlan, MixtureSpec, plan_mixture
from hpc_instruct.data.records import TRAIN, DataError, Sample, dumps_record, parse_jsonl

SAMPLES_FILE = "samples.jsonl"
MANIFEST_FILE = "manifest.json"
COMPLETE_FILE = "COMPLETE"


@dataclass(frozen=True)
class Mixture:
    """A complete mixture folder: its id, where it is, its manifest, and whether this call wrote it."""

    mixture_id: str
    path: Path
    manifest: dict[str, Any]
    created: bool

    @property
    def samples_path(self) -> Path:
        return self.path / SAMPLES_FILE

    @property
    def manifest_sha256(self) -> str:
        """What a trial id hashes: the manifest's bytes (it pins the spec, the uids and the source files)."""
        return _sha256(self.path / MANIFEST_FILE)


def build_manifest(plan: MixturePlan, data: DoitData) -> dict[str, Any]:
    """The human-readable record of a plan (no absolute paths, so it is the same on every machine)."""
    pools: dict[str, Any] = {}
    for d in plan.draws:
        split = SYNTHETIC if d.pool == SYNTHETIC else plan.spec.pool
        source = data.file_for(d.pool, split)
        pools[d.pool] = {
            "amount": d.amount,
            "requested": d.requested,
            "available": d.available,
            "taken": len(d.taken),
            "capped": d.capped,
            "seed": plan.spec.seed,
            "source": {"path": source.path, "sha256": source.sha256} if source else None,
            "pool_fingerprint": plan.fingerprints[d.pool],
            "uids": [s.uid for s in d.taken],
        }
    curated = sum(len(d.taken) for d in plan.draws if d.pool != SYNTHETIC)
    synthetic = sum(len(d.taken) for d in plan.draws if d.pool == SYNTHETIC)
    return {
        "format": MIXTURE_FORMAT,
        "mixture_id": plan.mixture_id,
        "spec": plan.spec.to_dict(),
        "spec_hash": plan.spec.content_hash,
        "totals": {"curated": curated, "synthetic": synthetic, "samples": curated + synthetic,
                   "abilities": sum(1 for d in plan.draws if d.pool != SYNTHETIC and d.taken)},
        "pools": pools,
    }


def materialise_mixture(spec: MixtureSpec | MixturePlan, data: DoitData, mixtures_dir: str | Path) -> Mixture:
    """Write the mixture to `mixtures_dir/<id>/` unless a complete copy is there already; return it."""
    plan = spec if isinstance(spec, MixturePlan) else plan_mixture(spec, data)
    mixtures_dir = Path(mixtures_dir)
    final = mixtures_dir / plan.mixture_id
    if final.exists():
        return _existing(final, plan.mixture_id)
    mixtures_dir.mkdir(parents=True, exist_ok=True)
    tmp = mixtures_dir / f".tmp-{plan.mixture_id}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        digest = hashlib.sha256()
        with open(tmp / SAMPLES_FILE, "wb") as f:
            for s in plan.samples:
                line = (dumps_record(s.to_record()) + "\n").encode("utf-8")
                digest.update(line)
                f.write(line)
            f.flush()
            os.fsync(f.fileno())
        manifest = build_manifest(plan, data)
        manifest["files"] = {SAMPLES_FILE: {"sha256": digest.hexdigest(), "records": len(plan.samples)}}
        manifest_bytes = (json.dumps(manifest, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
        _write(tmp / MANIFEST_FILE, manifest_bytes)
        marker = {SAMPLES_FILE: digest.hexdigest(), MANIFEST_FILE: hashlib.sha256(manifest_bytes).hexdigest()}
        _write(tmp / COMPLETE_FILE, (json.dumps(marker, indent=2) + "\n").encode())
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process finished first: use its copy
            return _existing(final, plan.mixture_id)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Mixture(plan.mixture_id, final, manifest, created=True)


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def verify_mixture(path: str | Path) -> dict[str, Any]:
    """Check a mixture folder against its COMPLETE marker; return its manifest or raise MixtureError."""
    path = Path(path)
    marker_path = path / COMPLETE_FILE
    if not marker_path.is_file():
        raise MixtureError(f"{path} is not a complete mixture (no {COMPLETE_FILE} marker); delete it and "
                           "materialise again")
    marker = json.loads(marker_path.read_text())
    for name, expected in marker.items():
        if not (path / name).is_file() or _sha256(path / name) != expected:
            raise MixtureError(f"{path / name} does not match the hash in {COMPLETE_FILE} (edited or damaged); "
                               "delete the folder and materialise again")
    return json.loads((path / MANIFEST_FILE).read_text(encoding="utf-8"))


def _existing(final: Path, mixture_id: str) -> Mixture:
    manifest = verify_mixture(final)
    if manifest.get("mixture_id") != mixture_id:
        raise MixtureError(f"{final} holds mixture {manifest.get('mixture_id')!r}, not {mixture_id!r}")
    return Mixture(mixture_id, final, manifest, created=False)


def read_mixture(path: str | Path) -> tuple[dict[str, Any], tuple[Sample, ...]]:
    """Verify and load a mixture folder: its manifest and its samples (uids checked against the manifest)."""
    path = Path(path)
    manifest = verify_mixture(path)
    samples, issues = parse_jsonl((path / SAMPLES_FILE).read_bytes(), path=str(path / SAMPLES_FILE),
                                  split="mixture", purpose=TRAIN, expected_ability=None)
    if issues:
        raise DataError(issues, context=str(path))
    expected = [uid for pool in manifest["pools"].values() for uid in pool["uids"]]
    if [s.uid for s in samples] != expected:
        raise MixtureError(f"{path / SAMPLES_FILE} does not hold the samples its manifest lists")
    return manifest, tuple(samples)
