"""Fine-tune pretrained weights on your data: the backbone frozen for 50 epochs, then everything for 50 more.

It expects full YOLOv4 weights at model_data/yolo4_weights.pth, which are not shipped: upstream's
yolo4_weights.pth (COCO) is linked from the README of github.com/bubbliiiing/yolov4-pytorch; darknet's
yolov4.weights (COCO) or yolov4.conv.137 (backbone only) from github.com/AlexeyAB/darknet/releases load as they
are (--model_path yolov4.weights). Without the file train.py stops and says this. The full 64 M-parameter model
needs a GPU: on a CPU one epoch of a few hundred images takes hours.
python train.py config/finetune.py --data my_data/data.yaml --model_path model_data/yolo4_weights.pth"""
model_path = "model_data/yolo4_weights.pth"   # upstream's COCO weights, or darknet's yolov4.conv.137 / yolov4.weights
Freeze_Train = True
Freeze_Epoch = 50
UnFreeze_Epoch = 100
Init_lr = 1e-2
optimizer_type = "sgd"
