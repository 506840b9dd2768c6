"""How much of the classes a run's latent features hold: a classifier trained on *all* the
training labels of ``data=encoded data.run=RUN``, the ceiling that no semi-supervised model on
those features (M2 in ``experiment=ss_mnist_stacked``) is likely to pass with fewer labels.

    python -m bench.feature_ceiling --run RUN_DIR [--min-activity 0.01] [--epochs 30] [--seed 0]

The classifier is M2's (features-500-10, ReLU, Adam at 1e-3, batches of 100). It sees the
features as M2 does: a training point a fresh draw z ~ q(z|x) at every step, a validation or
test point its posterior mean. It prints the validation and test error every 10 epochs.

A diagnostic, reported beside the stacked model's results: it reads labels that a
semi-supervised run may not, so nothing may be chosen by it.
"""

import argparse
import time

import torch
import torch.nn.functional as F

from inference.evaluations.accuracy import accuracy
from inference.runs.encoded import encoded


def ceiling(run: str, min_activity: float | None, epochs: int, hidden: int = 500, batch_size: int = 100, seed: int = 0):
    """Yields (epoch, valid error, test error, seconds) every 10 epochs and at the last."""
    torch.manual_seed(seed)
    data = encoded(run, min_activity=min_activity)
    if data.labels is None:
        raise SystemExit(f"--run {run}: its dataset has no labels, so there is no class to classify")
    y = data.labels["train"]
    net = torch.nn.Sequential(torch.nn.Linear(data.x_dim, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, int(y.max()) + 1))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        for batch in torch.randperm(len(y)).split(batch_size):
            loss = F.cross_entropy(net(data.train_epoch(batch)), y[batch])  # a fresh z ~ q(z|x), as M2 draws it
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if epoch % 10 == 0 or epoch == epochs:
            errors = [1 - accuracy(net, data.split(split), data.labels[split]) for split in ("valid", "test")]
            yield epoch, *errors, time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="a finished run on labelled data whose guide is a diagonal Gaussian (M1)")
    parser.add_argument("--min-activity", type=float, default=0.01, help="as data.min_activity; a negative value keeps every dimension")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    min_activity = None if args.min_activity < 0 else args.min_activity
    print(f"classifier on all training labels of data=encoded data.run={args.run} data.min_activity={min_activity}")
    for epoch, valid, test, seconds in ceiling(args.run, min_activity, args.epochs, seed=args.seed):
        print(f"epoch {epoch:4d}: valid error {valid:.2%}, test error {test:.2%} ({seconds:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
