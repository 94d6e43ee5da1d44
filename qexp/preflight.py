"""Checks of the `qexp` command line before Hydra composes anything (fast: no torch).

- A YAML file that does not parse is named with its line, in one line, instead of a
  90-line traceback from inside Hydra.
- ``+observr=minmax`` (``+`` adds a key Hydra's schema lacks) fails with "did you mean
  observer?" instead of composing the default job with an ignored key.
- ``--config-dir DIR`` takes precedence over the packaged conf/: Hydra puts it after the
  primary config dir, so a copy of ``conf/model/yolov8n.yaml`` edited in DIR would be
  ignored. qexp makes DIR the primary dir and the packaged conf/ its fallback.

:func:`compose_check` runs next, once the plugins are loaded (their schemas are part of the
config): it composes what Hydra will and refuses, in one line, what Hydra or a job's config
check would refuse, and an output dir that cannot be written. Everything refused here exits 2
(README, exit codes), before any job runs.
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


def _one_line(e: BaseException | None) -> str:
    """Hydra's / OmegaConf's error and its causes in one line: each one's first line (a
    cause's that repeats it, or is OmegaConf's template, left out), without the search path."""
    parts: list[str] = []
    while e is not None and len(parts) < 3:
        text = str(e).split("Config search path:")[0].strip()
        first = text.splitlines()[0].rstrip(":").strip() if text else ""
        if first and "$VALUE" not in first and not any(first in x for x in parts):
            parts.append(first)
        e = e.__cause__ or e.__context__
    return ": ".join(parts)


def _values(o, loader) -> list[str]:
    """The override strings a (possibly swept) override stands for; each choice of a config
    group checked against the group's options (one line with a suggestion, not Hydra's 15)."""
    values = None
    if o.is_discrete_sweep():
        o.config_loader = loader  # a glob() lists the group's options
        values = list(o.sweep_string_iterator())
    options = [] if o.is_delete() else loader.get_group_options(o.key_or_group)
    for v in values if values is not None else [o.get_value_element_as_str()]:
        if options and v not in options and v != "null":
            close = difflib.get_close_matches(v, options, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise UsageError(
                f"unknown choice {v!r} for {o.key_or_group} in {o.input_line!r}{hint} "
                f"(choices: {', '.join(options)})"
            )
    return [o.input_line] if values is None else [f"{o.get_key_element()}={v}" for v in values]


def compose_check(p: Plan) -> None:
    """Compose the config as Hydra will, so that what Hydra would refuse (an unknown choice,
    a value of the wrong type, a misspelt key in a YAML of ``--config-dir``) is refused here,
    in one line, before anything runs; for a sweep, every listed value is composed (value by
    value, not their product). Then the output dir must be writable. Raises UsageError."""
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path, get_args_parser
    from hydra.core.config_search_path import SearchPathQuery
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from hydra.types import RunMode
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from qexp.config.validate import ConfigError, validate

    args = get_args_parser().parse_args(p.argv)
    refused = (HydraException, OmegaConfBaseException, ValueError, KeyError)
    name = args.config_name or "config"
    primary = Path(args.config_path).resolve() if args.config_path else p.config_path
    # the search path hydra.main builds: the primary dir, then --config-dir before the schemas
    search = create_config_search_path(f"file://{primary}")
    if args.config_dir:
        where = f"file://{Path(args.config_dir).resolve()}"
        search.prepend("command-line", where, anchor=SearchPathQuery(provider="schema"))
    GlobalHydra.instance().clear()  # a Hydra left set up by an earlier call in this process
    try:
        parsed = OverridesParser.create().parse_overrides(overrides=list(args.overrides))
        hydra = Hydra.create_main_hydra2(task_name="qexp", config_search_path=search)
        loader = hydra.config_loader
        columns = [_values(o, loader) for o in parsed]
        mode = RunMode.MULTIRUN if args.multirun else RunMode.RUN
        cfg, multirun = None, bool(args.multirun)
        for i in range(max((len(c) for c in columns), default=1)):
            overrides = [c[min(i, len(c) - 1)] for c in columns]
            composed = hydra.compose_config(
                name, overrides, run_mode=mode, with_log_configuration=False
            )
            if cfg is None:  # an experiment config may make it a sweep (hydra.mode)
                cfg = composed
                multirun = multirun or cfg.hydra.mode == RunMode.MULTIRUN
                swept = [c[0].split("=", 1)[0] for c in columns if len(c) > 1]
                if swept and not multirun:
                    raise UsageError(
                        f"{', '.join(swept)}: several values listed; add -m to sweep them "
                        "(a list value is written key=[a,b])"
                    )
            job = OmegaConf.masked_copy(composed, [str(k) for k in composed if k != "hydra"])
            validate(job)  # every job's check (bounds, +key= misspelt): here, for this one
    except ConfigError as e:
        raise UsageError(f"bad config: {e}") from None
    except refused as e:
        raise UsageError(_one_line(e)) from None
    finally:
        GlobalHydra.instance().clear()  # hydra.main sets up its own
    if not (args.cfg or args.info or args.shell_completion):  # those only print
        check_output_dir(cfg, multirun)


def check_output_dir(cfg, multirun: bool) -> None:
    """Refuse an output dir qexp cannot write (``paths.output_dir``, and Hydra's run or sweep
    dir when it lies elsewhere), naming it, instead of a traceback from inside Hydra."""
    import os
    import tempfile

    out = Path(str(cfg.paths.output_dir))
    try:
        out.mkdir(parents=True, exist_ok=True)  # the job would make it too
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise UsageError(
            f"paths.output_dir={cfg.paths.output_dir}: cannot write there: {e.strerror or e}"
            + (f" ({e.filename})" if e.filename and str(e.filename) != str(out) else "")
        ) from None
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    where = Path(str(cfg.hydra.sweep.dir if multirun else cfg.hydra.run.dir)).resolve()
    if where.is_relative_to(out.resolve()):
        return
    up = where
    while not up.exists() and up != up.parent:
        up = up.parent
    if not up.is_dir() or not os.access(up, os.W_OK | os.X_OK):
        raise UsageError(f"{key}={where}: cannot write there ({up} is not a writable directory)")
