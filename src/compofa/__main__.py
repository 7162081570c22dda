"""``python -m compofa`` (and ``torchrun -m compofa train ...``) runs the `compofa` command."""

from compofa.cli import main

main()
