"""The options of `vlmtrain eval` that several tasks share, declared once, and the steps every
command takes: fill the task's options object, run it, print and write the report.

A command's parameters are named as its options object's fields (vlmtrain.eval.options), so
`fill_options` builds the object from them directly; `-q` becomes `progress`. Defaults are
written only there: `defaults_from` gives each option its field's default (and --help shows it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import click

from cli.common import checked_device
from vlmtrain.eval.options import DEFAULT_SPLIT

SPLIT_HELP = f"({DEFAULT_SPLIT}, the split one tunes on; --split test for a paper's test figure)"
IN_PATH = click.Path(exists=True)
IN_FILE = click.Path(exists=True, dir_okay=False)
IN_DIR = click.Path(exists=True, file_okay=False)
OUT_FILE = click.Path(dir_okay=False)
FIELD_OF = {"data": "data_dir"}  # the options field of a flag, where the names differ

CKPT = click.option("--checkpoint", type=IN_PATH, help="Training run dir or export dir.")
DATA = click.option(
    "--data",
    "data_dir",
    type=IN_DIR,
    help="A `vlmdata shard` output folder (index/index.parquet + shards/).",
)
_JSON = click.option(
    "-o", "--output", "--out", "output", type=OUT_FILE, help="Write the JSON report here."
)
_HTML = click.option(
    "--html",
    type=OUT_FILE,
    help="Also write the report as a self-contained HTML page (metrics, config; for retrieval "
    "a few queries with their top-5 images marked right/wrong).",
)
COUNT = click.IntRange(min=1)  # a count: 0 or less would score nothing, or (a slice) the wrong part
BATCH = click.option("--batch-size", type=COUNT, help="Prompts per batch.")
LIMIT = click.option("--limit", type=COUNT, help="Only the first N queries/items (smoke runs).")
DEVICE = click.option(
    "--device",
    callback=checked_device,
    help="cpu, cuda, cuda:1 ... (default: cuda when available).",
)
QUIET = click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
SAVE = click.option("--save-predictions", type=OUT_FILE, help="Also write the predictions.")
IMAGES = click.option(
    "--images",
    "images_dir",
    required=True,
    type=IN_DIR,
    help="Folder of the benchmark's images (VIST: <photo id>.jpg; VisDial: "
    "VisualDialog_val2018_<12-digit id>.jpg).",
)
SAVE_RANKED = click.option(
    "--save-predictions",
    type=OUT_FILE,
    help="Also write JSONL, a line per query: {direction, key, query, answers, ranked, rank} "
    "(a text's key is IMAGEKEY#i; rank 0: not retrieved).",
)


def OUT(fn):  # used as @OUT, like the other shared options
    """-o JSON report and --html page."""
    return _JSON(_HTML(fn))


def run_options(save=None, limit=LIMIT):
    """The options every task ends with: --batch-size, --limit, `save` (a --save-predictions),
    -o/--html, --device, -q."""

    def wrap(fn):
        fn = OUT(DEVICE(QUIET(fn)))
        return BATCH(limit(save(fn) if save else fn))

    return wrap


def split_option(help: str, *names: str, **attrs: Any):
    """--split with a task's help; `names`: other flags and the field."""
    return click.option("--split", *names, help=help, **attrs)


def records_split(fn):
    """--split of the tasks whose questions come from the records without --questions."""
    return split_option(f"Records' split, without --questions {SPLIT_HELP}.")(fn)


def input_file(*names: str, **attrs: Any):
    """An input file that must exist (--predictions, --questions, --annotations, ...)."""
    return click.option(*names, type=IN_FILE, **attrs)


def required_file(flag: str, name: str, help: str):
    """A benchmark file the task cannot run without (--stories, --dialogs), as field `name`."""
    return input_file(flag, name, required=True, help=help)


def number(flag: str, help: str | None = None, type: type = int):
    """A decoding number (an int one is a count, >= 1); its default is the field's (None: unset
    means the recipe's)."""
    return click.option(flag, type=COUNT if type is int else type, help=help)


def field_default(field: dataclasses.Field) -> Any:
    """The default a dataclass field is given when left out (MISSING: it is required)."""
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def defaults_from(cls: type) -> Callable[[click.Command], click.Command]:
    """Give each option of the command named as a field of `cls` that field's default, shown in
    --help when set: the options dataclass is the one place a default is written. A sequence
    default of a single-valued option (--metrics) becomes its comma list."""
    fields = {f.name: f for f in dataclasses.fields(cls)}

    def wrap(cmd: click.Command) -> click.Command:
        for param in cmd.params:
            field = fields.get(param.name or "")
            if not isinstance(param, click.Option) or field is None or param.required:
                continue
            value = field_default(field)
            if value is dataclasses.MISSING:  # a required field: `need` names a missing one
                continue
            if isinstance(value, (tuple, list)) and not param.multiple:
                value = ",".join(map(str, value))
            param.default = value
            param.show_default = value is not None and value != ()
        return cmd

    return wrap


def metric_names(known: tuple[str, ...]):
    """A --metrics callback: every comma-separated name must be one of `known` (a typo is a
    usage error naming the closest metric, exit 2, before any model or file is loaded)."""
    import difflib

    def check(ctx: click.Context, param: click.Parameter, value: str | None):
        if value is None:
            return None
        names = tuple(m.strip() for m in value.split(",") if m.strip())
        for name in names:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1, cutoff=0.4)
                hint = f"did you mean {close[0]}? " if close else ""
                raise click.BadParameter(f"unknown metric {name!r}: {hint}choose from "
                                         f"{', '.join(known)}", ctx, param)  # fmt: skip
        return names

    return check


def fill_options(cls, params: dict[str, Any], *needs: str):
    """The task's options object from a command's parameters (-q: no progress bar); `needs`:
    the options (checkpoint, data) this task cannot run without, a usage error if missing."""
    opts = cls(**{k: v for k, v in params.items() if k != "quiet"}, progress=not params["quiet"])
    need(**{flag: getattr(opts, FIELD_OF.get(flag, flag)) for flag in needs})
    return opts


def finish(report, opts) -> None:
    """Print the report's table; write it as JSON (-o) and as a page (--html) when asked."""
    click.echo(report.table())
    if opts.output:
        report.write(opts.output)
        click.echo(f"report: {opts.output}")
    if opts.html:
        from vlmtrain.eval.html_report import write_html_report

        write_html_report(report, opts.html)
        click.echo(f"html report: {opts.html}")


def need(**options) -> None:
    """A usage error (exit 2) naming the options a task needs that were not given."""
    missing = [f"--{k}" for k, v in options.items() if not v]
    if missing:
        raise click.UsageError(f"this task needs {' and '.join(missing)}")
