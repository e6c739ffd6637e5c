"""pydantic's validation errors as located, readable problems: the YAML line of each, and a
did-you-mean hint for a misspelt key or type."""

from __future__ import annotations

import re
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import (
    BaseModel,
    ValidationError,
)

from netspec.errors import Problem, closest_name, did_you_mean
from netspec.language.loader import LoadedSpec
from netspec.layers import LAYER_REGISTRY, Layer


def problems_from_validation(exc: ValidationError, loaded: LoadedSpec, root: type[BaseModel]) -> list[Problem]:
    """pydantic's errors validating ``loaded`` as ``root``, each at its YAML location."""
    problems: list[Problem] = []
    seen: set[tuple] = set()
    errors = [(err, *_data_path(err["loc"], loaded.data, root)) for err in exc.errors(include_url=False)]
    # a misspelt required key is one mistake, not two: its "unknown key" error (which suggests the
    # right spelling) stands, and the "missing required key" error for that spelling is dropped
    misspelt = {(path[:-1], _closest_field(str(path[-1]), model))
                for err, path, model, _ in errors if err["type"] == "extra_forbidden" and path}
    for err, path, model, layer_name in errors:
        if err["type"] == "missing" and (path[:-1], str(err["loc"][-1])) in misspelt:
            continue
        if err["type"] == "union_tag_invalid":
            path = (*path, "type")
        message, hint = _describe(err, path, model)
        key = (path, message)
        if key in seen:
            continue
        seen.add(key)
        problems.append(Problem(message, loaded.location(path), layer=layer_name, hint=hint))
    return problems


def _closest_field(key: str, model: type[BaseModel] | None) -> str | None:
    if model is None:
        return None
    return closest_name(key, list(model.model_fields), getattr(model, "synonyms", {}))


def _data_path(loc: tuple, data: Any, root: type[BaseModel]) -> tuple[tuple, type[BaseModel] | None, str | None]:
    """Map pydantic's error location onto the document.

    pydantic's ``loc`` mixes document keys with its own steps (the discriminator tag of a layer,
    validator names); keep the former, and track which model class and which layer the error is in.
    """
    path: list[Any] = []
    node = data
    model: type[BaseModel] | None = root
    owner = model  # the model whose field the error is about
    layer_name = None
    for part in loc:
        if isinstance(node, dict) and part in node:
            owner = model
            model = _field_model(model, part) if model is not None else None
            node = node[part]
            path.append(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
            path.append(part)
        elif isinstance(node, dict) and node.get("type") == part:
            continue  # the discriminator tag: the layer's class was picked up below
        elif isinstance(node, dict) and model is not None and part in model.model_fields:
            owner = model
            path.append(part)  # a key absent from the document ('missing')
            node = None
        else:
            node = None  # a pydantic-internal step
        if isinstance(node, dict) and "type" in node:
            if isinstance(node.get("name"), str):
                layer_name = node["name"]
            model = LAYER_REGISTRY.get(node["type"]) if isinstance(node["type"], str) else None
            owner = model
    return tuple(path), owner, layer_name


def _field_model(model: type[BaseModel], field_name: str) -> type[BaseModel] | None:
    field = model.model_fields.get(field_name)
    if field is None:
        return None
    return _first_model(field.annotation)


def _first_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _first_model(arg)
        if found is not None and found is not Layer and not issubclass(found, Layer):
            return found
    return None


_PYDANTIC_PREFIX = re.compile(r"^(Value error|Assertion failed), ")


def _describe(err: Mapping[str, Any], path: tuple, model: type[BaseModel] | None) -> tuple[str, str | None]:
    kind = err["type"]
    key = path[-1] if path and isinstance(path[-1], str) else None
    where = f"'{key}'" if key else "value"
    got = err.get("input")
    ctx = err.get("ctx") or {}
    fields = list(model.model_fields) if model is not None else []
    synonyms = getattr(model, "synonyms", {}) if model is not None else {}

    if kind == "extra_forbidden":
        hint = did_you_mean(str(key), fields, synonyms)
        allowed = f"allowed keys: {', '.join(fields)}" if fields else None
        return f"unknown key '{key}'", hint or allowed
    if kind == "missing":
        missing = err["loc"][-1]
        return f"missing required key '{missing}'", _missing_hint(str(missing))
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        types_ = sorted(LAYER_REGISTRY)
        if kind == "union_tag_not_found":
            return "a layer needs a 'type'", f"one of: {', '.join(types_)}"
        tag = ctx.get("tag", got)
        hint = did_you_mean(str(tag), types_, _type_synonyms()) or f"known types: {', '.join(types_)}"
        return f"unknown layer type '{tag}'", hint
    if kind == "literal_error":
        return f"{where} is {got!r}; expected {ctx.get('expected')}", None
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        bound = {"greater_than": "more than", "greater_than_equal": "at least",
                 "less_than": "less than", "less_than_equal": "at most"}[kind]
        limit = next(iter(ctx.values()), None)
        return f"{where} must be {bound} {limit}, got {got!r}", None
    if kind == "string_pattern_mismatch":
        return f"{where} {got!r} is not a valid name", "use letters, digits, '_', '-' or '.', starting with a letter"
    if kind in ("int_type", "float_type", "bool_type", "string_type", "dict_type", "list_type",
                "model_type", "tuple_type"):
        expected = {"int_type": "an integer", "float_type": "a number", "bool_type": "true or false",
                    "string_type": "text", "dict_type": "a mapping", "list_type": "a list",
                    "model_type": "a mapping", "tuple_type": "a list"}[kind]
        return f"{where} must be {expected}, got {got!r}", None
    if kind == "too_short":
        return f"{where} must not be empty", None
    message = _PYDANTIC_PREFIX.sub("", err["msg"])
    return (f"{where}: {message}" if key else message), None


def _type_synonyms() -> dict[str, str]:
    """What other frameworks call each type ('dense' -> 'linear'), as the layer classes say."""
    return {synonym: kind for kind, cls in LAYER_REGISTRY.items() for synonym in cls.type_synonyms}


def _missing_hint(key: str) -> str | None:
    examples = {
        "name": "every spec and block needs a name, e.g. name: alexnet",
        "input": "e.g. input: [3, 224, 224]",
        "out_channels": "the number of filters, e.g. out_channels: 96",
        "kernel_size": "e.g. kernel_size: 3",
        "out_features": "the number of units, e.g. out_features: 4096",
        "output_size": "e.g. output_size: 6",
    }
    return examples.get(key)


