"""rlhf: reward models, DPO, PPO and the online arms with LoRA, compared on one question.

The package is layered; each layer imports only the layers below it (tests/test_layers.py checks this):

    rlhf.experiment, rlhf.report   entry points' bodies: train.py's run (the algorithm registry); sweep reports
                                   (report.html, the W&B Report: python -m rlhf.report)
    rlhf.tournament                PPO vs DPO (and GRPO, RLOO) over fixed seeds: every stage per seed, one
                                   aggregate report with intervals over seeds and prompts (python -m rlhf.tournament)
    rlhf.evaluation                the comparison run: policies, metrics, tables, plots
    rlhf.algos                     rm, sft, dpo (hf_trainer: the Trainer glue) and ppo/ (everything PPO);
                                   an algorithm imports hf_trainer and its own package, never another algorithm
    rlhf.run                       the run around an algorithm: Job, run directory and adapter resolution,
                                   resume, signals, the non-finite guard, tracking, sweep callbacks
    rlhf.plan                      will it fit? predicted peak memory per phase from the config alone
                                   (python -m rlhf.plan); only rlhf.experiment imports it
    rlhf.modeling                  models and tokenizers, chat templates, log-probs, generation, reward scoring
    rlhf.data                      HH parsing, the synthetic set and its gold judge, preference splits
    rlhf.config, rlhf.errors       typed views of the config groups; one-line user errors
"""

import logging

# bitsandbytes warns at import on CPUs with AVX512-BF16 that an optional hub kernel is missing; it is
# only used for 4-bit CPU inference, which we never run, and the warning confuses users.
logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
