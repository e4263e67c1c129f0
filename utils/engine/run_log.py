"""Per-run logging: config JSON, loss CSV, loss and mAP plots."""
import csv
import datetime
import json
import os

from utils.atomic import atomic_write


FIELDS = ["epoch", "lr", "train_loss", "train_loc", "train_conf", "train_cls", "val_loss", "val_loc", "val_conf",
          "val_cls", "map50", "map50_95", "nonfinite_steps", "skipped_files", "images_per_second"]


class RunLog:
    """``save_dir/<run>/``: ``config.json``, ``losses.csv``, ``loss_curve.png`` and ``map_curve.png``.

    Every file is rewritten atomically, so a kill never leaves a torn log. A resumed run keeps
    its folder and drops rows of epochs after the checkpoint it resumed from.
    """

    def __init__(self, save_dir, config, resume_run_dir=None, resume_epoch=0):
        if resume_run_dir and os.path.isdir(resume_run_dir):
            self.run_dir = resume_run_dir
        else:
            stamp = datetime.datetime.now().strftime("%Y_%m_%d_%H_%M_%S")
            self.run_dir = os.path.join(save_dir, f"loss_{stamp}")
            os.makedirs(self.run_dir, exist_ok=True)
        self.csv_path = os.path.join(self.run_dir, "losses.csv")
        self.rows = [r for r in self._read_rows() if r["epoch"] <= resume_epoch]
        atomic_write(os.path.join(self.run_dir, "config.json"),
                           json.dumps(config, indent=2, sort_keys=True, default=str))

    def _read_rows(self):
        if not os.path.isfile(self.csv_path):
            return []
        with open(self.csv_path, newline="", encoding="utf-8") as f:
            return [{k: (None if v == "" else float(v)) for k, v in row.items()} for row in csv.DictReader(f)]

    def add_epoch(self, epoch, lr, train, val, metrics, skipped_files=0):
        """Append one epoch and redraw the curves; returns the row."""
        row = {"epoch": epoch, "lr": lr, "nonfinite_steps": train["nonfinite"], "skipped_files": skipped_files,
               "images_per_second": train["images"] / max(train["seconds"], 1e-9),
               "map50": metrics["map50"] if metrics else None,
               "map50_95": metrics["map50_95"] if metrics else None}
        for prefix, values in (("train", train), ("val", val)):
            row[f"{prefix}_loss"] = values["loss"]
            for term in ("loc", "conf", "cls"):
                row[f"{prefix}_{term}"] = values[term]
        self.rows.append(row)
        self._write_csv()
        self._plot()
        return row

    def _write_csv(self):
        lines = [",".join(FIELDS)]
        for row in self.rows:
            lines.append(",".join("" if row.get(k) is None else f"{row[k]:.6g}" for k in FIELDS))
        atomic_write(self.csv_path, "\n".join(lines) + "\n")

    def _plot(self):
        from utils.metrics.plots import plot_loss_curves, plot_map_curve

        plot_loss_curves(self.rows, os.path.join(self.run_dir, "loss_curve.png"))
        map_rows = [r for r in self.rows if r.get("map50") is not None]
        if map_rows:
            plot_map_curve(map_rows, os.path.join(self.run_dir, "map_curve.png"))

    @staticmethod
    def summary_line(row):
        text = (f"Epoch {int(row['epoch'])}: train loss {row['train_loss']:.3f} (loc {row['train_loc']:.3f}, "
                f"conf {row['train_conf']:.3f}, cls {row['train_cls']:.3f}), val loss {row['val_loss']:.3f}")
        if row.get("map50") is not None:
            text += f", val mAP@0.5 {row['map50']:.4f}, mAP@.5:.95 {row['map50_95']:.4f}"
        return text
