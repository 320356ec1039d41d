"""A griffe extension for the API reference: Sphinx roles become cross-references, and
an override without a docstring shows the docstring of the method it overrides.

The docstrings use reStructuredText roles (``:meth:`get```, ``:class:`~statestore.StateStore```)
because they read well in ``help()`` and IDEs; mkdocstrings renders Markdown and would
show them as literal text. This rewrites each role, at docs build time only, into an
*optional* autorefs link: a link when the target is in the reference, plain code when
it is not (so an unresolvable role never fails ``mkdocs build --strict``). The source
stays as written; tests/docs/test_api_reference.py fails on any role left in the HTML.

Backends override the contract's methods without repeating its docstrings; mkdocstrings
hides members without one, so each such override borrows the nearest base class's.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(meth|func|class|attr|mod|exc|data|obj|const):`(~?)([^`<>]+)`")
CALLABLE_ROLES = {"meth", "func"}


def _target(obj: griffe.Object, name: str) -> str:
    """The full path ``name`` means where ``obj`` is documented (best effort)."""
    name = name.lstrip(".")
    if name.startswith("statestore."):
        return name
    first, _, rest = name.partition(".")
    scopes = [obj] if obj.is_class or obj.is_module else []
    scopes += [parent for parent in [obj.parent] if parent is not None]
    for scope in scopes:
        try:
            found = scope.resolve(first)
        except (griffe.NameResolutionError, AttributeError, KeyError):
            continue
        return f"{found}.{rest}" if rest else found
    return f"statestore.{name}"


def rewrite(text: str, obj: griffe.Object) -> str:
    """``text`` with every Sphinx role replaced by an optional autorefs link."""

    def replace(match: re.Match[str]) -> str:
        role, short, name = match.groups()
        title = name.rsplit(".", 1)[-1] if short else name.lstrip(".")
        if role in CALLABLE_ROLES:
            title += "()"
        return f'<autoref identifier="{_target(obj, name)}" optional><code>{title}</code></autoref>'

    return ROLE.sub(replace, text)


class SphinxRoles(griffe.Extension):
    """Rewrite the roles of every docstring in each loaded package."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        classes: list[griffe.Class] = []
        self._walk(pkg, set(), classes)
        for cls in classes:
            _inherit_docstrings(cls)

    def _walk(self, obj: griffe.Object, seen: set[str], classes: list[griffe.Class]) -> None:
        if obj.path in seen:
            return
        seen.add(obj.path)
        if isinstance(obj, griffe.Class):
            classes.append(obj)
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value, obj)
        for member in obj.members.values():
            if not member.is_alias:
                self._walk(member, seen, classes)  # type: ignore[arg-type]


def _inherit_docstrings(cls: griffe.Class) -> None:
    try:
        bases = cls.mro()
    except (ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return  # a base outside the loaded packages: nothing to borrow from
    for name, member in cls.members.items():
        if member.is_alias or member.docstring is not None or not member.is_function:
            continue
        for base in bases:
            donor = base.members.get(name)
            if donor is not None and not donor.is_alias and donor.docstring is not None:
                member.docstring = griffe.Docstring(donor.docstring.value, parent=member)  # type: ignore[arg-type]
                break
