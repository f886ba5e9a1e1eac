"""The base of every response model of the API: camelCase on the wire (Kubernetes'
convention), snake_case in Python, and each field's docstring as its OpenAPI
description."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class ApiModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, use_attribute_docstrings=True
    )
