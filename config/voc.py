"""Upstream's Pascal VOC07+12 recipe: 416 px, 50 frozen + 250 unfrozen epochs, SGD, Mosaic + MixUp (train.py's own
defaults), with the 20 VOC classes. Put VOC07+12 in VOCdevkit/VOC2007 and run voc_annotation.py with the same
classes_path first (README: On Pascal VOC 07+12). Start from pretrained weights with --model_path."""
classes_path = "model_data/voc_classes.txt"
