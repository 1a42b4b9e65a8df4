"""``python -m eventrouter`` runs the command line."""

from eventrouter.cli import cli

cli()
