"""Towards the IWAE paper's number: its 1-layer VAE protocol (``experiment=iwae_mnist_1layer``,
3280 epochs in stages of 3^i, batch 20, K=5000 on the 10,000 test points; published -86.76
nats) run for as long as a time budget allows, continued from the run's checkpoint by the next
call, with test log p̂(x) measured at the end of each stage reached and where the budget ends.

    python -m bench.paper_protocol --data DIR [--run-dir runs/iwae_protocol] [--budget-seconds 480]
                                   [--points N] [--first-end 13] [overrides ...]

Each leg is ``python -m inference.train experiment=iwae_mnist_1layer train.epochs=END
train.max_seconds=...`` (``train.resume=true`` once the run directory holds a checkpoint), as a
user would run it, with ``evaluation.splits=[test] evaluation.prior_proposal=false
evaluation.figures=false`` and any overrides given (``objective=graph_trace_elbo
train.cuda_graphs=true`` for the captured step). After each leg its row is added to
``RUN_DIR/protocol.csv`` (epochs, training seconds so far, test log p̂(x) ± stderr, evaluation
seconds) and the table so far is printed with the projection: the training seconds per epoch
of the last leg times the epochs left to 3280.
"""

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

PUBLISHED = -86.76
STAGE_ENDS = [sum(3**j for j in range(i + 1)) for i in range(8)]  # 1, 4, 13, 40, 121, 364, 1093, 3280
EPOCHS = STAGE_ENDS[-1]
EVALUATION_RESERVE_S = 60  # what one K=5000 evaluation of the test set and a start may take
COLUMNS = ["epochs", "train_seconds", "log_px", "stderr", "eval_seconds", "device"]


def rows_of(run_dir: Path) -> list[dict]:
    path = run_dir / "protocol.csv"
    return list(csv.DictReader(path.open())) if path.exists() else []


def leg(args, run_dir: Path, end: int, max_seconds: float, overrides: list[str]) -> dict:
    """One call of the training command up to epoch ``end`` (or the time budget); its row."""
    command = [
        sys.executable, "-m", "inference.train", "experiment=iwae_mnist_1layer", f"data.root={args.data.resolve() / 'mnist'}",
        f"train.epochs={end}", f"train.max_seconds={max_seconds:.0f}", "train.progress=false",
        "evaluation.splits=[test]", "evaluation.prior_proposal=false", "evaluation.figures=false",
        f"evaluation.max_points={args.points}", f"hydra.run.dir={run_dir}", *overrides,
    ]
    if (run_dir / "checkpoint.pt").exists():
        command.append("train.resume=true")
    print("#", " ".join(command[1:]), flush=True)
    if subprocess.run(command).returncode:
        raise SystemExit(f"the leg to epoch {end} failed (its message is above); {run_dir} keeps its last checkpoint and protocol.csv its rows")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    train, test = metrics["train"], metrics["test"]
    return {
        "epochs": train["epochs"], "train_seconds": round(train["seconds"], 1), "log_px": round(test["log_px"]["mean"], 3),
        "stderr": round(test["log_px"]["stderr"], 3), "eval_seconds": round(test["seconds"], 1), "device": train["device"],
    }


def report(rows: list[dict]) -> None:
    print(f"| epochs | training s | test log p̂(x) ± stderr | evaluation s | device | published (epoch {EPOCHS}) |")
    print("|---:|---:|---:|---:|---|---:|")
    for row in rows:
        estimate = f"{float(row['log_px']):.2f} ± {float(row['stderr']):.2f}"
        print(f"| {row['epochs']} | {float(row['train_seconds']):.0f} | {estimate} | {float(row['eval_seconds']):.0f} | {row['device']} | {PUBLISHED} |")
    if len(rows) >= 2:
        (a, b) = rows[-2:]
        per_epoch = (float(b["train_seconds"]) - float(a["train_seconds"])) / max(1, int(b["epochs"]) - int(a["epochs"]))
        left = EPOCHS - int(b["epochs"])
        print(f"# projection: {per_epoch:.2f} training s per epoch in the last leg; {left} epochs left: {left * per_epoch / 3600:.1f} h of training")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path, help="the folder holding mnist/")
    parser.add_argument("--run-dir", default="runs/iwae_protocol", type=Path)
    parser.add_argument("--budget-seconds", type=float, default=480, help="wall time of this call")
    parser.add_argument("--points", type=int, default=10000, help="test points evaluated after each leg")
    parser.add_argument("--first-end", type=int, default=13, help="the first stage end evaluated (each evaluation and start costs about 30 s on a GPU)")
    args, overrides = parser.parse_known_args()
    start, run_dir = time.perf_counter(), args.run_dir.resolve()
    rows = rows_of(run_dir)
    while True:
        done = int(rows[-1]["epochs"]) if rows else 0
        trained = float(rows[-1]["train_seconds"]) if rows else 0.0
        left = args.budget_seconds - (time.perf_counter() - start) - EVALUATION_RESERVE_S
        ends = [end for end in STAGE_ENDS if end > done and end >= args.first_end]
        if not ends or left < 10:
            break
        row = leg(args, run_dir, ends[0], trained + left, overrides)
        rows.append(row)
        with (run_dir / "protocol.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, COLUMNS)
            writer.writeheader(), writer.writerows(rows)
        report(rows)
        if int(row["epochs"]) < ends[0]:  # the budget ended the leg inside its stage
            break


if __name__ == "__main__":
    main()
