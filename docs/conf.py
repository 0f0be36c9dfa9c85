"""Sphinx configuration of the xenprivcmd documentation (built by tools/run-tests:
``sphinx-build -W -b html docs results/docs/html`` and ``-b doctest``)."""

from __future__ import annotations

import doctest
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # the tree's xenprivcmd, not an installed one
sys.path.insert(0, os.path.join(HERE, "_ext"))

import xenprivcmd  # noqa: E402

project = "xenprivcmd"
author = "xenprivcmd maintainers"
copyright = "2026, xenprivcmd maintainers"  # noqa: A001 - Sphinx's name
release = xenprivcmd.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.intersphinx",
    "myst_parser",
    "xenprivcmd_docs",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
root_doc = "index"
nitpicky = False

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
# The docstrings' examples run in every doctest build, against sim:///
# (nothing here needs a hypervisor).
doctest_global_setup = "import xenprivcmd"
doctest_test_doctest_blocks = "default"
# exception messages are compared too (Sphinx ignores their detail by default)
doctest_default_flags = doctest.ELLIPSIS | doctest.DONT_ACCEPT_TRUE_FOR_1

intersphinx_mapping: dict[str, tuple[str, str | None]] = {}
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

html_theme = "alabaster"
html_title = f"xenprivcmd {release}"
html_static_path: list[str] = []
