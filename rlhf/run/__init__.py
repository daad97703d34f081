"""One run of train.py: the Job, its run directory and lock, resume, stop signals, the non-finite guard, tracking
(W&B), costs, sweeps and the processes of a launch (distributed)."""
