"""xenprivcmd._ntuple.NamedTuple behaves as typing.NamedTuple does (the result types use it at run time)."""

from __future__ import annotations

import pickle
import typing

import pytest

from xenprivcmd import _ntuple, types


def _pair(base):
    class Point(base):
        """A point."""

        x: int
        y: int
        label: typing.Optional[str] = None

        @property
        def norm1(self) -> int:
            return abs(self.x) + abs(self.y)

    return Point


Ours, Ref = _pair(_ntuple.NamedTuple), _pair(typing.NamedTuple)


@pytest.mark.parametrize("args,kw", [((1, 2), {}), ((1, 2, "a"), {}), ((1,), {"y": 2}), ((), {"y": 2, "x": 1, "label": "z"})])
def test_construction_and_the_tuple_protocol(args, kw):
    a, b = Ours(*args, **kw), Ref(*args, **kw)
    assert tuple(a) == tuple(b) and isinstance(a, tuple)
    assert repr(a) == repr(b).replace("Point(", "Point(")
    assert (a.x, a.y, a.label, a.norm1) == (b.x, b.y, b.label, b.norm1)
    assert a._asdict() == b._asdict()
    assert tuple(a._replace(y=9)) == tuple(b._replace(y=9)) and type(a._replace(y=9)) is Ours
    assert tuple(Ours._make(tuple(b))) == tuple(b)
    assert hash(a) == hash(tuple(b)) and a == tuple(b)
    x, y, label = a
    assert (x, y, label) == tuple(b)


def test_class_attributes():
    for name in ("_fields", "_field_defaults", "__match_args__", "__doc__"):
        assert getattr(Ours, name) == getattr(Ref, name), name
    with pytest.raises(AttributeError):
        Ours(1, 2).x = 3  # immutable
    with pytest.raises(AttributeError):
        Ours(1, 2).other = 3  # __slots__ = ()


@pytest.mark.parametrize("args,kw", [((), {}), ((1,), {}), ((1, 2, 3, 4), {}), ((1, 2), {"x": 1}), ((1, 2), {"z": 1})])
def test_bad_argument_lists_are_type_errors(args, kw):
    with pytest.raises(TypeError):
        Ref(*args, **kw)
    with pytest.raises(TypeError):
        Ours(*args, **kw)


def test_make_and_replace_refuse_what_namedtuple_refuses():
    with pytest.raises(TypeError):
        Ours._make((1, 2))
    with pytest.raises(ValueError):
        Ours(1, 2)._replace(z=1)


def test_pickle_and_the_real_result_types():
    a = types.SchedParams("credit", 256, None)
    assert pickle.loads(pickle.dumps(a)) == a and repr(a) == "SchedParams(scheduler='credit', weight=256, cap=None)"
    info = types.DomainInfo(0, 0, 1, 2, None, None, None, 0, 5, 1, 0, 0, bytes(16), None)
    back = pickle.loads(pickle.dumps(info))
    assert back == info and type(back) is types.DomainInfo and back.name is None
    assert types.DomainInfo._fields[-1] == "name" and types.DomainInfo._field_defaults == {"name": None}
    assert str(info.uuid) == info.uuid_str == "00000000-0000-0000-0000-000000000000"
    import os
    import uuid

    for _ in range(50):
        raw = os.urandom(16)
        assert info._replace(handle_bytes=raw).uuid_str == str(uuid.UUID(bytes=raw))
