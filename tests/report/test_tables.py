"""The training summary's baseline lines, on hand-made histories."""

from pathlib import Path

from hashpa.report.tables import train_summary
from hashpa.training.trainer import TrainResult


def scores(r1: float) -> dict:
    return {"recall@1": r1, "recall@2": r1, "recall@4": r1, "recall@8": r1, "map@r": r1 / 2}


def result(start_features: float, trained_float: float) -> TrainResult:
    history = [{"epoch": 0, "stage": "start", "float": scores(0.2), "codes": scores(0.1), "features": scores(start_features),
                "features_itq": scores(0.3)},
               {"epoch": 1, "loss": {}, "float": scores(trained_float), "codes": scores(0.5)}]
    return TrainResult(Path("runs/x"), history, {"epoch": 1, "metric": "codes recall@1", "value": 0.5, "float": trained_float, "codes": 0.5})


def test_the_summary_says_plainly_when_training_did_not_beat_the_start():
    text = train_summary(result(start_features=0.8, trained_float=0.7))
    assert "Training did NOT beat the start for the float (Recall@1)" in text
    assert "  start features    0.8000" in text and "  start PCA-ITQ     0.3000" in text


def test_the_summary_says_when_training_beat_the_start():
    text = train_summary(result(start_features=0.6, trained_float=0.7))
    assert "Training beat the start: float Recall@1 0.7000 against 0.6000, codes 0.5000 against 0.3000." in text
