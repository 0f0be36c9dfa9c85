"""xl's config syntax and DomainConfig (issue 25), against facts found outside this package:

- the grammar of libxlutil (``libxlu_cfg_l.l``, ``libxlu_cfg_y.y``, Xen 4.17) and what Debian's
  ``xl create -n`` did with each config of ``XL_FACTS`` below in the bookworm dom0 (Xen 4.17);
  ``tests/realxen/test_build_xl.py`` asks the real xl again in every suite, for the same configs;
- C's ``strtol`` from the host's libc (xl reads numbers with it);
- the examples of xl.cfg(5) for cpu lists.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import pickle
import subprocess
import sys
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import xenprivcmd
from xenprivcmd.build import xlcfg
from xenprivcmd.build.config import DomainConfig, parse_cpus, resolve_cpus
from xenprivcmd.errors import ConfigError

K = 'kernel = "/k"\n'


def cfg(text: str, **kw) -> DomainConfig:  # type: ignore[no-untyped-def]
    return DomainConfig.from_xl(text, **kw)


def refused(text: str, **kw) -> ConfigError:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as ei:
        DomainConfig.from_xl(text, **kw)
    return ei.value


# -- the grammar -------------------------------------------------------------------------------

def values(text: str) -> dict:
    return {k: s.value for k, s in xlcfg.parse(text).items()}


def test_statements_end_with_a_newline_or_a_semicolon_and_the_last_may_end_the_file():
    assert values('a = "1"; b = 2\n;;\n\nc = 3') == {"a": "1", "b": "2", "c": "3"}


def test_numbers_and_strings_are_both_text():
    # NUMBER is [0-9][0-9a-fx]*: kept as its text
    assert values("a = 0x1f\nb = '0x1f'\nc = 010\nd = 1e5\n") == {"a": "0x1f", "b": "0x1f", "c": "010", "d": "1e5"}


def test_keys_may_have_dots_digits_and_underscores():
    assert values("foo_bar.baz2 = 3\n") == {"foo_bar.baz2": "3"}


def test_lists_span_lines_allow_a_trailing_comma_comments_and_nesting():
    text = 'cpus = ["0", "1-2", "all",  # vcpu 2\n  "node:0"\n  , "^1,2" ,\n]\nx = [ ]\ny = [["a"], "b"]\nz = [\n]\n'
    assert values(text) == {"cpus": ["0", "1-2", "all", "node:0", "^1,2"], "x": [], "y": [["a"], "b"], "z": []}


def test_the_last_assignment_wins_and_plus_equals_appends():
    s = xlcfg.parse('memory = 12\nmemory = 34\nextra = "a"\nextra += " b"\ncpus = ["1"]\ncpus += ["2"]\n')
    assert {k: v.value for k, v in s.items()} == {"memory": "34", "extra": "a b", "cpus": ["1", "2"]}
    assert s["memory"].line == 2 and s["extra"].op == "+="


def test_plus_equals_of_a_list_to_a_string_is_an_error():
    with pytest.raises(ConfigError, match=r"line 2: extra: can't add \[list\] to \"string\""):
        xlcfg.parse('extra = "a"\nextra += ["b"]\n')


def test_string_escapes():
    assert values(r'''a = "t\tq\"s\'b\\n\n"''' + "\nb = 'x\"y'\n") == {"a": "t\tq\"s'b\\n\n", "b": 'x"y'}


@pytest.mark.parametrize("text, line, message", [
    # lexical errors, as xl's lexer (the first three seen from Debian's xl 4.17 with these bytes)
    ('name="f"\n# trailing comment', 2, "lexical error near '#'"),
    ('name="i"\nmemory=128\r\n', 2, "lexical error near a carriage return"),
    ('name="v"\nmemory=-1\n', 2, "lexical error near '-1'; arbitrary Python"),
    ('Memory = 1\n', 1, "lexical error near 'Memory'"),
    ('a = "x\n', 1, "no closing \" on its line"),
    ('name="m"\nextra="\\x41\\x4a"\n', 2, "invalid hex escape"),
    ('name="n"\nextra="\\101\\7"\n', 2, "invalid octal escape"),
    ('a = "\\q"\n', 1, "invalid character after backslash"),
    # syntax errors
    ('name = web1\n', 1, "unexpected identifier 'web1', expecting a value"),
    ('\n\nmemory = 128 256\n', 3, "unexpected number '256'"),
    ('x = [,]\n', 1, "unexpected ','"),
    ('x = ["a" "b"]\n', 1, "expecting ',' or ']'"),
    ('x = ["a"\n\n', 3, "expecting ',' or ']'"),
    ('= 3\n', 1, "expecting a key"),
    ('a 3\n', 1, "expecting '=' or '+='"),
])
def test_errors_name_the_line(text, line, message):
    with pytest.raises(ConfigError) as ei:
        xlcfg.parse(text)
    assert ei.value.line == line and ei.value.key is None
    assert message in str(ei.value)
    assert str(ei.value).startswith(f"line {line}: ")


def test_an_error_names_the_file_when_given():
    with pytest.raises(ConfigError, match=r"^/etc/xen/a\.cfg:2: lexical error"):
        xlcfg.parse('a = 1\nB = 2\n', source="/etc/xen/a.cfg")


# -- numbers: C's strtol(s, &end, 0), whole string -----------------------------------------------

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.strtol.restype = ctypes.c_long
_libc.strtol.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_int]


def c_strtol(s: str):  # type: ignore[no-untyped-def]
    """libc's strtol as xlu_cfg_get_long uses it: None when errno is set, nothing read or junk left."""
    raw = s.encode()
    buf = ctypes.create_string_buffer(raw)
    end = ctypes.c_char_p()
    ctypes.set_errno(0)
    v = _libc.strtol(buf, ctypes.byref(end), 0)
    if ctypes.get_errno():
        return None
    consumed = ctypes.cast(end, ctypes.c_void_p).value - ctypes.addressof(buf)  # type: ignore[operator]
    if consumed == 0 or consumed != len(raw):
        return None
    return v


@pytest.mark.parametrize("s", ["128", "0x100", "0X1f", "010", "0128", "0", "00", "0x", "-3", "+7", " 12", "12 ",
                               "\t5", "1e5", "", "-", "0x-1", "9223372036854775807", "9223372036854775808",
                               "-9223372036854775808", "0b101", "١٢"])
def test_parse_long_is_strtol(s):
    assert xlcfg.parse_long(s) == c_strtol(s)


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="0123456789abcdefxX+- \t", max_size=12))
def test_parse_long_is_strtol_on_any_text(s):
    assert xlcfg.parse_long(s) == c_strtol(s)


# -- DomainConfig from xl: what xl did with these configs (Debian's xl 4.17, `xl create -n`) ------

def test_xl_fact_full_config():
    # xl: max_vcpus 4, avail_vcpus [0, 1], every vcpu's hard affinity [0], max_memkb 524288,
    # target_memkb 262144, weight 512, cap 50, cmdline "root=/dev/xvda1 ro console=hvc0",
    # uuid lower-cased, on_poweroff preserve, on_reboot destroy, on_crash restart
    c = cfg('name = "b2"\nuuid = "6A3E1F2C-1111-4222-8333-123456789ABC"\nmemory = 256\nmaxmem = 512\n'
            'vcpus = 2\nmaxvcpus = 4\ncpus = "0-1,^1"\ncpu_weight = 512\ncap = 50\nkernel="/k"\n'
            'ramdisk = "/r"\nroot = "/dev/xvda1 ro"\nextra = "console=hvc0"\non_poweroff = "preserve"\n'
            'on_reboot = "destroy"\non_crash = "restart"\n')
    assert (c.maxvcpus, c.vcpus, c.maxmem_kib, c.memory_kib, c.cpu_weight, c.cap) == (4, 2, 524288, 262144, 512, 50)
    assert c.hard_affinity(2) == (frozenset({0}),) * 4
    assert c.kernel_cmdline == "root=/dev/xvda1 ro console=hvc0"
    assert str(c.uuid) == "6a3e1f2c-1111-4222-8333-123456789abc"
    assert (c.on_poweroff, c.on_reboot, c.on_crash) == ("preserve", "destroy", "restart")
    assert c.domain_type("x86_64") == "pv"


def test_xl_fact_numbers_are_strtol():
    # xl: memory="0x100" -> target_memkb 262144; maxmem=010 -> max_memkb 8192 (octal); xl took that
    # (maxmem < memory), xl.cfg(5) says maxmem must be >= memory: refused here
    e = refused('name="e"\nmemory="0x100"\nmaxmem=010\n' + K)
    assert e.key == "maxmem" and e.line == 3 and "maxmem (8 MiB) must be at least memory (256 MiB)" in str(e)
    assert cfg('name="e"\nmemory="0x100"\nmaxmem=0x200\n' + K).maxmem == 512


def test_xl_fact_last_memory_wins_and_memory_is_maxmem():
    # xl: memory=12 then memory=34 -> max_memkb = target_memkb = 34816
    c = cfg('name="k"\nmemory=12\nmemory=34\n' + K)
    assert (c.memory, c.maxmem) == (34, 34)


def test_xl_fact_cpu_list_per_vcpu():
    # xl: cpus = ["0", "1-2", "all"], vcpus = 3 -> [[0], [1, 2], all]
    c = cfg('name="c"\ncpus = ["0", "1-2", "all"]\nvcpus = 3\n' + K)
    assert cfg('name="c"\ncpus = "1"\nmaxvcpus = 2\n' + K).hard_affinity(2) == (frozenset({1}),) * 2
    assert c.hard_affinity(8) == (frozenset({0}), frozenset({1, 2}), frozenset(range(8)))


def test_xl_fact_cpu_list_with_blanks():
    # xl: cpus=" 0, 1" (strtoul skips leading blanks) -> [[0, 1], [0, 1]]
    assert cfg('name="q"\ncpus=" 0, 1"\nvcpus=2\n' + K).hard_affinity(2) == (frozenset({0, 1}),) * 2


def test_xl_fact_type_abbreviations():
    # xl: type="p" -> pv; type="" -> hvm (strncmp with strlen(value)); type="pvh" -> pvh
    assert cfg('name="d"\ntype="p"\n' + K).type == "pv"
    e = refused('name="k"\ntype=""\n' + K)
    assert e.key == "type" and "'hvm' guests are not supported" in str(e)
    assert cfg('name="o"\ntype="pvh"\n' + K).type == "pvh"


def test_xl_fact_backwards_range_is_refused():
    # xl: cpus="3-1" -> "Invalid pcpu range: 3-1."
    e = refused('name="p"\ncpus="3-1"\n' + K)
    assert e.key == "cpus" and e.line == 2 and "invalid pcpu range '3-1'" in str(e)


@pytest.mark.parametrize("text, key, line, message", [
    # xl warned and went on without these; refused here, naming the key
    ('name="j"\nmemory=[1]\n' + K, "memory", 2, "is a list but should be a single value"),
    ('name="j"\nvcpus="x"\n' + K, "vcpus", 2, "'x' is not a valid number"),
    ('name="t"\non_crash="rename-restart"\n' + K, "on_crash", 2,
     "action 'rename-restart' is not supported by xenprivcmd"),
    ('name="t"\non_watchdog="preserve"\n' + K, "on_watchdog", 2, "key not supported by xenprivcmd"),
    ('name="l"\nfoo_bar.baz = 3\n' + K, "foo_bar.baz", 2, "key not supported"),
    ('name="v"\nmemory="-1"\n' + K, "memory", 2, "-1 is out of range 1..16777216 (MiB)"),
    ('name="h"\nvcpus=0\n' + K, "vcpus", 2, "0 is out of range 1..8192"),
    ('name="r"\ncpus=""\n' + K, "cpus", 2, "names no cpu"),
    ('name="s"\ncpus=[["0"]]\n' + K, "cpus", 2, "entry 0 (for vcpu 0) is a list"),
    ('name="c"\ncmdline="x=1"\nroot="r"\nextra="e"\n' + K, "cmdline", 2, "cmdline and root and extra are both set"),
    # xl_parse.c sizes the affinity array by max_vcpus, still 0 without vcpus/maxvcpus: cpus is dropped
    ('name="c"\ncpus="1"\n' + K, "cpus", 2, "xl ignores cpus unless vcpus or maxvcpus is set"),
])
def test_what_xl_let_through_is_refused_by_name(text, key, line, message):
    e = refused(text)
    assert (e.key, e.line) == (key, line)
    assert message in str(e)


# -- DomainConfig: the rules -----------------------------------------------------------------------

def test_defaults_as_xl_and_libxl():
    c = cfg('name = "a"\n' + K)
    assert (c.memory, c.maxmem, c.vcpus, c.maxvcpus) == (32, 32, 1, 1)
    assert (c.on_poweroff, c.on_reboot, c.on_crash) == ("destroy", "restart", "destroy")
    assert c.uuid is None and c.type is None and c.cpus is None and c.hard_affinity(4) is None
    assert c.cpu_weight is None and c.cap is None and c.kernel_cmdline == ""
    assert (cfg('name="a"\nmaxmem=64\n' + K).memory, cfg('name="a"\nmemory=64\n' + K).maxmem) == (64, 64)
    assert cfg('name="a"\nvcpus=3\n' + K).maxvcpus == 3


@pytest.mark.parametrize("keys, cmdline", [
    ({"cmdline": "a b"}, "a b"),
    ({"root": "/dev/xvda"}, "root=/dev/xvda"),
    ({"extra": "quiet"}, "quiet"),
    ({"root": "/dev/xvda", "extra": "quiet"}, "root=/dev/xvda quiet"),
    ({}, ""),
])
def test_kernel_command_line_as_xl_parse_cmdline(keys, cmdline):
    assert DomainConfig(name="a", kernel="/k", **keys).kernel_cmdline == cmdline


def test_types_per_arch():
    plain = cfg('name="a"\n' + K)
    assert plain.domain_type("x86_64") == "pv" and plain.domain_type("aarch64") == "pvh"
    pv = cfg('name="a"\ntype="pv"\n' + K)
    assert pv.domain_type("aarch64") == "pvh"  # libxl converts a pv guest to pvh on Arm
    pvh = cfg('name="a"\ntype="pvh"\n' + K)
    with pytest.raises(ConfigError, match="'pvh' guests are not supported on x86_64"):
        pvh.domain_type("x86_64")
    e = refused('name="a"\n\ntype="pvh"\n' + K, arch="x86_64")
    assert (e.key, e.line) == ("type", 3)
    assert cfg('name="a"\ntype="pvh"\n' + K, arch="aarch64").type == "pvh"


def test_builder_as_xl():
    assert cfg('name="a"\nbuilder="generic"\n' + K).type == "pv"
    assert cfg('name="a"\nbuilder="gen"\ntype="pv"\n' + K).type == "pv"
    e = refused('name="a"\nbuilder="generic"\ntype="pvh"\n' + K)
    assert e.key == "builder" and "contradicting" in str(e)
    assert "'hvm' guests are not supported" in str(refused('name="a"\nbuilder="hvm"\n' + K))


@pytest.mark.parametrize("text, key, message", [
    (K, "name", "name: missing"),
    ('name = "a"\n', "kernel", "kernel: missing"),
    ('name = ""\n' + K, "name", "must not be empty"),
    ('name = "a"\nuuid = "6a3e1f2c11114222833312345678"\n' + K, "uuid", "is not a UUID"),
    ('name = "a"\nuuid = "6a3e1f2c-1111-4222-8333-123456789abg"\n' + K, "uuid", "is not a UUID"),
    ('name = "a"\nmemory = 0\n' + K, "memory", "0 is out of range"),
    ('name = "a"\nmemory = 1.5\n' + K, None, "lexical error"),
    ('name = "a"\nmemory = "1.5"\n' + K, "memory", "'1.5' is not a valid number"),
    ('name = "a"\nmemory = 0128\n' + K, "memory", "'0128' is not a valid number"),
    ('name = "a"\nmemory = 128\nmemory += 1\n' + K, "memory", "can't use += with numbers"),
    ('name = "a"\nvcpus = 4\nmaxvcpus = 2\n' + K, "maxvcpus", "maxvcpus (2) < vcpus (4)"),
    ('name = "a"\ncpus = ["0", "1", "2"]\nvcpus = 2\n' + K, "cpus", "3 entries for 2 vcpus"),
    ('name = "a"\ncpus = "^all"\n' + K, "cpus", "can't combine"),
    ('name = "a"\ncpus = "node:^1"\n' + K, "cpus", "invalid pcpu range 'node:^1'"),
    ('name = "a"\ncpus = "1-"\n' + K, "cpus", "invalid pcpu range '1-'"),
    ('name = "a"\ncpus = "-1"\n' + K, "cpus", "invalid pcpu range '-1'"),
    ('name = "a"\ncpus = []\n' + K, "cpus", "an empty list"),
    ('name = "a"\ncpu_weight = 0\n' + K, "cpu_weight", "0 is out of range 1..65535"),
    ('name = "a"\ncpu_weight = 65536\n' + K, "cpu_weight", "65536 is out of range 1..65535"),
    ('name = "a"\ncap = 201\nvcpus = 2\n' + K, "cap", "at most 200"),
    ('name = "a"\non_reboot = "coredump-restart"\n' + K, "on_reboot", "not supported by xenprivcmd"),
    ('name = "a"\non_reboot = "reboot"\n' + K, "on_reboot", "unknown action 'reboot'"),
    ('name = "a"\non_poweroff = ["destroy"]\n' + K, "on_poweroff", "is a list"),
    ('name = "a"\ntype = "kvm"\n' + K, "type", "'kvm' is not a domain type"),
    ('name = "a"\nkernel = ""\n', "kernel", "must not be empty"),
    ('name = "a"\nramdisk = ""\n' + K, "ramdisk", "must not be empty"),
    ('name = "a"\nname = "b\\n"\n' + K, "name", "control character"),
    ('name = "a"\ndisk = []\n' + K, "disk", "key not supported"),
])
def test_bad_values_name_the_key_and_the_rule(text, key, message):
    e = refused(text, source="g.cfg")
    assert e.key == key, e
    assert message in str(e)
    assert str(e).startswith("g.cfg:")


def test_the_first_unsupported_key_in_the_file_is_named():
    e = refused('vif = ["x"]\nname = "a"\n' + K + 'disk = ["y"]\n')
    assert (e.key, e.line) == ("vif", 1)


def test_constructor_checks_as_from_xl():
    with pytest.raises(ConfigError, match="^memory: 0 is out of range") as ei:
        DomainConfig(name="a", kernel="/k", memory=0)
    assert ei.value.line is None and ei.value.key == "memory"
    with pytest.raises(ConfigError, match="must be an integer"):
        DomainConfig(name="a", kernel="/k", vcpus=True)
    with pytest.raises(ConfigError, match="must be an integer"):
        DomainConfig(name="a", kernel="/k", memory="128")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        DomainConfig(name="a", kernel="/k", vif=["x"])  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        DomainConfig("a", "/k")  # type: ignore[misc]


def test_immutable_hashable_picklable():
    c = DomainConfig(name="a", kernel="/k", uuid="6a3e1f2c-1111-4222-8333-123456789abc", cpus=["0", "1"], vcpus=2)
    with pytest.raises(AttributeError):
        c.memory = 5  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del c.name
    assert c.cpus == ("0", "1") and isinstance(c.uuid, UUID)
    assert pickle.loads(pickle.dumps(c)) == c and hash(pickle.loads(pickle.dumps(c))) == hash(c)
    assert (c.replace(memory=64).memory, c.replace(memory=64).maxmem, c.memory) == (64, 64, 32)
    assert (c.replace(vcpus=3).maxvcpus, c.replace(maxmem=64).memory) == (3, 32)
    assert {c, c.replace()} == {c}
    with pytest.raises(ConfigError, match="maxmem"):
        c.replace(maxmem=64).replace(memory=128)
    e = ConfigError("memory: x", key="memory", line=3, source="a.cfg")
    e2 = pickle.loads(pickle.dumps(e))
    assert (str(e2), e2.key, e2.line, e2.source) == ("a.cfg:3: memory: x", "memory", 3, "a.cfg")


def test_repr_evaluates_back():
    c = cfg('name="b2"\nuuid="6a3e1f2c-1111-4222-8333-123456789abc"\nmemory=256\nmaxmem=512\nvcpus=2\n'
            'cpus=["0","1"]\ncap=50\nextra="console=hvc0"\non_crash="preserve"\n' + K)
    assert eval(repr(c), {"DomainConfig": DomainConfig}) == c


def test_resolving_cpu_lists_as_xl_cfg_5_explains():
    # xl.cfg(5): "CPUs 0-3 belong to node 0, CPUs 4-7 to node 1, CPUs 8-11 to node 2 and CPUs 12-15 to
    # node 3": "nodes:0-3,^node:2" is CPUs 0-7,12-15; "1,node:1,^6" is CPUs 1,4,5,7; "0-3,5,^1" is 0,2,3,5;
    # "all,^7" all but 7
    nodes = {n: range(4 * n, 4 * n + 4) for n in range(4)}

    def r(s: str) -> list:
        return sorted(resolve_cpus(parse_cpus(s), 16, nodes))

    assert r("nodes:0-3,^node:2") == [*range(0, 8), *range(12, 16)]
    assert r("1,node:1,^6") == [1, 4, 5, 7]
    assert r("0-3,5,^1") == [0, 2, 3, 5]
    assert r("all,^7") == [c for c in range(16) if c != 7]
    assert r("all,^node:1") == [c for c in range(16) if not 4 <= c < 8]
    assert r("node:0,node:2,^9-11") == [0, 1, 2, 3, 8]
    with pytest.raises(ValueError, match="no cpu 18"):
        r("18-20")
    with pytest.raises(ValueError, match="no cpu 16"):
        r("14-17")
    with pytest.raises(ValueError, match="no NUMA node 4"):
        r("node:4")
    with pytest.raises(ValueError, match="no cpu left"):
        r("1,^1")


def test_hard_affinity_of_a_short_list_leaves_later_vcpus_unpinned():
    c = DomainConfig(name="a", kernel="/k", vcpus=3, cpus=["1"])
    assert c.hard_affinity(4) == (frozenset({1}), frozenset(range(4)), frozenset(range(4)))
    with pytest.raises(ConfigError, match="cpus: the host has no cpu 5"):
        DomainConfig(name="a", kernel="/k", cpus="5").hard_affinity(4)


# -- round trips ---------------------------------------------------------------------------------

_names = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF, blacklist_characters="\x7f"),
                 min_size=1, max_size=12)
_cpuspec = st.lists(st.one_of(
    st.integers(0, 7).map(str),
    st.tuples(st.integers(0, 3), st.integers(4, 7)).map(lambda t: f"{t[0]}-{t[1]}"),
    st.just("all"), st.integers(0, 1).map(lambda n: f"node:{n}")), min_size=1, max_size=3).map(",".join)


@st.composite
def configs(draw):  # type: ignore[no-untyped-def]
    vcpus = draw(st.integers(1, 4))
    maxvcpus = draw(st.one_of(st.none(), st.integers(vcpus, 8)))
    memory = draw(st.one_of(st.none(), st.integers(1, 4096)))
    maxmem = draw(st.one_of(st.none(), st.integers(memory or 1, 8192)))
    cpus = draw(st.one_of(st.none(), _cpuspec, st.lists(_cpuspec, min_size=1, max_size=vcpus)))
    cmd = draw(st.sampled_from(["cmdline", "rootextra", "none"]))
    kw = dict(name=draw(_names), kernel=draw(_names), vcpus=vcpus, maxvcpus=maxvcpus, memory=memory, maxmem=maxmem,
              cpus=cpus, uuid=draw(st.one_of(st.none(), st.uuids().map(str))),
              type=draw(st.sampled_from([None, "pv", "pvh"])), ramdisk=draw(st.one_of(st.none(), _names)),
              cpu_weight=draw(st.one_of(st.none(), st.integers(1, 65535))),
              cap=draw(st.one_of(st.none(), st.integers(0, 100 * (maxvcpus or vcpus)))),
              on_poweroff=draw(st.sampled_from(["destroy", "restart", "preserve"])),
              on_reboot=draw(st.sampled_from(["destroy", "restart", "preserve"])),
              on_crash=draw(st.sampled_from(["destroy", "restart", "preserve"])))
    if cmd == "cmdline":
        kw["cmdline"] = draw(st.text(max_size=20).filter(lambda s: all(c >= " " or c in "\t\n\r\a\b\f\v" for c in s)
                                                         and "\x7f" not in s and "\0" not in s))
    elif cmd == "rootextra":
        kw["root"] = draw(st.one_of(st.none(), _names))
        kw["extra"] = draw(st.one_of(st.none(), _names))
    return DomainConfig(**kw)


@settings(max_examples=300, deadline=None)
@given(configs())
def test_to_xl_reads_back_equal(c):
    text = c.to_xl()
    assert DomainConfig.from_xl(text) == c
    assert eval(repr(c), {"DomainConfig": DomainConfig}) == c


def test_from_xl_file(tmp_path):
    p = tmp_path / "g.cfg"
    p.write_bytes(b'name = "g"\nkernel = "/k"\nmemory = 64\n')
    assert DomainConfig.from_xl_file(str(p)).memory == 64
    p.write_bytes(b'name = "g"\nkernel = "/k"\nextra = "\xff"\n')
    with pytest.raises(ConfigError, match=r"g\.cfg:3: not UTF-8"):
        DomainConfig.from_xl_file(str(p))
    with pytest.raises(FileNotFoundError):
        DomainConfig.from_xl_file(str(tmp_path / "none.cfg"))


# -- the package's promises ----------------------------------------------------------------------

def test_lazy_at_the_top_and_no_construct():
    code = ("import sys, xenprivcmd\nassert 'xenprivcmd.build' not in sys.modules\n"
            "c = xenprivcmd.DomainConfig(name='a', kernel='/k')\n"
            "assert xenprivcmd.ConfigError is xenprivcmd.errors.ConfigError\n"
            "assert 'construct' not in sys.modules, 'construct loaded'\nprint(type(c).__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "xenprivcmd.build.config"
    assert issubclass(ConfigError, ValueError) and issubclass(ConfigError, xenprivcmd.XenprivcmdError)
