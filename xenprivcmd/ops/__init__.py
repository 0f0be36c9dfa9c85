"""Operations: each module encodes requests into a hypercall buffer through the
detected layouts, issues them on a :class:`~xenprivcmd.transport.privcmd.Transport` and
decodes the replies into :mod:`xenprivcmd.types` results."""
