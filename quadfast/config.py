"""Experiment configuration files (TOML).

A configuration names an *experiment* (the analysis and figures, :mod:`quadfast.experiments`)
and a *procedure* (what one run executes, :mod:`quadfast.procedures`), and describes a grid
of runs::

    experiment = "scaling"        # analysis and figures drawn from the runs
    procedure = "stiefel-sgd"     # what each run executes
    name = "scaling"              # used for the default output folder

    [params]                      # parameters shared by every run
    d = 1024
    lr_d = 1e-3

    [grid]                        # cartesian product: one run per combination
    alpha = [0.5, 1.0, 1.5]
    seed = [0]

    [analysis]                    # options of the experiment's analysis
    j_lo = 2

    [reduced.params]              # overrides for a reduced-size run (the test suite)
    d = 128

Every key is checked against the procedure's parameter table (names, types, ranges);
an error names the key (``params.d``, ``grid.alpha[1]``, ...). The shipped configurations
live in ``quadfast/configs/`` (:func:`shipped`) and serve as templates.
"""
from __future__ import annotations

import copy
import itertools
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10: the backport (a conditional dependency)
    import tomli as tomllib

__all__ = ["ConfigError", "Config", "load_config", "parse_config", "shipped", "shipped_path"]

_TOP_KEYS = {"experiment", "procedure", "name", "description", "params", "grid", "analysis", "reduced"}


class ConfigError(ValueError):
    """A configuration problem; the message names the file and the key."""


@dataclass
class Config:
    """A validated experiment configuration.

    Attributes
    ----------
    experiment, procedure, name, description : str
    params : dict
        Parameters shared by every run (as written; defaults are filled per run).
    grid : dict of str -> list
        Axes of the cartesian product (insertion order = loop order, last fastest).
    analysis : dict
        Options of the experiment's analysis.
    source : str
        Where the configuration came from (file path or ``<string>``).
    """

    experiment: str
    procedure: str
    name: str
    params: dict = field(default_factory=dict)
    grid: dict = field(default_factory=dict)
    analysis: dict = field(default_factory=dict)
    description: str = ""
    source: str = "<string>"
    reduced: dict = field(default_factory=dict)

    def runs(self) -> list[dict]:
        """The resolved parameters of every run (defaults filled, derived values added)."""
        from .procedures import get_procedure

        proc = get_procedure(self.procedure)
        axes = list(self.grid.items())
        out = []
        for combo in itertools.product(*(v for _, v in axes)) if axes else [()]:
            p = dict(self.params)
            p.update({k: v for (k, _), v in zip(axes, combo)})
            where = ", ".join(f"{k}={v!r}" for (k, _), v in zip(axes, combo)) or "params"
            try:
                out.append(proc.resolve(p))
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"{self.source}: run [{where}]: {exc}") from None
        return out

    def reduce(self) -> "Config":
        """The reduced-size variant (``[reduced.params]``/``[reduced.grid]``/``[reduced.analysis]`` applied)."""
        c = copy.deepcopy(self)
        for part in ("params", "grid", "analysis"):
            getattr(c, part).update(self.reduced.get(part, {}))
        c.name = self.name + "-reduced"
        c.reduced = {}
        return c

    def to_dict(self) -> dict:
        return {"experiment": self.experiment, "procedure": self.procedure, "name": self.name,
                "description": self.description, "params": self.params, "grid": self.grid,
                "analysis": self.analysis, "reduced": self.reduced}


def _decode_error(text: str, exc: Exception, source: str) -> ConfigError:
    msg = str(exc)
    m = re.search(r"line (\d+)", msg)
    where = ""
    if m:
        lineno = int(m.group(1))
        lines = text.splitlines()
        if 1 <= lineno <= len(lines):
            line = lines[lineno - 1].strip()
            km = re.match(r"([A-Za-z0-9_.\"'-]+)\s*=", line)
            where = f" (key {km.group(1)!r})" if km else f" (near {line[:40]!r})"
    return ConfigError(f"{source}: malformed TOML{where}: {msg}")


def parse_config(text: str, source: str = "<string>") -> Config:
    """Parse and validate a configuration from TOML text (see the module docstring)."""
    from .experiments import get_experiment
    from .procedures import get_procedure

    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _decode_error(text, exc, source) from None
    unknown = sorted(set(doc) - _TOP_KEYS)
    if unknown:
        raise ConfigError(f"{source}: {unknown[0]}: unknown key (expected some of {sorted(_TOP_KEYS)})")
    for key in ("experiment", "procedure"):
        if key not in doc:
            raise ConfigError(f"{source}: {key}: missing (e.g. {key} = \"{'scaling' if key == 'experiment' else 'stiefel-sgd'}\")")
        if not isinstance(doc[key], str):
            raise ConfigError(f"{source}: {key}: expected a string, got {type(doc[key]).__name__}")
    try:
        proc = get_procedure(doc["procedure"])
        exp = get_experiment(doc["experiment"])
    except KeyError as exc:
        raise ConfigError(f"{source}: {exc.args[0]}") from None
    # the regression model's results have no time or alignments: only its own analysis reads them
    if (proc.kind == "qplr-run") != (exp.name == "qplr-scaling"):
        raise ConfigError(f"{source}: experiment: {exp.name!r} cannot analyse runs of procedure {proc.name!r} "
                          "('qplr-scaling' goes with 'qplr', and only with it)")
    for key in ("params", "grid", "analysis", "reduced"):
        if not isinstance(doc.get(key, {}), dict):
            raise ConfigError(f"{source}: {key}: expected a table [{key}], got {type(doc[key]).__name__}")
    params, grid, analysis = doc.get("params", {}), doc.get("grid", {}), doc.get("analysis", {})
    reduced = doc.get("reduced", {})
    bad = sorted(set(reduced) - {"params", "grid", "analysis"})
    if bad:
        raise ConfigError(f"{source}: reduced.{bad[0]}: unknown key (expected params, grid or analysis)")

    def check_params(table, prefix):
        for k, v in table.items():
            try:
                proc.check(k, v)
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"{source}: {prefix}.{k}: {exc}") from None

    def check_grid(table, prefix):
        for k, v in table.items():
            if not isinstance(v, list) or not v:
                raise ConfigError(f"{source}: {prefix}.{k}: expected a non-empty list of values, got {v!r}")
            for i, x in enumerate(v):
                try:
                    proc.check(k, x)
                except (ValueError, TypeError) as exc:
                    raise ConfigError(f"{source}: {prefix}.{k}[{i}]: {exc}") from None

    def check_analysis(table, prefix):
        for k, v in table.items():
            try:
                exp.check_option(k, v)
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"{source}: {prefix}.{k}: {exc}") from None

    check_params(params, "params")
    check_grid(grid, "grid")
    check_analysis(analysis, "analysis")
    for k in set(params) & set(grid):
        raise ConfigError(f"{source}: grid.{k}: also set in [params]; give it in one place")
    for part, fn in (("params", check_params), ("grid", check_grid), ("analysis", check_analysis)):
        sub = reduced.get(part, {})
        if not isinstance(sub, dict):
            raise ConfigError(f"{source}: reduced.{part}: expected a table")
        fn(sub, f"reduced.{part}")
    name = doc.get("name", doc["experiment"])
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ConfigError(f"{source}: name: expected letters, digits, '_', '.', '-' only, got {name!r}")
    cfg = Config(experiment=doc["experiment"], procedure=doc["procedure"], name=name, params=params, grid=grid,
                 analysis=analysis, description=str(doc.get("description", "")), source=source, reduced=reduced)
    cfg.runs()  # resolve every run now: cross-parameter errors surface before anything runs
    return cfg


def load_config(path) -> Config:
    """Read and validate a configuration file (see the module docstring).

    Raises
    ------
    ConfigError
        Unreadable file, malformed TOML, unknown key or parameter, bad value (the message
        names the key).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    return parse_config(text, source=str(path))


def shipped_path(name: str) -> Path:
    """Path of a configuration shipped with quadfast (``scaling``, ``alignment``, ...)."""
    here = Path(__file__).parent / "configs"
    p = here / (name if name.endswith(".toml") else name + ".toml")
    if not p.is_file():
        raise ConfigError(f"config: no shipped configuration {name!r} (have: {', '.join(shipped())})")
    return p


def shipped() -> list[str]:
    """Names of the configurations shipped in ``quadfast/configs/``."""
    return sorted(p.stem for p in (Path(__file__).parent / "configs").glob("*.toml"))
