"""The library's public surface: every exception at the top level, result types that explain themselves."""

from __future__ import annotations

import collections
import inspect
import pkgutil
import pydoc
import subprocess
import sys
import typing
from importlib import import_module

import pytest

import xenprivcmd
from xenprivcmd import _ntuple, errors, types

# Exceptions defined in the package that never reach a caller of the library, each with where it stays.
INTERNAL = {
    "xenprivcmd.sim._base.HypercallFailed": "the simulator's errno signal, turned into a hypercall's result",
    "xenprivcmd.remote._codec.FrameError": "a malformed frame, turned into ProtocolMismatch/ConnectionLost",
    "xenprivcmd.abi.show.AbiShowError": "python -m xenprivcmd.abi show's own usage errors (one error: line)",
    "xenprivcmd.shell.parse.UsageError": "xpsh's usage errors (one error: line)",
    "xenprivcmd.exporter.cli.UsageError": "xenprivcmd-exporter's usage errors (one error: line)",
    "xenprivcmd.build.config._Bad": "a value's broken rule, turned into a ConfigError naming the key",
}


def _modules() -> typing.List[str]:
    names = [xenprivcmd.__name__]
    for m in pkgutil.walk_packages(xenprivcmd.__path__, xenprivcmd.__name__ + "."):
        if not m.name.endswith("__main__"):
            names.append(m.name)
    return names


def _exception_classes() -> typing.Dict[str, type]:
    found = {}
    for name in _modules():
        mod = import_module(name)
        for obj in vars(mod).values():
            if isinstance(obj, type) and issubclass(obj, BaseException) and obj.__module__ == name:
                found[f"{name}.{obj.__qualname__}"] = obj
    return found


def test_every_exception_of_the_package_is_at_the_top_level() -> None:
    classes = _exception_classes()
    assert len(classes) > 30  # the walk found the package's modules
    missing = [q for q, cls in classes.items() if q not in INTERNAL and getattr(xenprivcmd, cls.__name__, None) is not cls]
    assert not missing, f"not reachable as xenprivcmd.<name>: {missing}"
    assert not set(INTERNAL) - set(classes), "INTERNAL names a class that is gone"
    for q in INTERNAL:
        assert classes[q].__name__ not in xenprivcmd.__all__


def test_all_errors_and_lazy_names_agree() -> None:
    public = [n for n in errors.__all__ if n != "from_errno"]
    assert not set(public) - set(xenprivcmd.__all__)
    assert len(set(xenprivcmd.__all__)) == len(xenprivcmd.__all__)
    for name in xenprivcmd.__all__:
        assert name in dir(xenprivcmd)
    with pytest.raises(AttributeError):
        xenprivcmd.NoSuchThing  # noqa: B018
    # every name resolves lazily in a fresh interpreter, none of them loads construct or typing's users
    code = ("import sys, xenprivcmd\n"
            "for n in xenprivcmd.__all__: getattr(xenprivcmd, n)\n"
            "print('construct' in sys.modules, 'prometheus_client' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_except_clauses_catch_at_the_top_level() -> None:
    with pytest.raises(xenprivcmd.AmbiguousDomain):
        raise errors.AmbiguousDomain("two domains are called web", (3, 4))
    assert issubclass(xenprivcmd.GuestTimeout, TimeoutError)
    assert issubclass(xenprivcmd.XenstoreNoEntry, xenprivcmd.XenprivcmdError)
    assert issubclass(xenprivcmd.XenstoreNoEntry, FileNotFoundError)


def _results() -> typing.List[type]:
    return [getattr(types, n) for n in types.__all__ if isinstance(getattr(types, n), type)]


@pytest.mark.parametrize("cls", _results(), ids=lambda c: c.__name__)
def test_help_shows_the_fields_their_docs_and_units(cls: type) -> None:
    fields = cls._fields  # type: ignore[attr-defined]
    sig = inspect.signature(cls)
    assert list(sig.parameters) == list(fields)
    # the same signature collections.namedtuple gives (names and defaults)
    ref = collections.namedtuple(cls.__name__, fields, defaults=list(cls._field_defaults.values()) or None)  # type: ignore[attr-defined]
    assert [(p.name, p.default) for p in sig.parameters.values()] == \
        [(p.name, p.default) for p in inspect.signature(ref).parameters.values()]
    text = pydoc.render_doc(cls, renderer=pydoc.plaintext)
    assert f"{cls.__name__}({', '.join(str(p) for p in sig.parameters.values())})" in text
    assert "*args" not in text.split("Methods defined here")[0]
    for f in fields:
        doc = getattr(cls, f).__doc__
        assert doc and not doc.startswith("Alias for field"), f"{cls.__name__}.{f} has no doc"
        assert f" {f}\n |      {doc[:40]}" in text
        if any(w in f for w in ("pages", "time", "kib", "khz", "size")) and f not in ("pagesize",):
            assert any(u in doc for u in ("4 KiB", "nanoseconds", "KiB", "kHz", "bytes", "seconds")), (f, doc)


def test_signature_annotations_read_as_written() -> None:
    assert str(inspect.signature(types.VcpuAffinity)) == \
        "(vcpu: int, hard: FrozenSet[int], soft: Optional[FrozenSet[int]])"


def test_field_docs_of_a_docstring() -> None:
    doc = """Title.

    :x: the x, in metres,
        continued here
    :y: the y
    :notafield: ignored

    Prose after the list.
    """
    assert _ntuple.field_docs(doc, ("x", "y")) == {"x": "the x, in metres, continued here", "y": "the y"}
    assert _ntuple.field_docs(None, ("x",)) == {}


def test_results_import_no_inspect() -> None:
    code = "import sys, xenprivcmd.types as t; t.DomainInfo; print('inspect' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
