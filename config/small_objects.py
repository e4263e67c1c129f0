"""Small objects (boxes of a few percent of the image, e.g. PCB defects): keep the full resolution and train on crops.
Apply it after the quick-start preset:
python train.py config/quickstart.py config/small_objects.py --data ../shared/datasets/deeppcb/data.yaml
Each step trains on a random 320x320 window of the 640x640 letterboxed image, so an object keeps the size at which
it is detected (the whole 640 image); a step costs what a 320 image costs. docs/small_objects.md has the measurements."""
input_shape = [640, 640]               # detection size: DeepPCB's median defect stays 38 px (19 px at 320)
crop_shape = [320, 320]                # training windows at full scale: 4x fewer pixels a step than 640
mosaic = False                         # Mosaic shrinks every object 2x; at this object size it removes what there is to see
focal_loss = True                      # focal objectness (gamma 0.5, alpha 0.5, / positives): ahead of BCE on DeepPCB
UnFreeze_Epoch = 20                    # the epochs measured in docs/small_objects.md
