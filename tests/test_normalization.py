"""Per-channel normalisation: one value per input channel, never silently cut."""

from __future__ import annotations

import pytest

from netspec import check_file
from netspec.errors import DataError
from netspec.train.sources import load_sources, normalization

GREY = """
    name: grey
    input: [1, 8, 8]
    layers:
      - {type: flatten}
      - {name: fc, type: linear, out_features: 10}
    data: {dataset: digits%s}
"""


def test_a_one_channel_input_gets_the_average_of_the_default_statistics(write_spec):
    net = check_file(write_spec(GREY % ""))
    assert normalization(net.spec.data, 1) == ((0.449,), (0.226,))
    assert normalization(net.spec.data, 3) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def test_one_value_per_channel_is_used_as_given(write_spec):
    net = check_file(write_spec(GREY % ", mean: [0.5], std: [0.25]"))
    assert normalization(net.spec.data, 1) == ((0.5,), (0.25,))


@pytest.mark.torch
@pytest.mark.parametrize(("extra", "message"), [
    (", mean: [0.5, 0.5, 0.5]", "data.mean has 3 values but the input has 1 channel"),
    (", std: [0.2, 0.2, 0.2]", "data.std has 3 values but the input has 1 channel"),
])
def test_statistics_for_other_channels_are_refused_at_their_line(write_spec, extra, message):
    spec = write_spec(GREY % extra)
    net = check_file(spec)
    with pytest.raises(DataError) as caught:
        load_sources(net, net.spec.data)
    problem = caught.value.problems[0]
    assert problem.message == message and problem.location.line == 6
    assert "give one value per input channel" in problem.hint


def test_one_value_for_a_three_channel_input_is_refused():
    from netspec.language.spec import DataSpec

    with pytest.raises(DataError, match="data.mean has 1 value but the input has 3 channels"):
        normalization(DataSpec(mean=(0.5,)), 3)
