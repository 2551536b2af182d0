"""Qwen3-VL Sampling and Qwen3-VL Video Options: what they carry and how Generate, Grounding and Batch Caption use it."""

from __future__ import annotations

import pytest
import torch

from qwen3vl_pack import NODE_CLASS_MAPPINGS
from qwen3vl_pack.nodes.caption import Qwen3VLBatchCaption
from qwen3vl_pack.nodes.generate import Qwen3VLGenerate
from qwen3vl_pack.nodes.grounding import Qwen3VLGrounding
from qwen3vl_pack.nodes.option_nodes import Qwen3VLSampling, Qwen3VLVideoOptions
from qwen3vl_pack.tests.workflow_check import pack_specs, widget_inputs
from qwen3vl_pack.utils.errors import InputError
from qwen3vl_pack.utils.node_options import SamplingSettings, VideoOptions, run_options

SPECS = pack_specs(NODE_CLASS_MAPPINGS)


def _sampling(**kw):
    args = dict(temperature=0.3, top_p=0.9, top_k=7, repetition_penalty=1.1, presence_penalty=0.5, seed=11)
    args.update(kw)
    return Qwen3VLSampling().settings(**args)[0]


@pytest.fixture()
def generate_kwargs(dense, monkeypatch):
    """The keyword arguments of every model.generate call (the real generate still runs)."""
    seen = []
    real = type(dense.model).generate

    def spy(self, *args, **kwargs):
        seen.append(kwargs)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(type(dense.model), "generate", spy)
    return seen


@pytest.mark.parametrize("node_id", ["Qwen3VL_Generate", "Qwen3VL_Grounding", "Qwen3VL_BatchCaption"])
def test_run_nodes_are_lean(node_id):
    """At most 8 widgets on screen (a seed's control widget counts); experts plug in the option nodes. The Qwen3.5
    thinking switch (the last optional input, issue 18) is the one widget over that budget on Batch Caption."""
    widgets = [name for name, _, _ in widget_inputs(SPECS[node_id])]
    assert widgets[-1] == "thinking"
    assert len(widgets) - 1 <= 8, widgets
    assert not {"seed", "temperature", "top_p", "top_k", "sample_fps", "max_frames"} & set(widgets)


def test_sampling_node_checks_and_carries_its_values():
    assert _sampling() == SamplingSettings(0.3, 0.9, 7, 1.1, 0.5, 11)
    with pytest.raises(InputError, match="^temperature: "):
        _sampling(temperature=0.0)


def test_run_options_preset_alone_or_replaced_by_the_sampling_node():
    vl = run_options("VL", 64)
    assert (vl.preset, vl.temperature, vl.top_k, vl.seed) == ("VL", 0.7, 20, 0)
    custom = run_options("Greedy", 64, _sampling())
    assert custom.do_sample and (custom.temperature, custom.top_p, custom.top_k, custom.seed) == (0.3, 0.9, 7, 11)
    assert (custom.repetition_penalty, custom.presence_penalty, custom.max_new_tokens) == (1.1, 0.5, 64)


def test_the_sampling_node_replaces_the_preset_of_all_three_nodes(dense, generate_kwargs):
    image = torch.rand(1, 64, 64, 3)
    settings = _sampling()
    Qwen3VLGenerate().generate(dense, "Describe.", "Greedy", 4, image=image, sampling=settings)
    Qwen3VLGrounding().ground(dense, image, "cat", "boxes", 4, "Greedy", sampling=settings)
    Qwen3VLBatchCaption().caption([dense], [image], ["short"], [1], ["Greedy"], [4], [""], [""], sampling=[settings])
    assert len(generate_kwargs) == 3
    for kw in generate_kwargs:
        assert kw["do_sample"] is True and (kw["temperature"], kw["top_p"], kw["top_k"]) == (0.3, 0.9, 7)
        assert kw["repetition_penalty"] == 1.1
    Qwen3VLGenerate().generate(dense, "Describe.", "Greedy", 4, image=image)  # unplugged: the preset again
    assert generate_kwargs[-1]["do_sample"] is False


def test_seed_comes_from_the_sampling_node(dense):
    image = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(0))
    node = Qwen3VLGenerate()

    def run(seed):
        return node.generate(dense, "Describe.", "VL", 20, image=image, sampling=_sampling(temperature=1.5, seed=seed))

    assert run(5)[0] == run(5)[0]
    assert len({run(s)[0] for s in range(1, 6)}) > 1
    info = run(5)[2]
    assert "seed 5" in info and "temperature 1.5" in info


def test_video_options_node_sets_the_frames(dense):
    clip = torch.rand(60, 32, 32, 3, generator=torch.Generator().manual_seed(1))  # 2 s at 30 fps
    node = Qwen3VLGenerate()
    default = node.generate(dense, "What happens?", "Greedy", 2, video=clip, video_fps=30.0)[2]
    options = Qwen3VLVideoOptions().options(8.0, 8, 64)[0]
    assert options == VideoOptions(8.0, 8, 64)
    more = node.generate(dense, "What happens?", "Greedy", 2, video=clip, video_fps=30.0, video_options=options)[2]
    assert "video: 4 of 60 frames" in default  # 2 fps over 2 s
    assert "video: 8 of 60 frames" in more  # 8 fps, capped at 8 frames
