"""The command line: one thin module per command (parse, call a use case, render).

Commands only parse, call a use case and render its data (`output`); `context.boundary` is the
only place that exits. Heavy imports (boto3, paramiko, jinja2, rich) wait until a command runs,
so `bastion --help` starts fast.
"""

from bastion.cli.app import app, main

__all__ = ["app", "main"]
