"""rlhf: reward models, DPO and PPO with LoRA, compared on one question."""

import logging

# bitsandbytes warns at import on CPUs with AVX512-BF16 that an optional hub kernel is missing; it is
# only used for 4-bit CPU inference, which we never run, and the warning confuses users.
logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
