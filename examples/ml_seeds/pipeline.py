"""A small machine-learning style pipeline: prepare data, train five seeds, keep the best,
evaluate it. Pure Python, no network.

    dirac run --dry-run examples/ml_seeds/pipeline.py      # what would be built, and why
    dirac run examples/ml_seeds/pipeline.py                # prepare, 5 x train, pick, evaluate
    dirac run examples/ml_seeds/pipeline.py                # builds nothing: all cached
    dirac run --force train examples/ml_seeds/pipeline.py  # a sixth model; pick and evaluate again

``train`` is not deterministic (each build draws a new seed), and its matcher is
``some(5)``: the engine builds it until five different models exist. ``pick`` sees all of
them (``models/0`` ... ``models/4``, each with the ``metrics.json`` its build reported) and
keeps the most accurate; ``evaluate`` scores that one on held-out data.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from diracx.api import some, stage


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


@stage(matcher=some(5))
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
def pick(models, out):
    """Keep the most accurate of the models ``train``'s matcher chose."""
    found = sorted(Path(models).iterdir(), key=lambda p: int(p.name))
    scored = [(json.loads((d / "metrics.json").read_text())["accuracy"], d) for d in found]
    accuracy, best = max(scored, key=lambda t: t[0])
    (Path(out) / "model.json").write_text((best / "model.json").read_text())
    return {"candidates": len(found), "accuracy": accuracy}


@stage
def evaluate(model, data, out):
    """Score the chosen model on the held-out split."""
    w = json.loads((Path(model) / "model.json").read_text())["weights"]
    rows = json.loads((Path(data) / "test.json").read_text())
    accuracy = _accuracy(w, rows)
    (Path(out) / "metrics.json").write_text(json.dumps({"accuracy": accuracy}))
    return {"test_accuracy": accuracy}


data = prepare()
report = evaluate(model=pick(models=train(data=data)), data=data)
targets = [report]

if __name__ == "__main__":
    from diracx.api import connect

    with connect() as session:
        print(session.realize(report).result())
