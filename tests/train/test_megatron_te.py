"""The Transformer Engine path's CPU-checkable parts: when TE layers are chosen, and the THD inputs built from the
packing stage's boundaries. TE cannot install without CUDA; the layers themselves run in tests/gpu and
tools/gpu-check.sh.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("megatron.core")

from hpc_instruct.train.batching import StepData, load_rows  # noqa: E402
from hpc_instruct.train.megatron import parallel, te  # noqa: E402
from hpc_instruct.train.schedule import BatchPlan  # noqa: E402


@pytest.mark.parametrize("importable", [True, False])
def test_auto_takes_te_only_when_it_imports_on_a_gpu(monkeypatch: pytest.MonkeyPatch, importable: bool) -> None:
    monkeypatch.setattr(te, "te_importable", lambda: importable)
    assert te.use_te("auto", cuda=True) is importable
    assert te.use_te("auto", cuda=False) is False
    assert te.use_te("local", cuda=True) is False
    with pytest.raises(RuntimeError, match="Transformer Engine"):
        te.use_te("te", cuda=False)  # demanded: never a silent fall-back
    if importable:
        assert te.use_te("te", cuda=True) is True
    else:
        with pytest.raises(RuntimeError, match="Transformer Engine"):
            te.use_te("te", cuda=True)


def test_te_does_not_import_here() -> None:
    """Pins this machine's state, so the auto choice above is what runs in the CPU tests."""
    assert not te.te_importable()


def test_thd_params_come_from_the_stored_boundaries(prepared_study) -> None:
    data = StepData(load_rows(prepared_study.packed), BatchPlan(4, 2, 1), seed=0, pad_id=0)
    for step in range(data.steps_per_epoch):
        for mb in data.step(step, 0).micro_batches:
            params = te.thd_params(mb["cu_seqlens"])
            lengths = (mb["cu_seqlens"][1:] - mb["cu_seqlens"][:-1]).tolist()
            assert params.qkv_format == "thd" and params.cu_seqlens_q.dtype == torch.int32
            assert torch.equal(params.cu_seqlens_q, mb["cu_seqlens"]) and params.cu_seqlens_kv is params.cu_seqlens_q
            assert params.max_seqlen_q == params.max_seqlen_kv == max(lengths)
            # Batches made elsewhere (evaluation) derive the same boundaries from their segment ids.
            assert torch.equal(te.cu_seqlens_from_segments(mb["segment_ids"]), mb["cu_seqlens"])


@pytest.mark.parametrize("cu", [[0, 5, 5, 9], [1, 4], [0]])
def test_bad_boundaries_are_refused(cu: list[int]) -> None:
    with pytest.raises(ValueError, match="cu_seqlens"):
        te.thd_params(torch.tensor(cu, dtype=torch.int32))


def test_thd_inputs_lay_the_rows_end_to_end_without_a_mask() -> None:
    segments = torch.tensor([[0, 0, 0, 1, 1, -1], [0, 0, 0, 0, 0, 0]])
    batch = {"input_ids": torch.arange(12).reshape(2, 6), "segment_ids": segments}
    args = parallel.model_inputs(batch, thd=True)
    assert args["input_ids"].tolist() == [list(range(12))] and args["attention_mask"] is None
    assert args["packed_seq_params"].cu_seqlens_q.tolist() == [0, 3, 5, 6, 12]
    assert args["packed_seq_params"].max_seqlen_q == 6
    dense = parallel.model_inputs(batch)  # local layers: the rows stay rows, with the dense mask
    assert dense["attention_mask"].shape == (2, 1, 6, 6) and "packed_seq_params" not in dense
