"""Stub commands: replaced as their issues are built."""

import click

from cli.common import not_built


@click.command("demo", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def demo(args):
    """(not built yet)"""
    not_built("demo")


COMMANDS = [
    demo,
]
