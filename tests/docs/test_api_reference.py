"""The rendered API reference: every public method (inherited ones too), every field
of ``StateItem``, and no Sphinx role left as literal text (``:meth:`get```).

The site is built once per session into a temporary directory (about 10 s), or read
from ``$STATESTORE_DOCS_SITE`` when a build already exists (CI builds the docs anyway).
"""

from __future__ import annotations

import dataclasses
import html
import inspect
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import statestore
from statestore.access_core import StateItems, StateKeys
from statestore.metastore import MetastoreStateBackend

ROOT = Path(__file__).resolve().parents[2]
ROLE = re.compile(r":(?:py:)?(?:meth|func|class|attr|mod|exc|data|obj|const):`?\w")
# Each class as the reference renders it (its heading's path).
DOCUMENTED: dict[str, type] = {
    "statestore.StateStore": statestore.StateStore,
    "statestore.TaskStateAccessor": statestore.TaskStateAccessor,
    "statestore.AssetStateAccessor": statestore.AssetStateAccessor,
    "statestore.AssetStateAccessors": statestore.AssetStateAccessors,
    "statestore.access_core.StateKeys": StateKeys,
    "statestore.access_core.StateItems": StateItems,
    "statestore.BaseStateBackend": statestore.BaseStateBackend,
    "statestore.InMemoryStateBackend": statestore.InMemoryStateBackend,
    "statestore.metastore.MetastoreStateBackend": MetastoreStateBackend,
}
# The mapping protocol, documented on each accessor page.
MAPPING = ("__getitem__", "__setitem__", "__delitem__", "__contains__", "__iter__", "__len__")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("STATESTORE_DOCS_SITE")
    if given:
        return Path(given)
    if shutil.which("mkdocs") is None:
        pytest.fail("mkdocs is not installed (pip install -e '.[dev]')")
    out = tmp_path_factory.mktemp("site")
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    return out


def _text(page: Path) -> str:
    """What a reader sees: the page without tags, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8")))


def test_no_sphinx_role_is_rendered_as_literal_text(site: Path) -> None:
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 10
    found = []
    for page in pages:
        text = _text(page)
        for match in ROLE.finditer(text):
            found.append(
                f"{page.relative_to(site)}: ...{text[match.start() - 40 : match.end() + 30]!r}"
            )
    assert not found, "\n".join(found[:20])


def _public_members(cls: type) -> set[str]:
    names = {name for name, _ in inspect.getmembers(cls) if not name.startswith("_")}
    if dataclasses.is_dataclass(cls):
        names |= {field.name for field in dataclasses.fields(cls)}
    return names


@pytest.mark.parametrize("path", list(DOCUMENTED))
def test_every_public_member_is_in_the_reference_inherited_ones_too(site: Path, path: str) -> None:
    page = (site / "api" / "index.html").read_text(encoding="utf-8")
    anchors = set(re.findall(r'id="([\w.]+)"', page))
    assert path in anchors
    cls = DOCUMENTED[path]
    wanted = _public_members(cls)  # may be none: the views are all protocol
    missing = sorted(name for name in wanted if f"{path}.{name}" not in anchors)
    assert not missing, f"{path}: not in docs/api.md's rendered page: {missing}"


@pytest.mark.parametrize("path", ["statestore.TaskStateAccessor", "statestore.AssetStateAccessor"])
def test_the_mapping_protocol_is_documented_on_each_accessor(site: Path, path: str) -> None:
    page = (site / "api" / "index.html").read_text(encoding="utf-8")
    for name in MAPPING:
        assert f'id="{path}.{name}"' in page, name
    for inherited in ("get", "get_item", "delete", "keys", "items", "aget", "akeys"):
        assert f'id="{path}.{inherited}"' in page, inherited


def test_state_item_shows_every_field(site: Path) -> None:
    page = (site / "api" / "index.html").read_text(encoding="utf-8")
    for field in dataclasses.fields(statestore.StateItem):
        assert f'id="statestore.StateItem.{field.name}"' in page, field.name
