"""Training and studies: the run, the epoch loop, checkpoints and resume, optimizer, EMA, run log, distributed
training, run folders, lock and metadata, auto settings, the study over seeds. May import every other floor."""
