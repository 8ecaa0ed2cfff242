import click

from cli.common import not_built


@click.command("launch", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def launch(args):
    """(not built yet)"""
    not_built("launch")
