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

``help()`` shows what each class holds: the constructor's signature (field
names, their annotations and defaults; built on first look, so importing costs
nothing) and, per field, the text of the class docstring's field list (units
included)::

    class DomainInfo(NamedTuple):
        '''One domain.

        :domid: the domain's id
        :tot_pages: memory the domain has now, in pages of 4 KiB
        '''
"""

from __future__ import annotations

from _operator import itemgetter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Iterable, Optional, Tuple

__all__ = ["NamedTuple"]

_tuple_new = tuple.__new__
_MISSING = object()


def field_docs(doc: Optional[str], fields: Tuple[str, ...]) -> Dict[str, str]:
    """The ``:field: text`` lines of a docstring (a reST field list; a line indented deeper continues one)."""
    out: Dict[str, str] = {}
    current, depth = "", 0
    for line in (doc or "").splitlines():
        text = line.lstrip()
        indent = len(line) - len(text)
        end = text.find(":", 1) if text.startswith(":") else -1
        if end > 1 and text[1:end] in fields:
            current, depth = text[1:end], indent
            out[current] = text[end + 1:].strip()
        elif current and text and indent > depth:
            out[current] += " " + text.rstrip()
        else:
            current = ""
    return out


class _Annotation(str):
    """An annotation's text that a signature shows bare (``int``, not ``'int'``)."""

    def __repr__(self) -> str:
        return str(self)


class _ResultType(type):
    """The classes' type: ``inspect.signature(cls)`` (and so ``help(cls)``) gives the fields."""

    @property
    def __signature__(cls) -> Any:
        import inspect

        ns = cls.__dict__
        ann, defaults = ns["_annotations_"], ns["_field_defaults"]
        kind, empty = inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.empty
        params = [inspect.Parameter(f, kind, default=defaults.get(f, empty),
                                    annotation=_Annotation(ann[f]) if isinstance(ann.get(f), str) else ann.get(f, empty))
                  for f in ns["_fields"]]
        return inspect.Signature(params)


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
    docs = field_docs(ns.get("__doc__"), fields)
    for i, f in enumerate(fields):
        cls_ns[f] = property(itemgetter(i), doc=docs.get(f) or f"Alias for field number {i}")
    cls_ns["_annotations_"] = ns.get("__annotations__", {})
    for k, v in ns.items():
        if k not in fields and k not in ("__dict__", "__weakref__", "__qualname__"):
            cls_ns[k] = v
    cls = _ResultType(name, (tuple,), cls_ns)
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
