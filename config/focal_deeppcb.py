"""The focal study on DeepPCB (six classes of small defects): BCE against the focal default, paired over seeds, on the
quick-start model at 320 px. Apply it after the quick-start preset:
python study.py config/quickstart.py config/focal_deeppcb.py --seeds 5
(from a clone: ../shared/datasets/deeppcb is the shared copy of the set; --data points elsewhere)"""
data = "../shared/datasets/deeppcb/data.yaml"
input_shape = [320, 320]               # median box 19 px there (38 of 640)
UnFreeze_Epoch = 10                    # about 18 min a run on one thread of this CPU
eval_flag = False                      # the study scores each run's last weights itself
study_dir = "study_out/focal_deeppcb"
variants = [{"name": "bce", "focal_loss": False},
            {"name": "focal", "focal_loss": True}]   # the focal default: gamma 0.5, alpha 0.5, / positives
