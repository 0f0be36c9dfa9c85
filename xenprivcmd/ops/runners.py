"""The engine's runners: plain functions whose values are their globals.

A runner of :meth:`.engine.Engine.runner` on the privcmd device (and a listing of
:meth:`.engine.Engine.listing` on any transport) is one of the functions below,
made for one request and one handle by :func:`bind`: its ``def`` runs
with a globals dict of its own, holding what the engine prepared (the
``struct.Struct`` methods, the header values, the transport's ioctl, fd and
request number, the runner's thread-local lane, the result type).  No source
is compiled at run time: the code is this module's, checked by ruff and mypy
like any other.  Why globals and not a closure's cells: a closure copies each
free variable into its frame and releases it again on every call (18 of them
for ``getdomaininfo``: about 200 machine instructions of a call on Python
3.13), where a global is read only where it is used.  Why ``def`` and not
``types.FunctionType(code, globals)``: Python 3.13 does not specialise calls
to a function made by the latter (no function version), and an unspecialised
call costs about 100 instructions more.  ``benchmarks/paired_native.py``
counts both.  The names declared below are those globals, for the linters
(None here: the functions only ever run with their own).
"""

from __future__ import annotations

import builtins as _builtins
from types import FunctionType as _FunctionType

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict

#: Bound per runner by :func:`bind` (the engine's names for them): declared for the linters.
acquire: Any = None  # () -> (buffer, view, prebuilt request[, the second request's]) of this thread's lane
rl: Any = None  # the runner's thread-local: .pair, what acquire() gave on this thread
pack: Any = None  # the request's Struct.pack_into
unpack: Any = None  # the reply's Struct.unpack_from
read_at: Any = None  # where the reply's fields start
h0: Any = None  # the header's first two values (the sub-op and the interface version)
h1: Any = None
t: Any = None  # the transport (its hypercall count)
ioctl: Any = None  # the device's ioctl, its fd and the privcmd request number
fd: Any = None
number: Any = None
failed: Any = None  # (exc, request, domid) -> rc: EINTR issued again, else the typed error
mk: Any = None  # the result type (tuple.__new__'d), or None for the plain tuple
lead: Any = None  # fields before the reply's, and after it, in the result
tail: Any = None
where: Any = None  # the index of the reply's echo of the domid (-1: none)
gone: Any = None  # domid -> NoSuchDomain
resolve: Any = None  # anything but a domid in range -> a domid (or the handle's error)
other: Any = None  # as resolve, but may answer the result itself (a record named by it)
then: Any = None  # the result named (domain_info's name=True)
returns: Any = None  # whether the hypercall's return value leads the fields
lo: Any = None  # the range of the argument after the domid, and its check (raises)
hi: Any = None
check: Any = None
done: Any = None  # rc -> the result of a request of no struct
convert: Any = None  # fields -> the result
picker: Any = None  # fields in the declared order (None: as read)
count: Any = None  # the first reply's fields -> how many of the second request follow
pack1: Any = None  # the first request's, for a runner of two
unpack1: Any = None
read1: Any = None
f0: Any = None
f1: Any = None
failed1: Any = None
run: Any = None  # listing: the page's runner, its size, the records' reader (or many()), where and how big
chunk: Any = None
records: Any = None
many: Any = None
P: Any = None
size: Any = None
LIMIT: Any = None  # listing: the first fields stay below it
lt: Any = None  # operator.lt
too_many: Any = None  # listing: count -> the error of a page of more records than asked
listing_error: Any = None  # listing: (first fields, first) -> the error of a page out of order
a0: Any = None  # selected: the chosen request's two arguments after the domid
a1: Any = None
answer: Any = None  # selected: the first request's one field after which the chosen request runs in the frame
aside: Any = None  # selected: (domid, first answer) -> the result, the chosen request not run in the frame
NONE: Any = None  # (None,)
DOMID_MAX: Any = None
PAYLOAD_OFFSET: Any = None
new: Any = None  # tuple.__new__
NoSuchDomain: Any = None
nargs: Any = None  # how many arguments a runner of varying ones takes, and the request's name
request_name: Any = None
head: Any = None  # the header's values (the general runners')
pointers: Any = None  # the indexes of the arguments that are offsets into the payload
domain: Any = None  # the general runner's: whether the first argument is a domid
checks: Any = None  # its argument checks, whether it packs as laid (else: ordered(order, args, skip))
direct: Any = None
ordered: Any = None
order: Any = None
skip: Any = None
finish: Any = None  # (fields, args) -> the result
payload: Any = None  # the payload's size (None: none)
ESRCH: Any = None
subop1: Any = None


def bind(template: str, name: str, **values: Any) -> Callable[..., Any]:
    """The runner ``template`` (a function of :func:`_templates`) with ``values`` as its
    globals (and the builtins), named ``name``."""
    values["__builtins__"] = _builtins
    fn: Any = _FunctionType(_templates.__code__, values, "_templates")()[template]
    fn.__name__ = fn.__qualname__ = name
    return fn  # type: ignore[no-any-return]


# Each runner on the device first takes this thread's lane (``rl.pair``) and packs the whole
# request into its view.  A buffer that died (replaced by a larger one, its handle closed, the
# child after fork()) has its view released, which the pack refuses with TypeError (no
# writable buffer, on every Python), and the lane is acquired again; a runner packing nothing,
# or putting the buffer's address in its request (a payload), checks that address first.
# Nothing is checked before the pack: under QEMU TCG reading the address on every call was 2-3%
# of a getdomaininfo.  Then the runner counts the hypercall,
# issues it and reads the reply: one frame.


def _templates() -> Dict[str, Callable[..., Any]]:
    """Every runner, made by running these ``def`` statements with a runner's own globals
    (:func:`bind`).  A function made by its ``def`` is one the interpreter specialises calls
    to (Python 3.13 does not for one made by ``types.FunctionType``, so the runners are not
    made that way)."""
    def domid_named(domid: Any, name: bool = True) -> Any:
        """A domain's record by its domid: ``other`` answers anything but a domid in range (a
        name, a UUID, a record), ``then`` names the record (getdomaininfo)."""
        if domid.__class__ is not int or not 0 <= domid <= DOMID_MAX:
            domid = other(domid)
            if domid.__class__ is not int:
                return domid  # the answer itself
        try:
            _buf, view, preq = rl.pair
            pack(view, 0, h0, h1, domid)
        except (AttributeError, TypeError):  # this thread's first call; its buffer died (a released view)
            _buf, view, preq = acquire()
            pack(view, 0, h0, h1, domid)
        t.calls += 1
        try:
            ioctl(fd, number, preq, True)
        except (OSError, ValueError) as exc:
            failed(exc, preq, domid)
        vals = unpack(view, read_at)
        if vals[where] != domid:  # on the plain tuple: a subclass's item is a slower lookup
            raise gone(domid)
        out = new(mk, vals + tail)
        return then(out) if name else out


    def domid(domid: Any) -> Any:
        """A request on one domain, of its domid alone."""
        if domid.__class__ is not int or not 0 <= domid <= DOMID_MAX:
            domid = resolve(domid)
        try:
            _buf, view, preq = rl.pair
            pack(view, 0, h0, h1, domid)
        except (AttributeError, TypeError):  # this thread's first call; its buffer died (a released view)
            _buf, view, preq = acquire()
            pack(view, 0, h0, h1, domid)
        t.calls += 1
        try:
            rc = ioctl(fd, number, preq, True)
        except (OSError, ValueError) as exc:
            rc = failed(exc, preq, domid)
        vals = unpack(view, read_at)
        if where >= 0 and vals[where] != domid:
            raise gone(domid)
        if returns:
            vals = (rc,) + vals
        return vals if mk is None else new(mk, lead + vals + tail)


    def domid_arg(domid: Any, a: Any) -> Any:
        """A request on one domain, of its domid and one more argument in ``lo..hi``."""
        if domid.__class__ is not int or not 0 <= domid <= DOMID_MAX:
            domid = resolve(domid)
        if a.__class__ is not int or not lo <= a <= hi:
            check(a)
        try:
            _buf, view, preq = rl.pair
            pack(view, 0, h0, h1, domid, a)
        except (AttributeError, TypeError):  # this thread's first call; its buffer died (a released view)
            _buf, view, preq = acquire()
            pack(view, 0, h0, h1, domid, a)
        t.calls += 1
        try:
            rc = ioctl(fd, number, preq, True)
        except (OSError, ValueError) as exc:
            rc = failed(exc, preq, domid)
        vals = unpack(view, read_at)
        if where >= 0 and vals[where] != domid:
            raise gone(domid)
        if returns:
            vals = (rc,) + vals
        return vals if mk is None else new(mk, lead + vals + tail)


    def bare() -> Any:
        """A request of no struct (xen_version's version, a memory_op count): its return value."""
        try:
            buf, _view, preq = rl.pair
        except AttributeError:  # this thread's first call
            buf, _view, preq = acquire()
        if buf.address == 0:
            buf, _view, preq = acquire()
        t.calls += 1
        try:
            rc = ioctl(fd, number, preq, True)
        except (OSError, ValueError) as exc:
            rc = failed(exc, preq, None)
        return done(rc)


    def bare_halves() -> Any:
        """:func:`bare`, the return value split in its high and low 16 bits (XENVER_version)."""
        try:
            buf, _view, preq = rl.pair
        except AttributeError:  # this thread's first call
            buf, _view, preq = acquire()
        if buf.address == 0:
            buf, _view, preq = acquire()
        t.calls += 1
        try:
            rc = ioctl(fd, number, preq, True)
        except (OSError, ValueError) as exc:
            rc = failed(exc, preq, None)
        return rc >> 16, rc & 0xFFFF


    def converted() -> Any:
        """A request of no argument, its fields converted (physinfo)."""
        try:
            _buf, view, preq = rl.pair
            pack(view, 0, h0, h1)
        except (AttributeError, TypeError):  # this thread's first call; its buffer died (a released view)
            _buf, view, preq = acquire()
            pack(view, 0, h0, h1)
        t.calls += 1
        try:
            ioctl(fd, number, preq, True)
        except (OSError, ValueError) as exc:
            failed(exc, preq, None)
        if picker is not None:
            return convert(picker(unpack(view, read_at) + NONE))
        return convert(unpack(view, read_at))


    def sized(domid: Any) -> Any:
        """A domain request whose answer sizes a series of the next (getdomaininfo's
        max_vcpu_id, then getvcpuinfo per vcpu): the list of what each of those answered."""
        if domid.__class__ is not int or not 0 <= domid <= DOMID_MAX:
            domid = resolve(domid)
        try:
            _buf, view, preq1, preq = rl.pair
            pack1(view, 0, f0, f1, domid)
        except (AttributeError, TypeError):  # this thread's first call; its buffer died (a released view)
            _buf, view, preq1, preq = acquire()
            pack1(view, 0, f0, f1, domid)
        t.calls += 1
        try:
            ioctl(fd, number, preq1, True)
        except (OSError, ValueError) as exc:
            failed1(exc, preq1, domid)
        vals = unpack1(view, read1)
        if picker is not None:
            vals = picker(vals + NONE)
        if where >= 0 and vals[where] != domid:
            raise NoSuchDomain(ESRCH, f"domctl {subop1}(domid={domid}): no such domain (ESRCH)",
                               hypercall="domctl", subop=subop1, domid=domid)
        out = []
        for a in range(count(vals)):
            if not lo <= a <= hi:
                check(a)
            pack(view, 0, h0, h1, domid, a)
            t.calls += 1
            try:
                ioctl(fd, number, preq, True)
            except (OSError, ValueError) as exc:
                failed(exc, preq, domid)
            got = unpack(view, read_at)
            out.append(got if mk is None else new(mk, got))
        return out


    def selected(domid: Any) -> Any:
        """A request of no argument whose answer selects the domain request that follows
        (sched_id, then that scheduler's scheduler_op): the first request chosen runs here,
        with its ``pack``, ``h0``, ``h1``, ``a0``, ``a1``, ``unpack``, ``read_at``, ``mk``,
        ``lead`` and ``failed``, after its ``answer`` (the first request's one field); any
        other answer goes ``aside``."""
        if domid.__class__ is not int or not 0 <= domid <= DOMID_MAX:
            domid = resolve(domid)
        try:
            _buf, view, preq1, preq = rl.pair
            pack1(view, 0, f0, f1)
        except (AttributeError, TypeError):  # this thread's first call; its buffer died (a released view)
            _buf, view, preq1, preq = acquire()
            pack1(view, 0, f0, f1)
        t.calls += 1
        try:
            ioctl(fd, number, preq1, True)
        except (OSError, ValueError) as exc:
            failed1(exc, preq1, None)
        vals = unpack1(view, read1)
        if vals[0] != answer or preq is None:
            return aside(domid, vals)
        pack(view, 0, h0, h1, domid, a0, a1)
        t.calls += 1
        try:
            ioctl(fd, number, preq, True)
        except (OSError, ValueError) as exc:
            failed(exc, preq, domid)
        return new(mk, lead + unpack(view, read_at))

    def listing(names: bool = True) -> Any:
        """A listing paginated by its records' first field (getdomaininfolist): ``run(first,
        chunk, 0)`` answers ``(view, count)``, the records ``P`` bytes into the view, ``size``
        bytes each; ``records`` reads them in C into ``mk``s with ``tail`` (else ``many(view,
        P, count)``).  Their first fields must ascend from ``first`` on, below ``LIMIT``
        (``listing_error``, ``too_many``); ``then`` names the list when ``names``."""
        out = []
        first = 0
        while first < LIMIT:
            view, n = run(first, chunk, 0)
            if n > chunk:
                raise too_many(n)
            if records is not None:  # a comprehension: inlined from Python 3.12 on, it beats map()s
                batch = [new(mk, r + tail) for r in records(view[P:P + n * size])]
            else:
                batch = many(view, P, n)
            if n:
                ids = [r[0] for r in batch]
                if ids[0] < first or ids[-1] >= LIMIT or not all(map(lt, ids, ids[1:])):
                    raise listing_error(ids, first)
                out += batch
            if n < chunk:
                break
            first = ids[-1] + 1
        return then(out) if names else out

    def listing_device(names: bool = True) -> Any:
        """:func:`listing` issuing the page's request itself (``pack``, ``h0``, ``h1``, the
        lane, ``unpack`` of the count at ``read_at``): one frame, no tuple per page."""
        first = 0
        try:
            buf, view, preq = rl.pair
            at = buf.address + P
            pack(view, 0, h0, h1, first, chunk, at)
        except (AttributeError, TypeError):  # this thread's first call; its buffer died (a released view)
            buf, view, preq = acquire()
            at = buf.address + P
            pack(view, 0, h0, h1, first, chunk, at)
        out = []
        while True:
            t.calls += 1
            try:
                ioctl(fd, number, preq, True)
            except (OSError, ValueError) as exc:
                failed(exc, preq, None)
            n = unpack(view, read_at)[0]
            if n > chunk:
                raise too_many(n)
            if records is not None:  # a comprehension: inlined from Python 3.12 on, it beats map()s
                batch = [new(mk, r + tail) for r in records(view[P:P + n * size])]
            else:
                batch = many(view, P, n)
            if n:
                ids = [r[0] for r in batch]
                if ids[0] < first or ids[-1] >= LIMIT or not all(map(lt, ids, ids[1:])):
                    raise listing_error(ids, first)
                out += batch
            if n < chunk:
                break
            first = ids[-1] + 1
            if first >= LIMIT:
                break
            pack(view, 0, h0, h1, first, chunk, at)
        return then(out) if names else out

    def domid_more(domid: Any, *rest: Any) -> Any:
        """A request on one domain, of its domid and more arguments without checks."""
        if len(rest) != nargs - 1:
            raise TypeError(f"{request_name} takes {nargs} arguments, not {len(rest) + 1}")
        if domid.__class__ is not int or not 0 <= domid <= DOMID_MAX:
            domid = resolve(domid)
        try:
            _buf, view, preq = rl.pair
            pack(view, 0, h0, h1, domid, *rest)
        except (AttributeError, TypeError):  # this thread's first call; its buffer died (a released view)
            _buf, view, preq = acquire()
            pack(view, 0, h0, h1, domid, *rest)
        t.calls += 1
        try:
            rc = ioctl(fd, number, preq, True)
        except (OSError, ValueError) as exc:
            rc = failed(exc, preq, domid)
        vals = unpack(view, read_at)
        if where >= 0 and vals[where] != domid:
            raise gone(domid)
        if returns:
            vals = (rc,) + vals
        return vals if mk is None else new(mk, lead + vals + tail)

    def payload_any(*args: Any) -> Any:
        """A request with a payload, the ``pointers`` arguments offsets into it: ``(view, *fields)``."""
        if len(args) != nargs:
            raise TypeError(f"{request_name} takes {nargs} arguments, not {len(args)}")
        try:
            buf, view, preq = rl.pair
        except AttributeError:  # this thread's first call
            buf, view, preq = acquire()
        if buf.address == 0:
            buf, view, preq = acquire()
        vals = list(args)
        at = buf.address + PAYLOAD_OFFSET
        for i in pointers:
            vals[i] += at
        pack(view, 0, *head, *vals)
        t.calls += 1
        try:
            ioctl(fd, number, preq, True)
        except (OSError, ValueError) as exc:
            failed(exc, preq, None)
        return (view,) + unpack(view, read_at)

    def args_any(*args: Any) -> Any:
        """A request of arguments without checks, on no domain."""
        if len(args) != nargs:
            raise TypeError(f"{request_name} takes {nargs} arguments, not {len(args)}")
        try:
            _buf, view, preq = rl.pair
            pack(view, 0, *head, *args)
        except (AttributeError, TypeError):  # this thread's first call; its buffer died (a released view)
            _buf, view, preq = acquire()
            pack(view, 0, *head, *args)
        t.calls += 1
        try:
            rc = ioctl(fd, number, preq, True)
        except (OSError, ValueError) as exc:
            rc = failed(exc, preq, None)
        vals = unpack(view, read_at)
        if picker is not None:
            vals = picker(vals + NONE)
        if returns:
            vals = (rc,) + vals
        if convert is not None:
            return convert(vals)
        return vals if mk is None else new(mk, lead + vals + tail)

    def general(*args: Any) -> Any:
        """Any other request: its checks, its fields in offset order, its result."""
        if len(args) != nargs:
            raise TypeError(f"{request_name} takes {nargs} arguments, not {len(args)}")
        if domain:
            d = args[0]
            if d.__class__ is not int or not 0 <= d <= DOMID_MAX:
                args = (resolve(d),) + args[1:]
        for c in checks:
            c(args[c.index])
        try:
            buf, view, preq = rl.pair
        except AttributeError:  # this thread's first call
            buf, view, preq = acquire()
        if buf.address == 0:
            buf, view, preq = acquire()
        if pointers:
            at = buf.address + PAYLOAD_OFFSET
            args = tuple(a + at if i in pointers else a for i, a in enumerate(args))
        if direct:
            pack(view, 0, *head, *args)
        else:
            pack(view, 0, *ordered(order, args, skip))
        t.calls += 1
        try:
            rc = ioctl(fd, number, preq, True)
        except (OSError, ValueError) as exc:
            rc = failed(exc, preq, args[0] if domain else None)
        vals = unpack(view, read_at)
        out = finish((rc,) + vals if returns else vals, args)
        if convert is not None:
            return convert(out)
        return out if payload is None else (view,) + out

    return {fn.__name__: fn for fn in (domid_named, domid, domid_arg, domid_more, bare, bare_halves, payload_any,
                                       converted, args_any, general, sized, selected, listing,
                                       listing_device)}
