"""Models and what is read off them: loading (GGUF, hub, 4-bit) and LoRA, chat templates, log-probs, generation,
reward scoring, the held-out evaluation and fingerprints. Imports nothing above rlhf.data and rlhf.config."""
