"""The base of every config schema: unknown keys rejected, frozen, no silent number conversions.

pydantic's lax mode reads ``true`` as 1 for an ``int`` or ``float`` field, so ``lora_r: true`` trained
a rank-1 adapter and ``val_set_size: true`` split off one row; it also accepts ``.inf`` for a float
(``num_epochs: .inf`` never ends). Both are refused here, with the key's path, like any other mistake.
"""

from __future__ import annotations

import types
from functools import cache
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_as_number(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool) and info.field_name and _number_not_bool(cls, info.field_name):
            raise ValueError(f"must be a number (got {str(value).lower()})")
        return value


@cache
def _number_not_bool(model: type[BaseModel], name: str) -> bool:
    """Whether field ``name`` takes a number but no boolean (``int``, ``float | None``, ``Literal[0, 1]``)."""
    kinds = _kinds(model.model_fields[name].annotation)
    return "number" in kinds and "bool" not in kinds


def _kinds(annotation: Any) -> set[str]:
    """'number' and/or 'bool' for what the top level of ``annotation`` accepts (unions looked through)."""
    if annotation is bool or annotation is Any:
        return {"bool"}
    if annotation in (int, float):
        return {"number"}
    origin = get_origin(annotation)
    if origin is Literal:
        return {"bool" if isinstance(v, bool) else "number" for v in get_args(annotation) if isinstance(v, (int, float))}
    if origin is Annotated:  # NonNegativeInt, ...
        return _kinds(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return set().union(*(_kinds(a) for a in get_args(annotation)))
    return set()
