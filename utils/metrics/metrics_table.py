"""The per-class metrics table that get_map.py and the end of training print (from ``summarize``'s dict)."""


def _percent(value):
    return "   n/a" if value is None else f"{100 * value:6.2f}"


def metrics_table(metrics):
    """Lines of the table: per class AP50, AP50:95, ground truths, detections and P / R / F1 at the metrics'
    ``score_threshold``, then the mAPs and the best-F1 point."""
    lines = [f"{'class':>16} {'AP50':>6} {'AP50:95':>7} {'gt':>6} {'det':>7} {'P':>6} {'R':>6} {'F1':>6}"
             f"   (P, R, F1 at score >= {metrics['score_threshold']:.4g})"]
    for name, row in metrics["classes"].items():
        lines.append(f"{name:>16} {_percent(row['ap50'])} {_percent(row['ap50_95']):>7} {row['num_gt']:6d} "
                     f"{row['num_det']:7d} {_percent(row['precision'])} {_percent(row['recall'])} "
                     f"{_percent(row['f1'])}")
    best = metrics["best_f1"]
    lines.append(f"mAP@{metrics['min_overlap']:g} = {_percent(metrics['map50'])} %   mAP@[.5:.95] = "
                 f"{_percent(metrics['map50_95'])} %   mAP@0.75 = {_percent(metrics['map75'])} %")
    if "by_size" in metrics:
        sizes = metrics["by_size"]
        lines.append("COCO by object size (area < 32^2, to 96^2, above; -1 = none): " + "   ".join(
            f"{label} {sizes[key]:.3f}" for label, key in (("APs", "ap_small"), ("APm", "ap_medium"),
                                                             ("APl", "ap_large"), ("AR100", "ar100"),
                                                             ("ARs", "ar_small"), ("ARm", "ar_medium"),
                                                             ("ARl", "ar_large"))))
    if best["threshold"] is not None:
        lines.append(f"best F1 {best['f1']:.3f} at score {best['threshold']:.4g} (P {best['precision']:.3f}, "
                     f"R {best['recall']:.3f})")
    return lines


def print_metrics_table(metrics, out=None):
    for line in metrics_table(metrics):
        print(line, file=out)
