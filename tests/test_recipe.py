"""Comparing recipes on train only: fold figures, the fold-by-fold ensemble, the recipe table,
train's --reg-grid and `make best`'s arguments."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from jobs import train as train_job
from pipeline.report.crossval import (
    FIGURES,
    FoldGrades,
    ensemble_folds,
    fold_scores,
    grade_fold,
    recipe_table,
)
from pipeline.report.document import ScoredPart
from pipeline.report.metrics import roc_auc
from pipeline.runtime.cli import run_job

REPO = Path(__file__).resolve().parent.parent
RNG = np.random.default_rng(7)
#: 3 folds of 60 patients with 2 films each; validation 40 films per fold
LATENT = {k: (RNG.normal(size=80), RNG.normal(size=120)) for k in range(3)}
LABELS = {k: ((np.arange(80) % 4 != 0).astype(int), (np.repeat(np.arange(60), 2) % 4 != 0).astype(int))
          for k in range(3)}


def _member(noise_seed: int) -> dict:
    """A recipe's cross-validation whose scores see the shared latent severity through noise
    of their own."""
    rng = np.random.default_rng(noise_seed)
    grades = FoldGrades(0.95, 3)
    for k in range(3):
        parts = []
        for (y, latent) in zip(LABELS[k], LATENT[k]):
            score = 1 / (1 + np.exp(-(2 * y - 1 + 0.8 * latent + 1.5 * rng.normal(size=len(y)))))
            parts.append(ScoredPart(y, score))
        grades.add(parts[0], parts[1], np.repeat(np.arange(60), 2) + 1000 * k)
    return grades.summary("test")


def test_specificity_at_target_is_the_held_out_folds_own_operating_point():
    held = ScoredPart(np.array([1, 1, 1, 1, 0, 0, 0, 0]),
                      np.array([0.9, 0.8, 0.7, 0.2, 0.6, 0.3, 0.1, 0.05]))
    validation = ScoredPart(np.array([1, 0]), np.array([0.95, 0.5]))
    figures, _ = grade_fold(validation, held, list("aabbccdd"), 0.75)
    # sensitivity 0.75 on the held-out fold itself: threshold between 0.7 and 0.6 -> 4/4 normals
    assert figures["specificity_at_target"] == 1.0
    figures, _ = grade_fold(validation, held, list("aabbccdd"), 1.0)  # must catch 0.2: 2 of 4
    assert figures["specificity_at_target"] == 0.5


def test_fold_scores_keep_no_identifier_only_patient_numbers():
    kept = fold_scores(ScoredPart(np.array([0, 1]), np.array([0.1, 0.9])),
                       ScoredPart(np.array([1, 1, 0]), np.array([0.8, 0.7, 0.2])),
                       ["person9", "person2", "person9"])
    assert kept["held_out"]["patient"] == [0, 1, 0]
    assert kept["validation"] == {"label": [0, 1], "score": [0.1, 0.9]}


def test_an_ensemble_of_folds_is_graded_like_any_fold_and_beats_its_noisy_members():
    a, b = _member(1), _member(2)
    both = ensemble_folds([a, b], 0.95, "mean of two")
    assert both["folds"] == 3 and set(both["summary"]) == set(FIGURES)
    assert both["pooled"]["films"] == 360
    assert both["summary"]["roc_auc"]["mean"] > max(a["summary"]["roc_auc"]["mean"],
                                                    b["summary"]["roc_auc"]["mean"])
    # A member with itself is that member (calibration keeps the ranking).
    same = ensemble_folds([a, a], 0.95, "twice")
    assert same["summary"]["roc_auc"]["mean"] == pytest.approx(a["summary"]["roc_auc"]["mean"])
    held = np.array(a["fold_scores"][0]["held_out"]["label"])
    assert roc_auc(held, np.array(same["fold_scores"][0]["held_out"]["score"])) == \
        pytest.approx(a["per_fold"][0]["roc_auc"])


def test_runs_on_other_folds_or_without_fold_scores_are_refused():
    a, b = _member(1), _member(2)
    b["fold_scores"][1]["held_out"]["label"] = b["fold_scores"][1]["held_out"]["label"][:-1]
    with pytest.raises(ValueError, match="fold 1's held_out films differ"):
        ensemble_folds([a, b], 0.95, "x")
    with pytest.raises(ValueError, match="two or more runs"):
        ensemble_folds([a, {k: v for k, v in a.items() if k != "fold_scores"}], 0.95, "x")


def test_fold_grades_number_the_folds_pool_them_and_keep_what_each_chose():
    cv = _member(1)
    assert [f["fold"] for f in cv["per_fold"]] == [0, 1, 2] and cv["how"] == "test"
    assert cv["pooled"]["films"] == sum(f["films"] for f in cv["per_fold"]) == 360
    assert len(cv["fold_scores"]) == 3
    grades = FoldGrades(0.95, 1)
    grades.add(ScoredPart(np.array([0, 1, 0, 1]), np.array([0.2, 0.7, 0.4, 0.9])),
               ScoredPart(np.array([1, 0]), np.array([0.8, 0.3])), ["a", "b"], best_epoch=3)
    one = grades.summary("one fold")
    assert one["per_fold"][0]["best_epoch"] == 3 and one["summary"]["roc_auc"]["sd"] is None


def test_recipe_table_has_a_row_per_recipe_with_its_spread():
    table = recipe_table([("one", _member(1)), ("two", _member(2))])
    lines = table.strip().splitlines()
    assert len(lines) == 4 and lines[2].startswith("| one | ") and lines[3].startswith("| two | ")
    assert lines[2].count(" ± ") == 9


def test_a_bad_reg_grid_is_refused_before_any_work(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_job(train_job.main, train_job.parser(), [
            "--data", str(tmp_path), "--model-out", str(tmp_path / "m"), "--reg-grid", "0.1",
            "--master", "local[2]"])
    assert exit_info.value.code == 2
    assert "REG:NET" in capsys.readouterr().err
    assert train_job._reg_grid("0.01:0.3,0.2:0") == ((0.01, 0.3), (0.2, 0.0))


def _make_best(*args: str) -> subprocess.CompletedProcess:
    # Run as a top-level make: under `make test` the outer make's MAKEFLAGS/MAKELEVEL would
    # make this one print "Entering directory" lines.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    return subprocess.run(["make", "--no-print-directory", "-n", "best", *args], cwd=REPO,
                          capture_output=True, text=True, env=env)


@pytest.mark.parametrize("args, reason", [
    ((), "needs DATA=PATH"),
    (("DATA=/nowhere",), "needs OUT=DIR"),
    (("DATA=hdfs:///xray/chest_xray", "OUT=/tmp/o"), "must be a local path"),
    (("DATA={tree}", "OUT=/tmp/o"), "has no test split"),
    (("DATA={empty}", "OUT=/tmp/o"), "has no train split"),
])
def test_make_best_refuses_bad_arguments_in_one_line(tmp_path, args, reason):
    (tmp_path / "tree/train/NORMAL").mkdir(parents=True)
    (tmp_path / "empty").mkdir()
    done = _make_best(*(a.format(tree=tmp_path / "tree", empty=tmp_path / "empty") for a in args))
    assert done.returncode != 0 and not done.stdout
    assert len(done.stderr.strip().splitlines()) == 1 and reason in done.stderr


def test_make_best_fine_tunes_the_chosen_recipe_and_grades_the_test_split(tmp_path):
    """`make best` is recipe G (README, "Choosing the recipe"), graded on the tree's test split."""
    for split in ("train", "test"):
        (tmp_path / f"tree/{split}/NORMAL").mkdir(parents=True)
    done = _make_best(f"DATA=file://{tmp_path}/tree", f"OUT={tmp_path}/out")
    assert done.returncode == 0, done.stderr
    command = done.stdout[done.stdout.index("jobs/finetune.py"):]
    assert f"--data {tmp_path}/tree " in command and f"--out {tmp_path}/out " in command
    for option in ("--arch cnn", "--augment scanner", "--schedule cosine",
                   "--label-smoothing 0.1", "--split test"):
        assert option in command, option
