"""Command lines: click groups only (argument parsing, progress, exit codes), no logic.

Library modules are imported inside command bodies so `vlmdata --help` stays fast.
"""
