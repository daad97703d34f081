"""Glue between our runs and the transformers / TRL Trainer that rm, sft and dpo train with.

settings.py         TrainerSettings (the fields those algorithms share) and the TrainingArguments they become
loop.py             run_trainer: resume from the newest checkpoint, stop cleanly on a signal, skip NaN/inf updates
length_grouping.py  training batches of similar length (less padding), in a seeded, resumable order
placement.py        the model on the device it trains on, for evaluations before training starts
"""
