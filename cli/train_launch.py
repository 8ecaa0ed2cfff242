"""`vlmtrain launch`: click parsing only; the work is in vlmtrain.train.launch."""

from __future__ import annotations

import sys

import click

from cli.common import handle_errors


@click.command(
    "launch",
    context_settings={"ignore_unknown_options": False, "help_option_names": ["-h", "--help"]},
)
@click.argument("config", type=click.Path(dir_okay=False))
@click.argument("overrides", nargs=-1)
@click.option("--num-gpus", type=int, default=None, help="Ranks per node (CPU ranks without CUDA).")
@click.option("--num-nodes", type=int, default=None, help="Nodes to use from --hostfile.")
@click.option(
    "--hostfile",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="MPI-style hostfile (`worker-0 slots=8` per line) for multi-node runs.",
)
@click.option(
    "--master-port",
    type=int,
    default=None,
    help="Rendezvous port (default: a free one here; 29500 with --hostfile or several nodes).",
)
@click.option(
    "--accelerator",
    type=click.Choice(["auto", "cpu", "cuda", "xpu", "npu", "hpu", "mps"]),
    default="auto",
    show_default=True,
    help="DeepSpeed accelerator of the ranks. auto: a local run uses cpu when this machine has "
    "no CUDA; a --hostfile / multi-node run lets each rank's machine decide.",
)
@click.option(
    "--skip-checks",
    is_flag=True,
    help="Skip the pre-flight checks (paths, stream mix, columns), e.g. on a head node that "
    "does not mount the data.",
)
@click.option("--resume", is_flag=True, help="Continue from the latest checkpoint in output_dir.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Write the resolved config, print the launcher command that trains from it, and exit.",
)
@click.option(
    "--peak-tflops",
    type=float,
    default=None,
    help="One device's peak TFLOP/s for the MFU in metrics.jsonl (default: the GPU's "
    "bf16/fp32 figure from a table; sets log.peak_tflops).",
)
@click.option(
    "--launcher-log",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="warning",
    show_default=True,
    help="DeepSpeed launcher's log level (info shows its per-node commands and rank mapping).",
)
@handle_errors
def launch(
    config,
    overrides,
    num_gpus,
    num_nodes,
    hostfile,
    master_port,
    accelerator,
    skip_checks,
    resume,
    dry_run,
    peak_tflops,
    launcher_log,
):
    """Train with DeepSpeed: CONFIG (YAML) plus KEY=VALUE overrides, typed by the config field.

    The resolved config is saved as OUTPUT_DIR/config.yaml and every rank trains from it;
    checkpoints go to OUTPUT_DIR/checkpoints, metrics to OUTPUT_DIR/metrics.jsonl and the final
    weights (safetensors) + tokenizer to OUTPUT_DIR/export. A local run without CUDA gets
    DS_ACCELERATOR=cpu and --num-gpus counts CPU ranks (gloo). Before any rank starts, the data,
    tokenizer and ids paths, the stream mix and the recipe's columns are checked (not with
    --dry-run, which writes the resolved config and prints the command that runs as written:
    OUTPUT_DIR/config.yaml, or OUTPUT_DIR/config.dry-run.yaml when an earlier run's config is
    there, left as it was).

    \b
    Examples:
      vlmtrain launch examples/configs/grace_tiny.yaml data.shards=shards/ \\
          data.ids=ids.parquet model.tokenizer=tok/ output_dir=runs/grace
      vlmtrain launch examples/configs/llava15_7b_stage2.yaml --num-gpus 8 \\
          deepspeed.zero_stage=3 optim.lr=2e-5 schedule.save_every=500
      vlmtrain launch runs/grace/config.yaml --resume        # continue the same stream
      vlmtrain launch cfg.yaml --num-nodes 2 --hostfile hosts.txt --dry-run
      vlmtrain launch cfg.yaml --hostfile hosts.txt --accelerator cuda --master-port 29600
    """
    from vlmtrain.train.launch import plan_launch, run_launch

    if peak_tflops is not None:
        overrides = [*overrides, f"log.peak_tflops={peak_tflops}"]
    plan = plan_launch(
        config,
        list(overrides),
        num_gpus=num_gpus,
        num_nodes=num_nodes,
        hostfile=hostfile,
        master_port=master_port,
        accelerator=accelerator,
        resume=resume,
        launcher_log=launcher_log,
        dry_run=dry_run,
        check=not (dry_run or skip_checks),
    )
    if plan.note:
        click.echo(f"note: {plan.note}", err=True)
    if dry_run:
        click.echo(plan.display())
        return
    click.echo(f"config: {plan.config_path}", err=True)
    rc = run_launch(plan)
    if rc:
        click.echo(f"error: training failed (exit status {rc}); see the rank logs above", err=True)
    sys.exit(rc)
