"""Generate the command-line and configuration references in docs/ from the code itself.

    python scripts/gen_reference.py          # rewrite docs/cli.md and docs/configuration.md
    python scripts/gen_reference.py --check  # exit 1 (and show a diff) if either is stale

Only the part of each page between its ``<!-- generated:NAME:start -->`` and
``<!-- generated:NAME:end -->`` markers is generated; the rest is written by hand.

- docs/cli.md: every command and sub-command, from the Click command tree that typer
  builds for ``statestore.cli.app`` (usage, description, arguments, options).
- docs/configuration.md: every key of ``StateStoreConfig`` (section, key, type, default,
  environment variable, rule), from the pydantic model fields.
"""

from __future__ import annotations

import argparse
import difflib
import inspect
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import get_args, get_origin

import typer
import typer.main
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from statestore.cli import app
from statestore.config import ENV_PREFIX, StateStoreConfig

ROOT = Path(__file__).resolve().parents[1]
COMMAND = "python scripts/gen_reference.py"
NONE = "—"  # a table cell with nothing to say

Command = TyperCommand | TyperGroup
Param = TyperArgument | TyperOption


# --- markdown helpers --------------------------------------------------------------------

_WORD_EDGE_UNDERSCORE = re.compile(r"(?<!\w)_|_(?!\w)")


def md_text(text: str) -> str:
    """``text`` as literal markdown inline text (safe in a table cell too)."""
    text = text.replace("\\", "\\\\")
    for char in "`*[]|":
        text = text.replace(char, "\\" + char)
    text = text.replace("<", "&lt;")
    # Underscores inside words (NEVER_EXPIRE) are never emphasis: leave them readable.
    return _WORD_EDGE_UNDERSCORE.sub(r"\\_", text)


def code(text: str) -> str:
    """``text`` as an inline code span (a table cell's pipes escaped)."""
    fence = "``" if "`" in text else "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}".replace("|", "\\|")


def paragraphs(text: str | None) -> list[str]:
    """A docstring or help text as paragraphs, each on one line.

    Like Click, the text stops at a form feed (``\\f``).
    """
    body = inspect.cleandoc(text or "").partition("\f")[0]
    return [" ".join(block.split()) for block in re.split(r"\n\s*\n", body) if block.strip()]


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A markdown table; cells are already markdown."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def splice(text: str, name: str, body: str) -> str:
    """``text`` with the block between the ``generated:NAME`` markers replaced by ``body``."""
    start, end = f"<!-- generated:{name}:start -->", f"<!-- generated:{name}:end -->"
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise ValueError(f"expected one {start} line followed by one {end} line")
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    return f"{head}{start}\n{body.strip()}\n\n{end}{tail}"


def _banner(source: str) -> str:
    return f"<!-- Generated from {source} by `{COMMAND}`: do not edit by hand. -->"


# --- the command line --------------------------------------------------------------------


def _root_command() -> TyperGroup:
    root = typer.main.get_command(app)
    if not isinstance(root, TyperGroup):
        raise TypeError(f"expected the statestore app to be a group, got {type(root).__name__}")
    return root


def _subcommands(group: TyperGroup, ctx: typer.Context) -> Iterator[tuple[str, Command]]:
    """The visible sub-commands of ``group``, in the order ``--help`` lists them."""
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        if not isinstance(command, (TyperCommand, TyperGroup)):
            raise TypeError(f"{name}: not a typer command ({type(command).__name__})")
        yield name, command


def walk(
    command: Command, name: str = "statestore", parent: typer.Context | None = None
) -> Iterator[tuple[Command, typer.Context]]:
    """Every visible command below (and including) ``command``, depth first."""
    ctx = typer.Context(command, parent=parent, info_name=name)
    yield command, ctx
    if isinstance(command, TyperGroup):
        for sub_name, sub in _subcommands(command, ctx):
            yield from walk(sub, sub_name, ctx)


def _params(command: Command) -> list[Param]:
    params: list[Param] = []
    for param in command.params:
        if not isinstance(param, (TyperArgument, TyperOption)):
            raise TypeError(f"{param!r}: not a typer parameter ({type(param).__name__})")
        if not param.hidden:
            params.append(param)
    return params


def _anchor(path: str) -> str:
    """The id mkdocs' toc extension gives the heading of command ``path``."""
    return re.sub(r"[^\w]+", "-", path.lower()).strip("-")


def _number(value: float) -> str:
    return format(value, "g") if isinstance(value, float) else str(value)


def _type(param: Param) -> str:
    if isinstance(param, TyperOption) and param.is_flag:
        return "flag"
    annotation: object = param.type_descriptor.annotation
    if get_origin(annotation) is list:
        (annotation,) = get_args(annotation)  # the element of a repeated argument or option
    label = code(annotation.__name__ if isinstance(annotation, type) else str(annotation))
    bounds = [f"≥ {_number(param.min)}"] if param.min is not None else []
    bounds += [f"≤ {_number(param.max)}"] if param.max is not None else []
    if bounds:
        label += ", " + " and ".join(bounds)
    if param.nargs == -1:
        label += ", one or more" if param.required else ", any number"
    elif param.multiple:
        label += ", repeatable"
    return label


def _default(param: Param, ctx: typer.Context) -> str:
    if param.required:
        return "required"
    value = param.get_default(ctx, call=False)
    if callable(value):
        return "computed"
    if isinstance(param, TyperOption) and param.is_flag:
        if param.secondary_opts and value is not None:
            return code((param.opts if value else param.secondary_opts)[0])
        return "off" if value is False else NONE
    if value is None or value in ((), []):
        return NONE
    return code(_number(value) if isinstance(value, (int, float)) else str(value))


def _help(param: Param) -> str:
    text = md_text(" ".join(paragraphs(param.help))) or NONE
    envvar = param.envvar
    if envvar:
        names = [envvar] if isinstance(envvar, str) else list(envvar)
        text += " Environment variable: " + ", ".join(code(n) for n in names) + "."
    return text


def _param_rows(params: Sequence[Param], ctx: typer.Context) -> list[list[str]]:
    rows = []
    for param in params:
        if isinstance(param, TyperOption):
            label = " / ".join(code(opt) for opt in [*param.opts, *param.secondary_opts])
        else:
            label = code(param.metavar or param.name)
        rows.append([label, _type(param), _default(param, ctx), _help(param)])
    return rows


def _command_section(command: Command, ctx: typer.Context) -> list[str]:
    path = ctx.command_path
    level = max(2, min(path.count(" ") + 1, 4))  # statestore, its commands: h2
    lines = [f"{'#' * level} `{path}`", ""]
    description = [md_text(p) for p in paragraphs(command.help)]
    if command.deprecated:
        description.append("**Deprecated.**")
    for paragraph in description:
        lines += [paragraph, ""]
    usage = " ".join([path, *command.collect_usage_pieces(ctx)])
    lines += ["```text", usage, "```", ""]
    params = _params(command)
    arguments = [p for p in params if isinstance(p, TyperArgument)]
    options = [p for p in params if isinstance(p, TyperOption)]
    if arguments:
        header = ["argument", "type", "default", "description"]
        lines += ["**Arguments**", "", *table(header, _param_rows(arguments, ctx)), ""]
    if options:
        header = ["option", "type", "default", "description"]
        lines += ["**Options**", "", *table(header, _param_rows(options, ctx)), ""]
    if isinstance(command, TyperGroup):
        links = [
            f"[`{name}`](#{_anchor(f'{path} {name}')})" for name, _ in _subcommands(command, ctx)
        ]
        lines += ["**Commands:** " + ", ".join(links) + ".", ""]
    return lines


def render_cli() -> str:
    """The generated part of docs/cli.md."""
    commands = list(walk(_root_command()))
    overview = [
        [
            f"[`{ctx.command_path}`](#{_anchor(ctx.command_path)})",
            md_text(next(iter(paragraphs(command.help)), "")) or NONE,
        ]
        for command, ctx in commands
        if not isinstance(command, TyperGroup)
    ]
    lines = [
        _banner("the command tree of `statestore.cli.app`"),
        "",
        "## Commands",
        "",
        *table(["command", "what it does"], overview),
        "",
        "Every command also takes `--help`.",
        "",
    ]
    for command, ctx in commands:
        lines += _command_section(command, ctx)
    return "\n".join(lines)


# --- the configuration -------------------------------------------------------------------


def _sections() -> Iterator[tuple[str, type[BaseModel]]]:
    for section, field in StateStoreConfig.model_fields.items():
        model = field.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise TypeError(f"StateStoreConfig.{section}: not a section model ({model!r})")
        yield section, model


def env_var(section: str, key: str) -> str:
    """The environment variable that sets ``[section] key`` (see ``config._read_env``)."""
    return f"{ENV_PREFIX}{section.upper()}__{key.upper()}"


def config_keys() -> Iterator[tuple[str, str, FieldInfo]]:
    """``(section, key, field)`` for every setting, in declaration order."""
    for section, model in _sections():
        for key, field in model.model_fields.items():
            yield section, key, field


def config_value(value: object) -> str:
    """``value`` written the way the environment or an INI file would give it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


_BOUNDS = (
    ("gt", "> {}"),
    ("ge", "≥ {}"),
    ("lt", "< {}"),
    ("le", "≤ {}"),
    ("multiple_of", "a multiple of {}"),
    ("min_length", "at least {} characters"),
    ("max_length", "at most {} characters"),
    ("pattern", "matches {}"),
)


def _constraints(field: FieldInfo) -> list[str]:
    found = []
    for item in field.metadata:
        for attribute, template in _BOUNDS:
            value = getattr(item, attribute, None)
            if value is not None:
                found.append(template.format(code(str(value)) if attribute == "pattern" else value))
    return found


def _config_row(section: str, key: str, field: FieldInfo) -> list[str]:
    annotation = field.annotation
    kind = annotation.__name__ if isinstance(annotation, type) else str(annotation)
    if field.is_required():
        default = "required"
    else:
        value = config_value(field.get_default(call_default_factory=True))
        default = code(value) if value else "empty"
    constraints = _constraints(field)
    sentences = [f"Must be {' and '.join(constraints)}."] if constraints else []
    sentences += [md_text(p) for p in paragraphs(field.description)]
    rule = " ".join(sentences) or NONE
    return [code(f"[{section}]"), code(key), code(kind), default, code(env_var(section, key)), rule]


def render_config() -> str:
    """The generated part of docs/configuration.md."""
    header = ["section", "key", "type", "default", "environment variable", "rule"]
    rows = [_config_row(section, key, field) for section, key, field in config_keys()]
    return "\n".join([_banner("`StateStoreConfig`"), "", *table(header, rows)])


# --- the pages ---------------------------------------------------------------------------

PAGES: dict[str, tuple[str, Callable[[], str]]] = {
    "docs/cli.md": ("cli", render_cli),
    "docs/configuration.md": ("config", render_config),
}


def generate(root: Path = ROOT) -> dict[Path, tuple[str, str]]:
    """``{page: (current text, generated text)}`` for every generated page."""
    pages = {}
    for relative, (name, render) in PAGES.items():
        path = root / relative
        current = path.read_text(encoding="utf-8")
        try:
            pages[path] = (current, splice(current, name, render()))
        except ValueError as exc:
            raise ValueError(f"{relative}: {exc}") from None
    return pages


def stale_pages(root: Path = ROOT) -> dict[Path, str]:
    """``{page: unified diff}`` for every page whose generated part is out of date."""
    stale = {}
    for path, (current, wanted) in generate(root).items():
        if current != wanted:
            name = str(path.relative_to(root))
            diff = difflib.unified_diff(
                current.splitlines(keepends=True),
                wanted.splitlines(keepends=True),
                f"{name} (current)",
                f"{name} (generated)",
            )
            stale[path] = "".join(diff)
    return stale


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if a page is stale"
    )
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_pages()
        for path, diff in stale.items():
            sys.stdout.write(diff)
            print(f"{path.relative_to(ROOT)} is out of date: run `{COMMAND}`", file=sys.stderr)
        return 1 if stale else 0
    for path, (current, wanted) in generate().items():
        if current != wanted:
            with path.open("w", encoding="utf-8", newline="\n") as file:
                file.write(wanted)
            print(f"updated {path.relative_to(ROOT)}")
        else:
            print(f"{path.relative_to(ROOT)} is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
