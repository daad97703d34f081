"""`python -m rlhf.report <dir>`: see rlhf/report/cli.py."""

from rlhf.report.cli import main

main()
