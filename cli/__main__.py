"""``python -m hashpa.cli`` (and ``torchrun ... -m hashpa.cli``): the hashpa command."""

from hashpa.cli.main import main

main()
