"""``python -m rlhf.plan``: see rlhf/plan/cli.py. An entry point, like train.py: it hands the planner train.py's
config checks (rlhf.experiment.check_config), so both refuse the same values with the same line."""

import sys

from rlhf.plan.cli import main as plan_main


def main(argv: list[str] | None = None) -> int:
    from rlhf.experiment import check_config  # imports the algorithms (their Settings): only once the CLI runs

    return plan_main(argv, check_config)


if __name__ == "__main__":
    sys.exit(main())
