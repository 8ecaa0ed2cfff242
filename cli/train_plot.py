"""`vlmtrain plot RUN`: the run's pictures again (the work is in vlmtrain.train.plots)."""

from __future__ import annotations

import click

from cli.common import handle_errors


@click.command("plot", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option(
    "-o",
    "--output",
    "--out",
    "out",
    type=click.Path(file_okay=False),
    help="Folder for the PNGs (default RUN/plots).",
)
@handle_errors
def plot(run, out):
    """PNG plots of a training run from RUN/metrics.jsonl: loss per stream (and the total),
    learning rate, samples/s, MFU and padding share.

    `vlmtrain launch` writes them to RUN/plots/ at the end of a run (log.plots=false turns
    that off); this redraws them, e.g. during a run or after a resume.

    \b
      vlmtrain plot runs/grace
      vlmtrain plot runs/grace -o /tmp/grace-plots
    """
    from vlmtrain.train.plots import write_run_plots

    for path, lines in write_run_plots(run, out).items():
        click.echo(f"{path}: {', '.join(lines) or 'nothing logged'}")


COMMANDS = [plot]
