"""Stub commands: replaced as their issues are built."""

import click

from cli.common import not_built


@click.command("build-ids", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def build_ids(args):
    """(not built yet)"""
    not_built("build-ids")


@click.command("build-trie", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def build_trie(args):
    """(not built yet)"""
    not_built("build-trie")


@click.command("embed", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def embed(args):
    """(not built yet)"""
    not_built("embed")


COMMANDS = [
    build_ids,
    build_trie,
    embed,
]
