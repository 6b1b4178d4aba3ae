"""``python -m nnctl``: the same as the ``nnctl`` command."""

from nnctl.cli.app import main

main()
