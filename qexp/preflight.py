"""Checks of the `qexp` command line before Hydra composes anything (fast: no torch).

- A YAML file that does not parse is named with its line, in one line, instead of a
  90-line traceback from inside Hydra.
- ``+observr=minmax`` (``+`` adds a key Hydra's schema lacks) fails with "did you mean
  observer?" instead of composing the default job with an ignored key.
- ``--config-dir DIR`` takes precedence over the packaged conf/: Hydra puts it after the
  primary config dir, so a copy of ``conf/model/yolov8n.yaml`` edited in DIR would be
  ignored. qexp makes DIR the primary dir and the packaged conf/ its fallback.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

CONF_DIR = Path(__file__).resolve().parent / "conf"


class UsageError(ValueError):
    """A command line or config file qexp refuses before running anything (exit code 2)."""


@dataclass
class Plan:
    """How to call Hydra: its argv, the primary config dir, every dir configs come from."""

    argv: list[str]
    config_path: Path = CONF_DIR
    dirs: list[Path] = field(default_factory=lambda: [CONF_DIR])


def groups(dirs: list[Path]) -> dict[str, list[str]]:
    """Config group -> its choices, over ``dirs`` (``hydra/launcher`` style names for nesting)."""
    found: dict[str, set[str]] = {}
    for d in dirs:
        for f in Path(d).rglob("*.yaml"):
            rel = f.relative_to(d)
            if len(rel.parts) > 1:
                found.setdefault("/".join(rel.parts[:-1]), set()).add(f.stem)
    return {g: sorted(c) for g, c in sorted(found.items())}


def check_yaml(dirs: list[Path]) -> None:
    """Raise UsageError naming the first YAML file (and line) that does not parse."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    for d in dirs:
        for f in sorted(Path(d).rglob("*.yaml")):
            try:
                with open(f, encoding="utf-8") as fh:
                    yaml.load(fh, Loader=loader)  # noqa: S506 - a safe loader
            except yaml.MarkedYAMLError as e:
                mark = e.problem_mark or e.context_mark
                where = f"{f}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(f)
                what = " ".join(x for x in (e.problem, f"({e.context})" if e.context else "") if x)
                raise UsageError(f"{where}: invalid YAML: {what}") from None
            except (yaml.YAMLError, UnicodeDecodeError, OSError) as e:
                raise UsageError(f"{f}: cannot read this config file: {e}") from None


def top_level_keys() -> list[str]:
    from qexp.config.schema import Config

    return [f.name for f in dataclasses.fields(Config)]


def check_overrides(overrides: list[str], dirs: list[Path]) -> None:
    """Refuse an override whose top-level key is neither a config key nor a config group."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides=overrides)
    except HydraException:
        return  # a syntax error: Hydra reports it in its own words
    axes = {g.split("/")[0] for g in groups(dirs)}
    known = set(top_level_keys()) | axes | {"hydra"}
    for o in parsed:
        top = o.key_or_group.split("/")[0].split(".")[0]
        if top in known:
            continue
        close = difflib.get_close_matches(top, sorted(known - {"hydra"}), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise UsageError(
            f"unknown config key {top!r} in {o.input_line!r}{hint} "
            f"(axes: {', '.join(sorted(axes - {'hydra'}))}; other keys: "
            f"{', '.join(sorted(set(top_level_keys()) - axes))}; `qexp help` lists the choices)"
        )


def _swap_config_dir(argv: list[str], packaged: Path) -> list[str]:
    """``argv`` with the value of --config-dir / -cd replaced by ``packaged``."""
    out, swap = [], False
    for a in argv:
        if swap:
            out.append(str(packaged))
            swap = False
        elif a in ("--config-dir", "-cd"):
            out.append(a)
            swap = True
        elif a.startswith("--config-dir="):
            out.append(f"--config-dir={packaged}")
        else:
            out.append(a)
    return out


def plan(argv: list[str]) -> Plan:
    """Check ``argv`` (Hydra's flags + overrides) and say how to call Hydra with it."""
    from hydra._internal.utils import get_args_parser

    args = get_args_parser().parse_args(argv)  # Hydra's own flags; exits 2 on a bad flag
    p = Plan(argv=list(argv))
    if args.config_path is not None:
        p.dirs = [Path(args.config_path).resolve()]  # Hydra's --config-path: the user's own tree
    if args.config_dir is not None:
        user = Path(args.config_dir).resolve()
        if not user.is_dir():
            raise UsageError(f"--config-dir {args.config_dir}: not a directory")
        p.dirs = [user, *p.dirs]
        if args.config_path is None:
            # Hydra searches the primary dir first and --config-dir after it: swap them, so
            # the user's files win and the packaged conf/ fills in the rest (config.yaml too)
            p.config_path = user
            p.argv = _swap_config_dir(p.argv, CONF_DIR)
    check_yaml(p.dirs)
    check_overrides(list(args.overrides), p.dirs)
    return p
