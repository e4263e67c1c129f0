"""Upstream's Pascal VOC07+12 recipe: 416 px, 50 frozen + 250 unfrozen epochs, SGD, Mosaic + MixUp (train.py's own
defaults), with the 20 VOC classes and upstream's assignment (one anchor and one cell per box: train.py's default of
several was measured on small sets trained from scratch only). Put VOC07+12 in VOCdevkit/VOC2007 and run
voc_annotation.py with the same classes_path first (README: On Pascal VOC 07+12). Start from pretrained weights with
--model_path."""
classes_path = "model_data/voc_classes.txt"
iou_thresh = None              # upstream: only the best anchor of each box is trained
neighbour_cells = False        # upstream: only the cell holding the box centre
focal_alpha = 0.25             # upstream's focal form, should you turn focal_loss on
focal_gamma = 2
focal_normalize = "mean"
focal_type = "focal"
obj_target = "binary"
