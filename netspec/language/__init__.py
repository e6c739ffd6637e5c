"""The spec language: located YAML, extends and --set, ${params} and expressions, modules, the
pydantic models, the JSON Schema, packaged specs."""
