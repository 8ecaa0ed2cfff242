"""Stub commands: replaced as their issues are built."""

import click

from cli.common import not_built


@click.command("manifest", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def manifest(args):
    """(not built yet)"""
    not_built("manifest")


@click.command("filter-urls", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def filter_urls(args):
    """(not built yet)"""
    not_built("filter-urls")


COMMANDS = [
    manifest,
    filter_urls,
]
