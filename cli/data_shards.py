"""Stub commands: replaced as their issues are built."""

import click

from cli.common import not_built


@click.command("download", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def download(args):
    """(not built yet)"""
    not_built("download")


@click.command("shard", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def shard(args):
    """(not built yet)"""
    not_built("shard")


@click.command("inspect", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def inspect(args):
    """(not built yet)"""
    not_built("inspect")


@click.command("verify", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def verify(args):
    """(not built yet)"""
    not_built("verify")


@click.command("get", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def get(args):
    """(not built yet)"""
    not_built("get")


COMMANDS = [
    download,
    shard,
    inspect,
    verify,
    get,
]
