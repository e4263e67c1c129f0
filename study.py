"""Compare train.py settings over several seeds, scored on the validation and the test list by the one evaluation.

Each variant is a set of train.py overrides; each (variant, seed) pair is one ``python train.py`` run in its own
process and folder. A sweep is the cartesian product of its axes:
    python study.py --UnFreeze_Epoch 70 --input_shape "[160, 160]" \\
        --sweep "focal_loss=[False, True]" "focal_gamma=[1, 2]" --seeds 3
or list the variants (the first is the baseline unless ``baseline`` names another):
    python study.py --variants "[{'name': 'bce'}, {'name': 'focal', 'focal_loss': True}]"

Every run's final weights (``last_epoch_weights.pth``: no choice by validation mAP, so the validation figure is
not biased upwards) are evaluated with utils/metrics/evaluation.py on the validation list (the in-training mAP of the
same weights) and on the test list. A run's ``result.json`` is written the moment it is evaluated; the same
command again skips finished runs and resumes interrupted ones from their checkpoint, so a long study can be
stopped and continued. ``study_dir`` receives ``results.md`` / ``results.json`` (mean ± sd over seeds, the
difference to the baseline and whether it exceeds twice its standard error), ``map_bars.png`` and one
objectness histogram per variant; its ``.gitignore`` keeps weights out of git, so the folder can be committed.
"""
import sys

# (command, what it does): --help shows them above the settings.
_EXAMPLES = (
    ('python study.py config/quickstart.py --data my_set/data.yaml --sweep "focal_loss=[False, True]" --seeds 3',
     "the quick-start model on your dataset, BCE against focal objectness, 3 seeds each"),
    ('python study.py config/focal_study.py --UnFreeze_Epoch 40 --input_shape "[128, 128]"',
     "the focal preset's variants; every train.py setting (python train.py --help) applies to all runs, "
     "except seed, save_dir and resume, which each run sets itself"),
)

# --- variants ---
sweep = {}                    # axes of a cartesian sweep: {"focal_gamma": [1, 2], ...} (or --sweep "name=[...]" ...)
variants = []                 # or explicit variants: [{"name": "bce"}, {"name": "focal", "focal_loss": True}, ...]
baseline = ""                 # name of the variant the others are compared with; "" = the first
seeds = 3                     # runs per variant
first_seed = 11               # their train.py seeds: first_seed, first_seed + 1, ... (11 is train.py's default)
# --- output ---
study_dir = "study_out"       # one folder per variant and seed, and the results
# --- evaluation ---
test_annotation_path = ""     # test list (training-list format); "" = the VOC image set test_image_set
test_image_set = "test"       # VOCdevkit_path/VOC2007/ImageSets/Main/<this>.txt when no test list is given
weights_name = "last_epoch_weights.pth"   # the file of each run that is evaluated
reevaluate = False            # True: evaluate finished runs again (after a change of the evaluation), keep weights
train_runs = True             # False: train nothing, only score and tabulate the runs already finished
# --- output ---
results_name = "results"      # <this>.md / .json / _map_bars.png: another name lets a second study share the runs


def main(argv):
    from utils.config import print_help, script_settings, wants_help

    if wants_help(argv):                # answered here: utils/engine/study.py imports torch
        print_help(script_settings(globals()), __file__)
        return 0
    from utils.engine.study import main as run_study

    return run_study(argv)


if __name__ == "__main__":
    from utils.errors import run_entry

    run_entry(main, sys.argv[1:])
