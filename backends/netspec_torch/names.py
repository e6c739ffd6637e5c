"""The names the generated PyTorch code binds, which a spec's names must not take. Static sets, so
that checking a spec and emitting source need no torch (tests compare them with the installed
torch); netspec's core collects them through the entry-point group "netspec.reserved_names"."""

from __future__ import annotations

from netspec_torch.imports import HELPER_CLASSES

# bound at module level in the generated file: a layer, spec or module named so would hide it
MODULE_NAMES = {"torch": "the torch package", "F": "torch.nn.functional", "nn": "torch.nn",
                "OrderedDict": "collections.OrderedDict",
                **{name: "a helper class of the torch code" for name in HELPER_CLASSES}}

# The public attributes of torch.nn.Module, which the generated class inherits: a layer or block
# named 'forward' or 'training' would replace them.
MODULE_ATTRIBUTES = frozenset({
    "T_destination", "add_module", "apply", "bfloat16", "buffers", "call_super_init", "children", "compile", "cpu",
    "cuda", "double", "dump_patches", "eval", "extra_repr", "float", "forward", "get_buffer", "get_extra_state",
    "get_parameter", "get_submodule", "half", "ipu", "load_state_dict", "modules", "mtia", "named_buffers",
    "named_children", "named_modules", "named_parameters", "parameters", "register_backward_hook",
    "register_buffer", "register_forward_hook", "register_forward_pre_hook", "register_full_backward_hook",
    "register_full_backward_pre_hook", "register_load_state_dict_post_hook", "register_load_state_dict_pre_hook",
    "register_module", "register_parameter", "register_state_dict_post_hook", "register_state_dict_pre_hook",
    "requires_grad_", "set_extra_state", "set_submodule", "share_memory", "state_dict", "to", "to_empty", "train",
    "training", "type", "xpu", "zero_grad"})
ATTRIBUTE_NAMES = {name: "an attribute the generated torch class inherits from torch.nn.Module"
                   for name in MODULE_ATTRIBUTES}
