"""The crop recipe on DeepPCB over seeds, BCE and focal objectness paired. Apply it after the quick-start and the
small-object presets:
python study.py config/quickstart.py config/small_objects.py config/crop_deeppcb.py --seeds 3"""
data = "../shared/datasets/deeppcb/data.yaml"
eval_flag = False                      # the study scores each run's last weights itself
study_dir = "study_out/crop_deeppcb"
variants = [{"name": "bce", "focal_loss": False},
            {"name": "focal", "focal_loss": True}]   # the focal default: gamma 0.5, alpha 0.5, / positives
