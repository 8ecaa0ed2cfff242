import click

from cli.common import not_built


@click.command("eval", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def eval_cmd(args):
    """(not built yet)"""
    not_built("eval")
