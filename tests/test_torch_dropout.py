"""The CPU trainer's dropout (netspec_torch.dropout): nn.Dropout's law and interface, masks drawn
with torch.rand."""

from __future__ import annotations

import pytest

from netspec import check_file

from .conftest import SPECS_DIR

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from netspec_torch.dropout import UniformMaskDropout, use_uniform_masks  # noqa: E402


@pytest.mark.parametrize("p", [0.2, 0.5, 0.9])
def test_kept_elements_are_scaled_and_kept_at_the_rate_nn_dropout_keeps(p):
    torch.manual_seed(0)
    x = torch.rand(400, 1000) + 0.5  # no zeros of its own
    out = UniformMaskDropout(p)(x)
    kept = out != 0
    assert torch.allclose(out[kept], x[kept] / (1 - p))
    # 400,000 draws: the standard error of the kept fraction is below 0.001
    assert kept.float().mean().item() == pytest.approx(1 - p, abs=0.005)


def test_gradients_flow_through_the_kept_elements_only():
    torch.manual_seed(1)
    x = torch.rand(64, 128, requires_grad=True)
    out = UniformMaskDropout(0.5)(x)
    out.sum().backward()
    kept = out.detach() != 0
    assert torch.equal(x.grad, kept.float() * 2)


def test_bfloat16_inputs_keep_their_dtype():
    out = UniformMaskDropout(0.5)(torch.ones(8, 16, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16 and set(out.unique().tolist()) <= {0.0, 2.0}


def test_evaluation_and_p_zero_leave_the_input_alone_and_p_one_drops_all():
    x = torch.rand(4, 5)
    assert UniformMaskDropout(0.5).eval()(x) is x
    assert UniformMaskDropout(0.0)(x) is x
    assert torch.equal(UniformMaskDropout(1.0)(x), torch.zeros_like(x))


def test_inplace_dropout_changes_its_input():
    x = torch.ones(32, 32)
    out = UniformMaskDropout(0.5, inplace=True)(x)
    assert out is x and 0 < int((x == 0).sum()) < x.numel()


def test_the_same_seed_draws_the_same_masks():
    x = torch.ones(16, 64)
    torch.manual_seed(7)
    first = UniformMaskDropout(0.3)(x)
    torch.manual_seed(7)
    assert torch.equal(UniformMaskDropout(0.3)(x), first)


def test_every_dropout_of_a_generated_model_is_swapped_and_its_state_dict_is_unchanged():
    from netspec.codegen.backend import get_backend

    model = get_backend("torch").load(check_file(SPECS_DIR / "alexnet-digits.yaml"))
    keys = list(model.state_dict())
    assert use_uniform_masks(model) == 2
    assert not [m for m in model.modules() if type(m) is torch.nn.Dropout]
    assert [m.p for m in model.modules() if isinstance(m, UniformMaskDropout)] == [0.5, 0.5]
    assert list(model.state_dict()) == keys


def test_a_subclass_of_nn_dropout_is_left_alone():
    class Custom(torch.nn.Dropout):
        pass

    model = torch.nn.Sequential(torch.nn.Dropout(0.1), torch.nn.Sequential(Custom(0.2), torch.nn.Dropout(0.3)))
    assert use_uniform_masks(model) == 2
    assert [type(m).__name__ for m in model.modules()][1:] == [
        "UniformMaskDropout", "Sequential", "Custom", "UniformMaskDropout"]
    assert (model[0].p, model[1][1].p) == (0.1, 0.3)
