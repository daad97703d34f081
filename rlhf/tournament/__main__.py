"""`python -m rlhf.tournament`: see rlhf/tournament/cli.py."""

from rlhf.tournament.cli import main

main()
