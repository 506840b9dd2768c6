"""MkDocs hook: the docstrings' Sphinx roles (``:func:`fit```, ``:class:`~models.VAE```) shown as
the code they name. mkdocstrings renders the role's target as code and leaves the role's name
before it; this drops the name, and the ``~`` that Sphinx reads as "the last part only"."""

import re

ROLE = re.compile(r":(?:py:)?(?:mod|func|class|meth|attr|data|exc|obj):(?=<code>)")
TILDE = re.compile(r"<code>~(?:[\w.]+\.)?([\w]+)</code>")


def on_page_content(html: str, page, config, files) -> str:
    return TILDE.sub(r"<code>\1</code>", ROLE.sub("", html))
