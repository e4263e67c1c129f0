"""Fine-tune pretrained weights on your data: the backbone frozen for 50 epochs, then everything for 50 more.
python train.py config/finetune.py --model_path model_data/yolo4_weights.pth --classes_path model_data/my_classes.txt"""
model_path = "model_data/yolo4_weights.pth"   # upstream's COCO weights, or darknet's yolov4.conv.137 / yolov4.weights
Freeze_Train = True
Freeze_Epoch = 50
UnFreeze_Epoch = 100
Init_lr = 1e-2
optimizer_type = "sgd"
