"""Running a netspec torch model layer by layer, for conformance tests."""

from __future__ import annotations

import torch


def per_layer(backend, net, model, x):
    """Per spec layer: (output shape without batch, trainable params, buffers), measured with
    forward hooks on the modules the torch plan says hold each layer."""
    plan = backend.plan(net)
    shapes: dict[str, tuple] = {}
    handles = []
    for cl in net.layers:
        module = model.get_submodule(plan.module_paths[cl.name])

        def hook(_module, _inputs, output, name=cl.name):
            shapes[name] = tuple(output.shape[1:])

        handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            y = model.eval()(x)
    finally:
        for handle in handles:
            handle.remove()
    measured = []
    for cl in net.layers:
        module = model.get_submodule(plan.module_paths[cl.name])
        params = sum(p.numel() for p in module.parameters())
        buffers = sum(b.numel() for name, b in module.named_buffers() if not name.endswith("num_batches_tracked"))
        measured.append((shapes[cl.name], params, buffers))
    return measured, y
