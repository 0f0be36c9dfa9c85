"""How hypercalls reach a hypervisor.

* :mod:`.privcmd`: the one module that touches the operating system (the privcmd
  device, hypercall buffers, ioctls) and the :class:`~.privcmd.Transport` interface
  every other transport implements (the simulator, record/replay, remote);
* :mod:`.decode`: requests read back by Xen's names, and which ones only read;
* :mod:`.wrappers`: timing, dry-run and read-only wrappers around a transport.
"""
