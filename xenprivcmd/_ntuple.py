"""``typing.NamedTuple`` at run time without importing ``typing`` (or ``collections``).

:mod:`xenprivcmd.types` declares its results as ``class X(NamedTuple)``; mypy
reads ``typing.NamedTuple`` there, the interpreter this base.  The classes
it makes behave as ``collections.namedtuple`` classes do: tuple subclasses
with ``_fields``, ``_field_defaults``, ``_make``, ``_replace``, ``_asdict``,
the same ``repr``, pickling, ``__match_args__``, and a ``__new__`` taking
positional and keyword arguments with defaults (a wrong argument list is a
``TypeError``).  Importing ``typing`` costs more than everything else
``import xenprivcmd`` does; this costs a few small class creations, no
``exec``.
"""

from __future__ import annotations

from _operator import itemgetter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Iterable, Tuple

__all__ = ["NamedTuple"]

_tuple_new = tuple.__new__
_MISSING = object()


def _make_class(name: str, ns: Dict[str, Any]) -> type:
    fields: Tuple[str, ...] = tuple(ns.get("__annotations__", {}))
    for f in fields:
        if not f.isidentifier() or f.startswith("_"):
            raise ValueError(f"{name}: bad field name {f!r}")
    defaults = {f: ns[f] for f in fields if f in ns}
    seen_default = False
    for f in fields:
        if f in defaults:
            seen_default = True
        elif seen_default:
            raise TypeError(f"{name}: non-default field {f!r} follows a default one")
    n = len(fields)
    index = {f: i for i, f in enumerate(fields)}
    fill = tuple(defaults.get(f, _MISSING) for f in fields)

    def __new__(_cls: Any, *args: Any, **kw: Any) -> Any:
        if not kw and len(args) == n:
            return _tuple_new(_cls, args)
        if len(args) > n:
            raise TypeError(f"{name}() takes {n} positional arguments but {len(args)} were given")
        vals = list(args) + list(fill[len(args):])
        for k, v in kw.items():
            i = index.get(k)
            if i is None:
                raise TypeError(f"{name}() got an unexpected keyword argument {k!r}")
            if i < len(args):
                raise TypeError(f"{name}() got multiple values for argument {k!r}")
            vals[i] = v
        missing = [f for f, v in zip(fields, vals) if v is _MISSING]
        if missing:
            raise TypeError(f"{name}() missing {len(missing)} required argument(s): "
                            + ", ".join(repr(f) for f in missing))
        return _tuple_new(_cls, vals)

    __new__.__doc__ = f"Create new instance of {name}({', '.join(fields)})"

    @classmethod  # type: ignore[misc]
    def _make(cls: Any, iterable: Iterable[Any]) -> Any:
        result = _tuple_new(cls, iterable)
        if len(result) != n:
            raise TypeError(f"Expected {n} arguments, got {len(result)}")
        return result

    def _replace(self: Any, **kw: Any) -> Any:
        result = self._make(map(kw.pop, fields, self))
        if kw:
            raise ValueError(f"Got unexpected field names: {list(kw)!r}")
        return result

    def _asdict(self: Any) -> Dict[str, Any]:
        return dict(zip(fields, self))

    def __repr__(self: Any) -> str:
        return f"{type(self).__name__}(" + ", ".join(f"{f}={v!r}" for f, v in zip(fields, self)) + ")"

    def __getnewargs__(self: Any) -> Tuple[Any, ...]:
        return tuple(self)

    cls_ns: Dict[str, Any] = {
        "__slots__": (), "_fields": fields, "_field_defaults": dict(defaults), "__new__": __new__,
        "_make": _make, "_replace": _replace, "_asdict": _asdict, "__repr__": __repr__,
        "__getnewargs__": __getnewargs__, "__match_args__": fields,
    }
    for i, f in enumerate(fields):
        cls_ns[f] = property(itemgetter(i), doc=f"Alias for field number {i}")
    for k, v in ns.items():
        if k not in fields and k not in ("__dict__", "__weakref__", "__qualname__"):
            cls_ns[k] = v
    cls = type(name, (tuple,), cls_ns)
    cls.__qualname__ = ns.get("__qualname__", name)
    return cls


class _NamedTupleMeta(type):
    def __new__(mcls, name: str, bases: Tuple[type, ...], ns: Dict[str, Any]) -> Any:
        if ns.get("_xen_root_"):
            return super().__new__(mcls, name, bases, ns)
        return _make_class(name, ns)


class NamedTuple(metaclass=_NamedTupleMeta):
    """Base class: ``class Point(NamedTuple): x: int; y: int = 0``."""

    _xen_root_ = True
