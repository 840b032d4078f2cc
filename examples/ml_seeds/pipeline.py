"""A small machine-learning style pipeline: prepare data, train five seeds, keep the best,
evaluate it. Pure Python, no network.

    dirac run --dry-run examples/ml_seeds/pipeline.py      # what would be built, and why
    dirac run examples/ml_seeds/pipeline.py                # prepare, 5 x train, evaluate
    dirac run examples/ml_seeds/pipeline.py                # builds nothing: all cached
    dirac run --force train examples/ml_seeds/pipeline.py  # a sixth model; the best of six

``train`` is not deterministic (each build draws a new seed), and its matcher is
``best("accuracy", at_least=5)``: the engine builds it until five different models exist
(as ``some(5)`` would), then ranks them by the ``accuracy`` each build reported in its
``metrics.json``. ``evaluate`` sees the most accurate model only, and scores it on
held-out data.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from diracx.api import best, stage


def _points(n: int, seed: int) -> list[tuple[float, float, int]]:
    """Two noisy classes on either side of the line x + y = 1."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        x, y = rng.random(), rng.random()
        label = int(x + y + rng.gauss(0, 0.15) > 1)
        rows.append((x, y, label))
    return rows


def _accuracy(w: list[float], rows: list[list[float]]) -> float:
    hits = sum(int(w[0] + w[1] * x + w[2] * y > 0) == int(label) for x, y, label in rows)
    return hits / len(rows)


@stage
def prepare(out, n=400, seed=7):
    """Make the data set: a training and a held-out split."""
    rows = _points(n, seed)
    cut = n * 3 // 4
    (Path(out) / "train.json").write_text(json.dumps(rows[:cut]))
    (Path(out) / "test.json").write_text(json.dumps(rows[cut:]))


@stage(matcher=best("accuracy", at_least=5))
def train(data, out, epochs=3):
    """A perceptron from a random seed and a few epochs: every build is another model."""
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    rows = json.loads((Path(data) / "train.json").read_text())
    w = [rng.uniform(-1, 1) for _ in range(3)]
    for _ in range(epochs):
        rng.shuffle(rows)
        for x, y, label in rows:
            error = label - int(w[0] + w[1] * x + w[2] * y > 0)
            w = [w[0] + 0.1 * error, w[1] + 0.1 * error * x, w[2] + 0.1 * error * y]
    (Path(out) / "model.json").write_text(json.dumps({"weights": w, "seed": seed}))
    metrics = {"accuracy": _accuracy(w, rows), "seed": seed}
    (Path(out) / "metrics.json").write_text(json.dumps(metrics))  # read by the engine


@stage
def evaluate(model, data, out):
    """Score the most accurate model on the held-out split."""
    w = json.loads((Path(model) / "model.json").read_text())["weights"]
    rows = json.loads((Path(data) / "test.json").read_text())
    accuracy = _accuracy(w, rows)
    (Path(out) / "metrics.json").write_text(json.dumps({"accuracy": accuracy}))
    return {"test_accuracy": accuracy}


data = prepare()
report = evaluate(model=train(data=data), data=data)
targets = [report]

if __name__ == "__main__":
    from diracx.api import connect

    with connect() as session:
        print(session.realize(report).result())
