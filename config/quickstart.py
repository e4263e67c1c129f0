"""The CPU quick start on the embedded sample set: a small YOLOv4 from scratch at 160 px, about 7 minutes on 2 cores.
python train.py config/quickstart.py   (any --name value after it still applies)"""
width_mult = 0.25                  # 3.7 M parameters (with the decoupled head) instead of 64 M: learns in minutes on a CPU
depth_mult = 0.33
decoupled_head = True              # a class branch per head: the shapes' classes, not their boxes, were the errors
input_shape = [160, 160]
Freeze_Train = False               # from scratch: nothing to keep frozen
UnFreeze_Epoch = 70
Unfreeze_batch_size = 8
optimizer_type = "adam"
Init_lr = 8e-3                     # at batch 64; scaled to 1e-3 at batch 8 (Adam's clamp)
weight_decay = 0
mixup = False                      # MixUp and strong rescaling slow early learning on 162 images
special_aug_ratio = 0.5            # Mosaic for the first half only (sample test +0.022 ± 0.005 over 6 seed pairs)
scale_range = [0.7, 1.3]
num_workers = 1
