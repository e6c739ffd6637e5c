"""Every spec built directly in PyTorch and in Keras and run forward: per-layer output shapes and
parameter counts equal the checker's."""

from __future__ import annotations

import pytest

from netspec import check_file

from .conftest import ALL_SPECS


@pytest.mark.torch
@pytest.mark.parametrize("spec", ALL_SPECS, ids=lambda p: p.name)
def test_spec_matches_torch_layer_by_layer(spec):
    from .reference_torch import run_torch

    net = check_file(spec)
    measured = run_torch(net, batch=1)
    expected = [(cl.output_shape, cl.params, cl.non_trainable) for cl in net.layers]
    assert measured == expected


@pytest.mark.keras
@pytest.mark.parametrize("spec", ALL_SPECS, ids=lambda p: p.name)
def test_spec_matches_keras_layer_by_layer(spec):
    from .reference_keras import run_keras

    net = check_file(spec)
    measured = run_keras(net)
    expected = [(cl.output_shape, cl.params + cl.non_trainable) for cl in net.layers]
    assert measured == expected
