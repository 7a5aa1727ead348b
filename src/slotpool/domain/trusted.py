"""Models built from data slotpool validated itself when it stored it, or made itself, without
validating it again.

A pool's configuration and windows are checked in full when they are saved; reading them back
(every pool listing, every controller pass) used to run the same validation once more per pool:
image and name checks, quantities parsed as fractions, tens of microseconds a pool. ``trusted``
builds the same model from the stored JSON instead: nested models built the same way, enum values
turned into their members, absent fields given their defaults, and the fields that were set
remembered as set (so ``exclude_unset`` dumps, the stored form, come out as before). Responses
built from such objects are made the same way (a nested model or an enum given as itself is kept
as it is): validating what this code just built costs more than serialising it. It is meant for
data this code wrote or made, never for input: nothing is checked.

What it can rebuild is decided once per model, from the field annotations: a model, an enum, or
a list or optional of either; any other type is taken as it is. A field whose type hides a model
or an enum anywhere else (a dict of models, a union of two models) is refused when the plan is
made, so a new field of such a type fails the tests rather than passing an unconverted value.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from functools import cache
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)
Convert = Callable[[Any], Any]


@dataclass(frozen=True)
class _Plan:
    defaults: dict[str, Any]  # every field, in the model's order, with its plain default
    factories: tuple[tuple[str, Callable[[], Any]], ...]  # fields whose default is made anew
    converters: dict[str, Convert | None]  # None: the stored value is the field's value
    required: frozenset[str]


def trusted(model: type[M], data: Mapping[str, Any]) -> M:
    """``model`` with ``data``'s values, as ``model.model_validate(data)`` would give for data
    that passes it, without checking anything. A key that is no field of ``model``, or a
    required field missing, is refused (ValueError): the data is not what this code stored."""
    plan = _plan(model)
    if missing := plan.required - data.keys():
        raise ValueError(f"{model.__name__} without {', '.join(sorted(missing))}")
    values = plan.defaults.copy()
    for name, factory in plan.factories:
        if name not in data:
            values[name] = factory()
    for key, value in data.items():
        try:
            convert = plan.converters[key]
        except KeyError:
            raise ValueError(f"{key!r} is not a field of {model.__name__}") from None
        values[key] = value if convert is None else convert(value)
    built = model.__new__(model)
    # What pydantic's own ``model_construct`` sets, without its per-call look at the default
    # factories' signatures (which costs more than validating).
    object.__setattr__(built, "__dict__", values)
    object.__setattr__(built, "__pydantic_fields_set__", set(data))
    object.__setattr__(built, "__pydantic_extra__", None)
    object.__setattr__(built, "__pydantic_private__", None)
    return built


@cache
def _plan(model: type[BaseModel]) -> _Plan:
    if model.__private_attributes__:
        raise TypeError(f"{model.__name__} has private attributes: not rebuilt here")
    defaults: dict[str, Any] = {}
    factories = []
    converters = {}
    for name, info in model.model_fields.items():
        where = f"{model.__name__}.{name}"
        converters[name] = _converter(info.annotation, where)
        defaults[name] = info.default
        if info.default_factory is not None:
            factories.append((name, info.default_factory))
        elif isinstance(info.default, list | dict | set):
            raise TypeError(f"{where}: a mutable default would be shared")
    required = frozenset(name for name, info in model.model_fields.items() if info.is_required())
    return _Plan(defaults, tuple(factories), converters, required)  # type: ignore[arg-type]


def _walk(annotation: Any, where: str, leaf: Callable[[type], Convert | None]) -> Convert | None:
    """What turns a stored value of type ``annotation`` into ``leaf``'s form: through
    ``Annotated``, an optional and a list, ``leaf`` for a plain type (None: taken as it is). A
    model or an enum hidden in any other type (a dict of models, a union of two) is refused."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _walk(args[0], where, leaf)
    if origin in (Union, types.UnionType):
        present = [arg for arg in args if arg is not type(None)]
        if len(present) == 1:
            inner = _walk(present[0], where, leaf)
            return None if inner is None else _optional(inner)
        _refuse_hidden(args, where)
        return None
    if origin is list:
        item = _walk(args[0], where, leaf)
        return None if item is None else _each(item)
    if origin is not None:
        _refuse_hidden(args, where)
        return None
    return leaf(annotation) if isinstance(annotation, type) else None


def _converter(annotation: Any, where: str) -> Convert | None:
    return _walk(annotation, where, _rebuilt)


def _rebuilt(annotation: type) -> Convert | None:
    """A model built with ``trusted`` (one given as itself is kept), an enum's member."""
    if issubclass(annotation, BaseModel):
        nested: type[BaseModel] = annotation
        return lambda value: value if isinstance(value, nested) else trusted(nested, value)
    if issubclass(annotation, Enum):
        return annotation
    return None


def _optional(convert: Convert) -> Convert:
    return lambda value: None if value is None else convert(value)


def _each(convert: Convert) -> Convert:
    return lambda values: [convert(value) for value in values]


def _refuse_hidden(args: tuple[Any, ...], where: str) -> None:
    for arg in args:
        if _converter(arg, where) is not None:
            raise TypeError(f"{where}: cannot rebuild a model or enum inside {args!r}")


# -- the stored form, shown ------------------------------------------------------------------

View = Callable[[Any], Any]


def dumped(model: type[BaseModel], data: Mapping[str, Any]) -> dict[str, Any]:
    """``trusted(model, data).model_dump(mode="json", exclude_unset=True, exclude_none=True)``
    for JSON ``data`` of the kind slotpool stores (``domain.config.stored_form``), without
    building the model: the keys given, in the model's field order (in nested models too), None
    values left out, everything else as it is (an enum's value is what is stored). Read from a
    database that keeps JSON keys in an order of its own (PostgreSQL's JSONB), it comes out as
    the dump does: the model's fields in their order, a mapping's keys as stored."""
    out = {}
    for name, view in _view_plan(model):
        value = data.get(name)
        if value is not None:
            out[name] = value if view is None else view(value)
    if len(out) < len(data) and (unknown := data.keys() - dict(_view_plan(model)).keys()):
        raise ValueError(f"{', '.join(sorted(unknown))} not a field of {model.__name__}")
    return out


@cache
def _view_plan(model: type[BaseModel]) -> tuple[tuple[str, View | None], ...]:
    _plan(model)  # refuses what ``trusted`` cannot rebuild
    return tuple(
        (name, _view(info.annotation, f"{model.__name__}.{name}"))
        for name, info in model.model_fields.items()
    )


def _view(annotation: Any, where: str) -> View | None:
    return _walk(annotation, where, _shown)


def _shown(annotation: type) -> View | None:
    """A nested model's stored form, dumped; an enum's value as stored, anything else as it
    is."""
    if issubclass(annotation, BaseModel):
        nested: type[BaseModel] = annotation
        return lambda value: dumped(nested, value)
    return None
