"""The JSON Schema of the spec format (``netspec schema``), with modules, repeat, when and
``${...}`` references, so editors can check a spec as it is written."""

from __future__ import annotations

from typing import Any

from netspec.language.expressions import LARGEST
from netspec.language.modules import ModuleDefinitionFormat, ModuleUseFormat
from netspec.language.spec import NetSpec

_PARAM_REF_SCHEMA = {"type": "string", "pattern": r"^\$\{[^${}]+\}$",
                     "description": "A param or an expression of params: ${width}, ${planes * 4}, ${stride == 1}."}


def _allow_param_refs(node: Any, key: str | None = None) -> Any:
    """Any scalar may be written as ${param}; say so in the schema (except for type and name)."""
    if isinstance(node, list):
        return [_allow_param_refs(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for k, v in node.items():
        if k == "properties":
            out[k] = {name: (sub if name in ("type", "name") else _allow_param_refs(sub, name))
                      for name, sub in v.items()}
        elif k in ("$defs", "definitions"):
            out[k] = {name: _allow_param_refs(sub) for name, sub in v.items()}
        else:
            out[k] = _allow_param_refs(v) if isinstance(v, (dict, list)) else v
    if out.get("type") in ("integer", "number"):  # as the loader bounds every number (expressions.LARGEST)
        out.setdefault("maximum", LARGEST)
    scalar = out.get("type") in ("integer", "number", "boolean") or "enum" in out or "const" in out
    if scalar and key is not None:
        return {"anyOf": [out, _PARAM_REF_SCHEMA]}
    if scalar and key is None and "items" not in out:
        return {"anyOf": [out, _PARAM_REF_SCHEMA]}
    return out


def _format_schema(model) -> dict[str, Any]:
    """A module definition's or use's schema, from its model (netspec.language.modules), with
    ``${...}`` allowed wherever a number or flag goes, as an editor sees the spec."""
    schema = _allow_param_refs(model.model_json_schema())
    schema.pop("title", None)
    return schema


def json_schema() -> dict:
    """The JSON Schema of the spec format, for editors (YAML language servers) and tools."""
    schema = _allow_param_refs(NetSpec.model_json_schema())
    input_def = schema["$defs"]["InputSpec"]
    schema["$defs"]["InputSpec"] = {"anyOf": [input_def, input_def["properties"]["shape"]],
                                    "description": input_def.get("description", "")}
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "netspec network spec"
    props = schema.setdefault("properties", {})
    props["extends"] = {"type": "string", "description": "Path of a base spec this variant overrides."}
    props["patch"] = {"type": "object", "description": "Layer name -> fields to change in the base.",
                      "additionalProperties": {"type": "object"}}
    props["remove"] = {"type": "array", "items": {"type": "string"}, "description": "Base layers to delete."}
    props["replace"] = {"type": "object", "description": "Base layer name -> the layer (or list of layers) "
                        "that takes its place.", "additionalProperties": {"type": ["object", "array"]}}
    props["insert"] = {"type": "array", "description": "Layers to add before or after a base layer.",
                       "items": {"type": "object", "required": ["layers"],
                                 "properties": {"before": {"type": "string"}, "after": {"type": "string"},
                                                "layers": {"type": "array", "items": {"type": "object"}}}}}
    _add_modules(schema)
    # a variant inherits its base's required keys, so require them only of specs without 'extends';
    # its module definitions merge into the base's, so they too may leave out what the base gives
    required = schema.pop("required", [])
    definition = schema["properties"]["modules"]["additionalProperties"]
    definition_required = definition.pop("required", [])
    schema["if"] = {"not": {"required": ["extends"]}}
    schema["then"] = {"required": required,
                      "properties": {"modules": {"additionalProperties": {"required": definition_required}}}}
    return schema


def _add_modules(schema: dict) -> None:
    """Modules (netspec.language.modules): their definitions under ``modules:`` and uses of them among
    the layers, from the models that validate them, and ``when:`` on any layer. They are expanded
    before the network is validated, so NetSpec's own schema does not know them."""
    when = {"anyOf": [{"type": "boolean"}, _PARAM_REF_SCHEMA],
            "description": "false leaves the layer out; whoever takes it takes its input instead."}
    defs = schema["$defs"]
    for definition in defs.values():
        properties = definition.get("properties", {})
        if "type" in properties and "const" in properties["type"]:  # a layer type of the catalogue
            properties["when"] = when
            # unnamed layers are numbered (a sequential module's) or named after their type
            definition["required"] = [key for key in definition.get("required", []) if key != "name"]
    defs["ModuleUse"] = _format_schema(ModuleUseFormat)
    defs["ModuleUse"]["properties"]["when"] = when  # validated with the layers' own 'when'
    spec_layers = schema["properties"]["layers"]["anyOf"][0]
    item = {"anyOf": [spec_layers["items"], {"$ref": "#/$defs/ModuleUse"}]}
    spec_layers["items"] = item
    definition = _format_schema(ModuleDefinitionFormat)
    definition["properties"]["layers"]["items"] = item
    schema["properties"]["modules"] = {
        "type": "object", "description": "Named sub-networks with params, used among the layers with 'module:'.",
        "propertyNames": {"pattern": r"^[A-Za-z][A-Za-z0-9_]*$"}, "additionalProperties": definition}

