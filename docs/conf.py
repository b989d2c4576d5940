"""Sphinx configuration. Build with `make docs` (warnings are errors)."""

import scalekit

project = "scalekit"
author = "scalekit developers"
copyright = "2026, scalekit developers"
release = scalekit.__version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode"]
napoleon_google_docstring = True
napoleon_numpy_docstring = False
autodoc_member_order = "bysource"
autodoc_typehints = "description"
html_theme = "furo"
html_title = f"scalekit {release}"
exclude_patterns = ["_build"]
