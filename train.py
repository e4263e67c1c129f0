"""Train YOLOv4 on your dataset or the sample set, with an optional focal-loss objectness term.

Edit the settings below and run ``python train.py``, or override any of them on the command line:
``python train.py --data my_data/data.yaml`` or ``python train.py --focal_loss True --input_shape "[320, 320]"``
(values are Python literals).
``python train.py --help`` lists every setting with its meaning.
"""
import sys

# (command, what it does): --help shows them above the settings.
_EXAMPLES = (
    ("python train.py --data my_set/data.yaml",
     "train on your dataset (a data.yaml, a VOC or YOLO folder, or a COCO JSON); on a CPU fitted to time_budget_min"),
    ("python train.py config/quickstart.py --UnFreeze_Epoch 30",
     "the quick-start preset (config/quickstart.py) with 30 epochs; settings after a preset override it"),
    ('python train.py --data my_set/data.yaml --focal_loss True --input_shape "[320, 320]"',
     "focal objectness at 320 x 320 (values are Python literals)"),
)

# --- data ---
data = ""                                        # your dataset: a data.yaml, a VOC or YOLO folder, or a COCO JSON (its lists are built and cached; then the 3 paths below are not needed)
# --- auto (CPU runs) ---
auto = True                                      # on a CPU from scratch: settings not given (command line / preset) fit the data and time_budget_min (one line says what)
time_budget_min = 30                             # auto: minutes a CPU run should take (epochs are fitted to it)
# --- data ---
classes_path = "model_data/sample_classes.txt"   # class names, one per line (default: the embedded sample set)
anchors_path = "model_data/yolo_anchors.txt"     # 9 anchors "w,h, w,h, ..." in input pixels
anchors_mask = [[6, 7, 8], [3, 4, 5], [0, 1, 2]]  # anchor indices of each output level (stride 32, 16, 8)
train_annotation_path = "2007_train.txt"         # training list written by voc_annotation.py (built if missing)
val_annotation_path = "2007_val.txt"             # validation list (built if missing)
VOCdevkit_path = "VOCdevkit"                     # VOC folder the lists are built from when they are missing
# --- model ---
model_path = ""                                  # starting weights: .pth state_dict or darknet .weights; "" = scratch
pretrained = False                               # backbone weights from model_data/CSPdarknet53_backbone_weights.pth
input_shape = [416, 416]                         # network input (h, w); multiples of 32
width_mult = None                                # channel multiplier; None = 1.0 or what model_path's shapes imply
depth_mult = None                                # residual-block multiplier; None = 1.0 or from model_path
decoupled_head = False                           # classes get a branch of their own in each head (YOLOX); other head keys
# --- run ---
device = "auto"                                  # "auto" (CUDA when available, else CPU), "cpu", "cuda", "cuda:1"
fp16 = False                                     # mixed precision (autocast + GradScaler) on CUDA
seed = 11                                        # seeds initialisation, shuffling and augmentation
# --- augmentation ---
mosaic = True                                    # Mosaic augmentation (4 images in one)
mosaic_prob = 0.5                                # probability of a Mosaic sample
mixup = True                                     # MixUp a Mosaic sample with another image
mixup_prob = 0.5                                 # probability of MixUp for a Mosaic sample
special_aug_ratio = 0.7                          # Mosaic/MixUp only during this first fraction of the epochs
scale_range = [0.25, 2.0]                        # random rescale of single-image samples (longer side / input)
crop_shape = None                                # train on random [h, w] crops of each input_shape sample: objects keep the scale they are detected at, a step costs the crop; None = whole samples
min_box_visible = 0.0                            # drop boxes cropped to less than this fraction of their area; 0 = keep (upstream)
min_class_visible = 0.0                          # boxes cropped below this fraction of their area stay objects, without a class target
# --- loss ---
label_smoothing = 0                              # class targets become y * (1 - ls) + ls / num_classes
# --- schedule ---
Init_Epoch = 0                                   # first epoch (to continue a run by hand; prefer resume)
Freeze_Epoch = 50                                # epochs with the backbone frozen (when Freeze_Train)
Freeze_batch_size = 8                            # batch size while frozen
UnFreeze_Epoch = 300                             # total number of epochs
Unfreeze_batch_size = 4                          # batch size after unfreezing
Freeze_Train = True                              # freeze the backbone for the first Freeze_Epoch epochs
# --- optimizer ---
Init_lr = 1e-2                                   # peak learning rate at batch 64 (scaled to the batch size)
Min_lr = None                                    # final learning rate; None = Init_lr * 0.01
lr_limits = None                                 # [max, min] of the batch-scaled peak lr; None = upstream's (adam 1e-3/3e-4, sgd 5e-2/5e-4)
optimizer_type = "sgd"                           # "sgd" (nesterov), "adam" or "adamw"
momentum = 0.937                                 # SGD momentum / Adam beta1
weight_decay = 5e-4                              # L2 on conv weights (BN and biases excluded); use 0 with adam
lr_decay_type = "cos"                            # "cos" (warm-up, cosine, flat tail) or "step"
ema = True                                       # keep an EMA of the weights; used for validation and saved weights
ema_tau = 2000                                   # EMA warm-up in optimizer steps: decay 0.9999 * (1 - exp(-steps / tau))
# --- loss ---
focal_loss = False                               # focal objectness instead of BCE (its form: the 5 settings below)
focal_alpha = 0.5                                # focal: weight of positives (1 - alpha: negatives); varifocal: of negatives
focal_gamma = 0.5                                # focal gamma: down-weights easy examples
focal_normalize = "positives"                    # focal sum / the "positives" (RetinaNet), "weights" (sum of focal weights), "mean" x10 (upstream)
focal_type = "focal"                             # "varifocal" (VarifocalNet) or "focal" (alpha_t * |y - p| ** gamma)
obj_target = "auto"                              # positives' objectness target: "binary" 1, "iou" of the predicted box, "auto" (iou with varifocal)
obj_prior = None                                 # initial objectness probability; None = 8 per 640^2 image or RetinaNet's 0.01
level_balance = [0.4, 1.0, 4.0]                  # objectness weight of the levels (stride 32, 16, 8), upstream's
box_loss_weight = 0.05                           # weight of the box (loc) term, upstream's
obj_loss_weight = 5.0                            # weight of the objectness term at 416 px (scaled by input area)
cls_loss_weight = 1.0                            # weight of the class term at 80 classes (scaled by class count)
focal_loss_ratio = 10.0                          # multiplier of the focal objectness with focal_normalize "mean"
iou_type = "ciou"                                # box loss: "ciou" or "siou"
iou_thresh = 0.213                               # also train every anchor of shape IoU above this with a box (darknet's); None = the best anchor only (upstream)
scale_x_y = None                                 # centre scale per level, strides 32/16/8 (darknet: [1.2, 1.1, 1.05])
neighbour_cells = True                           # also train the 2 neighbour cells nearest each box centre (yolov5; centres decode with scale 2)
# --- optimizer ---
nominal_batch_size = 0                           # accumulate gradients to ~this many images per step (64); 0 = off
# --- output ---
save_period = 10                                 # also keep weights every this many epochs
save_dir = ""                                    # where weights, checkpoints and run logs go; "" = a new logs/<name>, logs/<name>2, ...
name = "exp"                                     # run folder name under logs/ when save_dir is ""
exist_ok = False                                 # True: reuse logs/<name> instead of numbering a new folder
# --- validation ---
eval_flag = True                                 # compute val mAP during training (chooses the best weights)
eval_period = 10                                 # evaluate every this many epochs (and at the end)
# --- run ---
num_workers = 4                                  # DataLoader worker processes (0 = load in the main process)
resume = False                                   # True: continue the newest run under logs/ (or save_dir's); or a checkpoint path
distributed = False                              # multi-GPU / multi-node via torchrun (see README)
sync_bn = False                                  # SyncBatchNorm across GPUs when distributed

# What a value given on the command line or in a preset must be, beyond the type of its default (utils/config.py:
# ">0" / ">=1" / "0..1" bounds, a tuple of choices, "number": an int setting that takes floats too, "None": also
# None, "path": a bool that also takes a file). --help shows them.
_LIMITS = {
    "time_budget_min": "number, >0", "width_mult": ">0", "depth_mult": ">0", "input_shape": ">=32",
    "seed": ">=0", "mosaic_prob": "0..1", "mixup_prob": "0..1", "special_aug_ratio": "0..1", "scale_range": ">0",
    "min_box_visible": "0..1", "min_class_visible": "0..1", "label_smoothing": "number, >=0, <1",
    "Init_Epoch": ">=0", "Freeze_Epoch": ">=0", "Freeze_batch_size": ">=1", "UnFreeze_Epoch": ">=1",
    "Unfreeze_batch_size": ">=1", "Init_lr": ">0", "Min_lr": ">0", "optimizer_type": ("sgd", "adam", "adamw"),
    "momentum": ">=0, <1", "weight_decay": ">=0", "lr_decay_type": ("cos", "step"), "ema_tau": "number, >0",
    "focal_alpha": "0..1", "focal_gamma": ">=0", "focal_normalize": ("positives", "weights", "mean"),
    "focal_type": ("focal", "varifocal"), "obj_target": ("auto", "binary", "iou"), "obj_prior": ">0, <1",
    "level_balance": ">=0", "box_loss_weight": ">=0", "obj_loss_weight": ">=0", "cls_loss_weight": ">=0",
    "focal_loss_ratio": ">0", "iou_type": ("ciou", "siou"), "iou_thresh": ">0, <1, None", "nominal_batch_size": ">=0",
    "save_period": ">=1", "eval_period": ">=1", "num_workers": ">=0", "resume": "path",
}


def main(argv=None):
    from utils.config import resolve_config

    config = resolve_config(globals(), sys.argv[1:] if argv is None else argv, script_path=__file__)
    from utils.engine.trainer import train      # after the settings: --help and a bad value answer without torch

    return train(config, argv=sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    from utils.errors import run_entry

    run_entry(main)
