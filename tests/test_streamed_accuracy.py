"""accuracy's passes on the CPU stream their weights (runtime/streaming.py): the same numbers and verdicts as
whole models, one block held at a time when the budget allows no more, planted faults still found at their
block, and a memory bound too small for one block refused in one line."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from faults import FAULTS, run_fault
from voxport.cli import main
from voxport.models.registry import load_model
from voxport.runtime.streaming import Streaming, streamed_unit
from voxport.validate.accuracy import run_accuracy

ONE_BLOCK = Streaming(held_bytes=0)  # the budget of the largest block alone: every other block read again
QUICK = {"example_names": ["english"], "locate_ops": False, "progress": lambda message: None}


@pytest.mark.parametrize("family", ["csm", "covo"])
def test_streamed_passes_give_the_whole_models_numbers(family, request):
    source = str(request.getfixturevalue(f"tiny_{family}_dir"))
    whole = run_accuracy(source, torch.device("cpu"), torch.bfloat16, streaming=None, **QUICK)
    streamed = run_accuracy(source, torch.device("cpu"), torch.bfloat16, streaming=ONE_BLOCK, **QUICK)
    assert streamed["verdict"] == whole["verdict"] == "PASS"
    assert [block["module"] for block in streamed["blocks"]] == [block["module"] for block in whole["blocks"]]
    for ours, theirs in zip(streamed["blocks"], whole["blocks"]):
        assert ours["verdict"] == theirs["verdict"], ours["module"]
        for field in ("relative_error", "max_relative_error", "benchmark_relative_error"):
            assert ours[field] == pytest.approx(theirs[field], rel=1e-5, abs=1e-9), (ours["module"], field)
    for key, entry in whole["outputs"].items():
        assert streamed["outputs"][key]["relative_error"] == pytest.approx(entry["relative_error"], rel=1e-5)


@pytest.mark.parametrize("family", ["csm", "covo"])
def test_one_block_is_held_at_a_time(family, request):
    """With the budget of the largest block, a teacher-forced pass leaves at most that many bytes of blocks in
    memory, and every streamed block's parameters are on the meta device when it is not held."""
    source = request.getfixturevalue(f"tiny_{family}_dir")
    model = load_model(source, torch.device("cpu"), torch.float32, streaming=ONE_BLOCK)
    example = next(iter(model.accuracy_examples().values()))
    model.forward_logits(example)
    units = [module for _, module in model.named_modules() if streamed_unit(module) is not None]
    weights = streamed_unit(units[0])[0]
    held = [unit for unit in weights.entries if unit in weights.units]
    largest = max(weights._bytes(names) for names in weights.units.values())
    assert weights.held_bytes == largest
    assert sum(weights.entries[unit].nbytes for unit in held) <= largest, held
    cold = [module for module in units if streamed_unit(module)[1] not in held]
    assert len(cold) >= 2 and all(p.is_meta for module in cold for p in module.parameters())


def test_the_cached_rounds_read_each_llm_layer_once(tiny_covo_dir):
    """Where the LLM streams, the generation stage's known replies run layer-major: each layer is read once for
    every token of both rounds (step by step it was read again for each token, the head evicting it)."""
    model = load_model(tiny_covo_dir, torch.device("cpu"), torch.float32, streaming=ONE_BLOCK)
    stage = next(
        stage for stage in model.accuracy_stages(model.accuracy_examples()["english"]) if stage.name == "generation"
    )
    weights = streamed_unit(model.network.llm.model.layers[0])[0]
    weights.held_bytes = weights._bytes(weights.units["llm.model.layers.0"])  # one LLM layer at a time
    weights.entries.clear()
    reads: Counter[str] = Counter()
    admit = weights._admit

    def counted(key, *args):
        reads[key] += 1
        return admit(key, *args)

    weights._admit = counted
    logits = stage.run(model, stage.inputs)
    layers = {unit: count for unit, count in reads.items() if unit.startswith("llm.model.layers.")}
    assert logits.shape[0] > 10  # tokens that each ran a step
    assert layers == dict.fromkeys([f"llm.model.layers.{i}" for i in range(len(model.network.llm.model.layers))], 1)


def fault(name: str, family: str):
    return next(f for f in FAULTS if f.name == name and f.family == family)


@pytest.mark.parametrize(
    "planted",
    [
        fault("weights LLM layer", "covo"),
        fault("KV cache written one row late", "covo"),
        fault("weights backbone layer", "csm"),
        fault("KV cache written one row late", "csm"),
    ],
    ids=lambda value: f"{value.family}-{value.name}",
)
def test_a_planted_fault_is_found_with_one_block_held(planted, request, tmp_path):
    clean = request.getfixturevalue(f"tiny_{planted.family}_dir")
    result = run_fault(
        planted, clean, tmp_path, torch.bfloat16, example_names=["english"], locate_ops=False, streaming=ONE_BLOCK
    )
    assert result["verdict"] == "FAIL" and result["first_drift_module"] == planted.block


def test_a_memory_bound_below_one_block_is_one_error_line(tiny_covo_dir, capsys):
    code = main(["accuracy", "--model", str(tiny_covo_dir), "--dtype", "bfloat16", "--max-memory", "0.01"])
    lines = capsys.readouterr().err.strip().splitlines()  # progress lines, then the error
    errors = [line for line in lines if "error" in line]
    assert code == 1 and errors == lines[-1:] and "Traceback" not in "\n".join(lines), lines
    assert errors[0].startswith("voxport: error: --max-memory 0.01: expected at least ")
    assert "largest block audio_adapter.downsample_layers" in errors[0]
