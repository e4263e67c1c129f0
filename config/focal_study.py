"""The focal-loss preset of study.py: objectness losses compared over seeds on the same model, data and budget.
python study.py config/focal_study.py --UnFreeze_Epoch 40 --input_shape "[128, 128]" --seeds 3
(any train.py or study.py setting after it applies to every run; --variants "[...]" replaces the list below)"""
variants = [{"name": "bce", "focal_loss": False},                 # the baseline: plain BCE objectness
            {"name": "focal_g2_a0.25", "focal_loss": True, "focal_alpha": 0.25, "focal_gamma": 2},
            {"name": "focal_g0.5_a0.5", "focal_loss": True, "focal_alpha": 0.5, "focal_gamma": 0.5},
            {"name": "focal_g1_a0.5", "focal_loss": True, "focal_alpha": 0.5, "focal_gamma": 1},
            {"name": "focal_g0.5_a0.25", "focal_loss": True, "focal_alpha": 0.25, "focal_gamma": 0.5},
            {"name": "focal_g1_a0.25", "focal_loss": True, "focal_alpha": 0.25, "focal_gamma": 1},
            {"name": "focal_g2_a0.5", "focal_loss": True, "focal_alpha": 0.5, "focal_gamma": 2}]
