"""Running a netspec torch model layer by layer, for conformance tests."""

from __future__ import annotations

import functools
import types

import torch


@functools.cache
def activation_module(name: str):
    """The torch backend's own module for an activation (its one-layer catalogue example), to
    apply a layer's `activation:` shorthand to the layer's hooked output."""
    from netspec.codegen.backend import get_backend

    from .test_layers import single_layer_net

    return get_backend("torch").load(single_layer_net(name, 0)).eval()


def layer_outputs(backend, net, model, x):
    """Every spec layer's output (after its activation shorthand), and the model's output.

    Layers that are modules called on their input are read with forward hooks on the modules the
    torch plan says hold them; merges, learned tensors and attention, which forward() applies by an
    expression, by evaluating the expression the backend writes for them on the values their
    inputs had (``self`` then stands for the module around the layer)."""
    from netspec_torch.codegen import called_as_module, layer_call

    plan = backend.plan(net)
    outputs: dict[str, torch.Tensor] = {}
    handles = []
    for cl in net.layers:
        if cl.name not in plan.module_paths or not called_as_module(cl):
            continue

        def hook(_module, _inputs, output, cl=cl):
            activation = getattr(cl.layer, "activation", None)
            outputs[cl.name] = (activation_module(activation)(output) if activation else output).detach()

        handles.append(model.get_submodule(plan.module_paths[cl.name]).register_forward_hook(hook))
    try:
        with torch.no_grad():
            y = model.eval()(x)
    finally:
        for handle in handles:
            handle.remove()
    def variable(name: str) -> str:  # a scoped layer (layer1.0.add, block1-0.f) as a Python name
        return "x" if name == "input" else "v_" + name.replace(".", "__").replace("-", "_")

    for cl in net.layers:
        if cl.name not in outputs:
            args = [variable(name) for name in cl.inputs]
            values = {"x": x, **{variable(name): value for name, value in outputs.items()}}
            if cl.name in plan.module_paths:  # applied by an expression of `self.layer`
                expression = layer_call(cl, args, local="layer")
                values["self"] = types.SimpleNamespace(layer=attribute(model, plan.module_paths[cl.name]))
            else:
                expression = layer_call(cl, args, merge=True)
            with torch.no_grad():
                outputs[cl.name] = eval(expression, {"torch": torch}, values)  # noqa: S307
    return outputs, y


def attribute(model: torch.nn.Module, path: str):
    """The module or parameter at a state-dict path (``features.1.0.layer_scale``)."""
    return functools.reduce(getattr, path.split("."), model)


def per_layer(backend, net, model, x):
    """Per spec layer: (output shape without batch, trainable params, buffers), measured in torch."""
    plan = backend.plan(net)
    outputs, y = layer_outputs(backend, net, model, x)
    measured = []
    for cl in net.layers:
        params = buffers = 0
        if cl.name in plan.module_paths:
            module = attribute(model, plan.module_paths[cl.name])
            if isinstance(module, torch.nn.Parameter):  # a learned tensor
                measured.append((tuple(outputs[cl.name].shape[1:]), module.numel(), 0))
                continue
            params = sum(p.numel() for p in module.parameters())
            # buffers only PyTorch keeps (batch norm's step counter, Swin's relative position index) are
            # not the layer's parameters: Keras computes them or goes without
            buffers = sum(b.numel() for name, b in module.named_buffers()
                          if name.rsplit(".", 1)[-1] not in cl.layer.torch_only_buffers)
        measured.append((tuple(outputs[cl.name].shape[1:]), params, buffers))
    return measured, y


def calibrated_batchnorm(model: torch.nn.Module, input_shape: tuple[int, ...], batch: int = 4) -> torch.nn.Module:
    """Batch norm as in a trained network, from the global seed: random per-channel scales and
    shifts, running statistics measured on a random batch, then perturbed a little; the model in
    eval mode.

    Statistics drawn independently of the data (as this helper once did) leave a deep network's
    output almost independent of its input, so ReLU6 in place of ReLU went unnoticed. Measured
    statistics keep every layer's output spread out, and scales up to 4 push activations past 6."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        # what starts constant would hide the layers it scales: ConvNeXt's layer_scale of 1e-6 leaves
        # every block's branch out of the output, a layer norm's unit scale hides a mistaken eps, and
        # ViT's zero head makes every output zero, Swin's small position bias hides a wrong window
        for name, tensor in model.named_parameters():
            if name.endswith("layer_scale"):
                tensor.uniform_(0.5, 1.5)
            elif name.endswith(("class_token", "pos_embedding", "relative_position_bias_table")):
                tensor.normal_()
            elif not tensor.any():  # zero at the start (ViT's classifier head): the output would be zero
                tensor.normal_(0.0, 0.02)
        for layer_norm in [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]:
            layer_norm.weight.uniform_(0.5, 2.0)
            layer_norm.bias.normal_(0.0, 0.5)
        for norm in norms:
            norm.weight.uniform_(0.5, 4.0)
            norm.bias.normal_(0.0, 0.5)
            norm.reset_running_stats()
            norm.momentum = None  # a cumulative average: after one batch, that batch's statistics
        model.train()(torch.randn(batch, *input_shape))
        for norm in norms:
            norm.momentum = 0.1
            norm.running_mean.add_(0.1 * norm.running_var.sqrt() * torch.randn_like(norm.running_mean))
            norm.running_var.mul_(torch.empty_like(norm.running_var).uniform_(0.8, 1.25))
    return model.eval()


def input_dependence(y: torch.Tensor) -> float:
    """How much a batch's outputs differ between its samples: the part of the output that the
    input decides (an equality test whose tolerance exceeds it compares nothing)."""
    return float((y - y.mean(dim=0, keepdim=True)).abs().max())
