"""``python -m rlhf.plan``: see rlhf/plan/cli.py."""

import sys

from rlhf.plan.cli import main

sys.exit(main())
