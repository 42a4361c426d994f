"""Evaluation outputs a clinician can open: metrics.json, two plots, one self-contained HTML.

The ``MetricsDocument`` is the single source: the JSON is it verbatim, the plots and the page
are drawn from it, so the numbers a reader sees are the numbers a script reads.
"""
from __future__ import annotations

import base64
import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from pipeline.report.crossval import FIGURES as CV_FIGURES, mean_sd  # noqa: E402
from pipeline.report.document import MetricsDocument  # noqa: E402


def plot_confusion(doc: MetricsDocument, path: Path) -> None:
    cm = doc.metrics["confusion_matrix"]["rows_actual_cols_predicted"]
    labels = doc.metrics["confusion_matrix"]["labels"]
    fig, ax = plt.subplots(figsize=(4.2, 3.6), dpi=120)
    ax.imshow(cm, cmap="Blues")
    for i in range(2):
        total = sum(cm[i]) or 1
        for j in range(2):
            dark = cm[i][j] > max(max(r) for r in cm) / 2
            ax.text(j, i, f"{cm[i][j]}\n({100 * cm[i][j] / total:.1f}%)", ha="center",
                    va="center", color="white" if dark else "black")
    ax.set_xticks([0, 1], labels)
    ax.set_yticks([0, 1], labels)
    ax.set_xlabel("Predicted")
    ax.set_ylabel("Actual")
    ax.set_title(f"Confusion matrix (threshold {doc.metrics['threshold']:.3f})")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _square_plot(path: Path, draw, xlabel: str, ylabel: str, title: str, legend: str) -> None:
    """One square figure with the diagonal (chance, or perfect calibration) into ``path``;
    ``draw(ax)`` adds the curves."""
    fig, ax = plt.subplots(figsize=(4.6, 4.2), dpi=120)
    draw(ax)
    ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(loc=legend, fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


_FPR, _TPR = "False positive rate (1 - specificity)", "True positive rate (sensitivity)"


def plot_roc(curves: list[tuple[str, MetricsDocument]], path: Path) -> None:
    """ROC curves of one or more runs (``(label, doc)``), each with its operating point."""
    def draw(ax) -> None:
        for label, doc in curves:
            m = doc.metrics
            auc = "n/a" if m["roc_auc"] is None else f"{m['roc_auc']:.3f}"
            line, = ax.plot(doc.roc["fpr"], doc.roc["tpr"], label=f"{label} (AUC {auc})")
            if m["specificity"] is not None and m["sensitivity"] is not None:
                ax.plot([1 - m["specificity"]], [m["sensitivity"]], "o", color=line.get_color())

    _square_plot(path, draw, _FPR, _TPR, "ROC (dot: chosen threshold)", "lower right")


def plot_reliability(calibration: dict, path: Path) -> None:
    """Reliability diagram of the scored split: observed share of pneumonia against the
    predicted probability, raw scores and calibrated, the diagonal being perfect."""
    def draw(ax) -> None:
        for key, label in (("raw", "raw score"), ("calibrated", "calibrated")):
            r = calibration["reliability"][key]
            ax.plot(r["predicted"], r["observed"], "o-",
                    label=f"{label} (ECE {calibration['ece'][key]:.3f})")

    _square_plot(path, draw, "Predicted probability of pneumonia", "Observed share with pneumonia",
                 f"Reliability ({calibration['bins']} bins)", "upper left")


def plot_cv_roc(cv: dict, path: Path) -> None:
    """The pooled out-of-fold ROC of a cross-validation."""
    pooled = cv["pooled"]
    _square_plot(path, lambda ax: ax.plot(
        pooled["roc"]["fpr"], pooled["roc"]["tpr"],
        label=f"{cv['folds']} folds pooled (AUC {pooled['roc_auc']:.3f})"),
        _FPR, _TPR, "Cross-validation: out-of-fold ROC", "lower right")


#: The look every page shares (the evaluation report, the screening worklist).
STYLE = ("body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}\n"
         "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25rem .6rem}\n"
         ".warn{background:#fff3cd;border:1px solid #e0c36c;padding:.6rem}")

#: Every page's last line.
DISCLAIMER = ("A screening aid for research use, not a medical device: every film still needs a\n"
              "qualified reader.")


def random_weights_banner(weights: str, method: str) -> str:
    """The warning a page opens with when its scores come from frozen random features."""
    # Frozen random features only check the pipeline; a fine-tuned network starts random too
    # but is then trained, so the warning is the featurizer arm's alone.
    if weights == "none" and method == "featurizer+lr":
        return ('<p class="warn">Features come from a randomly initialised network '
                '(weights=none): this run checks the pipeline; it is not a clinical result.</p>')
    return ""


def png_src(data: bytes) -> str:
    """A PNG as a ``data:`` URI, so a page is one file a clinician can mail or open offline."""
    return "data:image/png;base64," + base64.b64encode(data).decode()


def embed_png(path: Path) -> str:
    """An <img> with the PNG file inline."""
    return f'<img alt="{html.escape(path.stem)}" src="{png_src(path.read_bytes())}">'


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _ci(interval: list[float] | None) -> str:
    return "" if interval is None else f", 95% CI {_pct(interval[0])} to {_pct(interval[1])}"


def _plain_language(m: dict) -> str:
    cm = m["confusion_matrix"]
    pos, neg = cm["tp"] + cm["fn"], cm["tn"] + cm["fp"]
    return (f"<p>Of <b>{pos}</b> films with pneumonia, <b>{cm['tp']}</b> were flagged "
            f"(sensitivity {_pct(m['sensitivity'])}{_ci(m['sensitivity_ci95'])}); "
            f"missed: <b>{cm['fn']}</b>.</p>"
            f"<p>Of <b>{neg}</b> normal films, <b>{cm['tn']}</b> were cleared "
            f"(specificity {_pct(m['specificity'])}{_ci(m['specificity_ci95'])}); "
            f"sent for a second read: <b>{cm['fp']}</b>.</p>")


def _num(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _interval(ci: list[float] | None) -> str:
    return "" if ci is None else f" ({ci[0]:.3f} to {ci[1]:.3f})"


def _patients_table(doc: MetricsDocument) -> str:
    """Films beside patients, each with its patient-clustered bootstrap interval."""
    if doc.patients is None:
        return ""
    films, patients = doc.metrics, doc.patients["metrics"]
    boot = doc.bootstrap or {"film": {}, "patient": {}}
    rows = "".join(
        f"<tr><td>{key}</td><td>{_num(films[key])}{_interval(boot['film'].get(key))}</td>"
        f"<td>{_num(patients[key])}{_interval(boot['patient'].get(key))}</td></tr>"
        for key in ("roc_auc", "sensitivity", "specificity"))
    counts = patients["counts"]
    level = f"{100 * boot.get('level', 0.95):.0f}%"
    return (f"<h2>Films and patients</h2><p>{counts['total']} patients ({counts['PNEUMONIA']} "
            f"with pneumonia), {doc.patients['films_per_patient']} films each on average; "
            f"{html.escape(doc.patients['rule'])}. In brackets: {level} intervals from "
            f"{boot.get('resamples', 0)} resamples of whole patients (a patient's films are "
            f"not independent evidence).</p><table><tr><th></th><th>per film</th>"
            f"<th>per patient</th></tr>{rows}</table>")


def _operating_points_table(doc: MetricsDocument) -> str:
    if not doc.operating_points:
        return ""
    rows = "".join(
        f"<tr><td>{p['target_sensitivity']:.2f}</td><td>{p['threshold']:.4f}</td>"
        f"<td>{_num(p['validation']['sensitivity'], 3)} / {_num(p['validation']['specificity'], 3)}</td>"
        f"<td>{_num(p['sensitivity'], 3)}{_interval(p['sensitivity_ci95'])}</td>"
        f"<td>{_num(p['specificity'], 3)}{_interval(p['specificity_ci95'])}</td>"
        f"<td>{p['flagged']}</td><td>{p['missed']}</td></tr>" for p in doc.operating_points)
    return ("<h2>Operating points</h2><p>Each threshold is chosen on the validation part for "
            "its target sensitivity and applied here unchanged; a site picks its own with "
            "<code>jobs/evaluate.py --target-sensitivity</code>.</p><table><tr><th>target "
            "sensitivity</th><th>threshold</th><th>validation sens. / spec.</th><th>sensitivity "
            f"(Wilson 95%)</th><th>specificity</th><th>flagged</th><th>missed</th></tr>{rows}</table>")


def _calibration_block(doc: MetricsDocument, out_dir: Path) -> str:
    c = doc.calibration
    if c is None:
        return ""
    cal = c["calibrator"]
    fitted = (f"Platt scaling fitted on {cal['fitted_on']} validation films (slope "
              f"{cal['slope']:.3f}, intercept {cal['intercept']:.3f})" if cal["method"] == "platt"
              else f"The {cal['fitted_on']} validation films' scores did not rank the classes, so "
                   f"every film's probability is their share of pneumonia")
    return (f"<h2>Calibration</h2><p>{fitted}; it keeps every ranking, so AUCs and thresholds "
            f"do not move. On this split: Brier score "
            f"{c['brier']['raw']:.4f} raw, {c['brier']['calibrated']:.4f} calibrated; expected "
            f"calibration error {c['ece']['raw']:.4f} raw, {c['ece']['calibrated']:.4f} "
            f"calibrated.</p><div class=\"plots\">{embed_png(out_dir / 'reliability.png')}</div>")


def _cv_block(doc: MetricsDocument, out_dir: Path) -> str:
    cv = doc.training.get("cross_validation")
    if not cv:
        return ""
    per_fold = "".join(
        f"<th>fold {f['fold']}</th>" for f in cv["per_fold"])
    rows = "".join(
        f"<tr><td>{key}</td><td>{mean_sd(cv, key)}</td>"
        + "".join(f"<td>{_num(f.get(key), 3)}</td>" for f in cv["per_fold"]) + "</tr>"
        for key in CV_FIGURES)
    return (f"<h2>Cross-validation of the training recipe</h2><p>{html.escape(cv['how'])}. "
            f"Mean ± sd over folds, then each fold; pooled out-of-fold ROC AUC "
            f"{_num(cv['pooled']['roc_auc'], 3)} over {cv['pooled']['films']} films.</p>"
            f"<table><tr><th></th><th>mean ± sd</th>{per_fold}</tr>{rows}</table>"
            f"<div class=\"plots\">{embed_png(out_dir / 'cv_roc.png')}</div>")


def render_html(doc: MetricsDocument, out_dir: Path) -> str:
    m = doc.metrics
    esc = html.escape
    banner = random_weights_banner(doc.weights, doc.method)
    rows = "".join(
        f"<tr><td>{esc(k)}</td><td>{'n/a' if m[k] is None else f'{m[k]:.4f}'}</td></tr>"
        for k in ("accuracy", "sensitivity", "specificity", "precision", "f1", "roc_auc", "pr_auc"))
    timings = "".join(f"<tr><td>{esc(k)}</td><td>{v:.1f} s</td></tr>"
                      for k, v in doc.timings_s.items())
    skipped = "".join(f"<li>{esc(s.path)}: {esc(s.reason)}</li>" for s in doc.skipped)
    notes = [*doc.warnings, *(f"{d.path} is a byte-identical copy of {d.duplicate_of} "
                              "(scored twice)" for d in doc.duplicates)]
    warnings = "".join(f"<li>{esc(note)}</li>" for note in notes)
    counts = m["counts"]
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Pneumonia screening evaluation: {esc(doc.model_name)}</title>
<style>{STYLE}.plots img{{max-width:48%}}
.key{{font-size:1.3rem}}</style></head><body>
<h1>Pneumonia screening evaluation</h1>{banner}
<p>{esc(doc.method)} &middot; model <b>{esc(doc.model_name)}</b> &middot; weights
<b>{esc(str(doc.weights))}</b> &middot; split <b>{esc(doc.split)}</b> of
<code>{esc(doc.data)}</code> &middot; {counts['total']} films
({counts['PNEUMONIA']} pneumonia, {counts['NORMAL']} normal) &middot; {esc(doc.created)}</p>
<div class="key">{_plain_language(m)}</div>
<p>Decision threshold <b>{m['threshold']:.4f}</b>: {esc(doc.threshold_source)}</p>
<div class="plots">{embed_png(out_dir / 'confusion_matrix.png')} {embed_png(out_dir / 'roc.png')}</div>
<h2>Metrics</h2><table>{rows}</table>
{_patients_table(doc)}
{_operating_points_table(doc)}
{_calibration_block(doc, out_dir)}
{_cv_block(doc, out_dir)}
<h2>Timings</h2><table>{timings}</table><p>{doc.images_per_s:.1f} images/s end to end.</p>
<h2>Files not scored ({len(doc.skipped)})</h2><ul>{skipped}</ul>
<h2>Warnings ({len(notes)})</h2><ul>{warnings}</ul>
<p><small>{DISCLAIMER} Schema {esc(doc.schema)}.</small></p></body></html>"""


def write_metrics_report(out_dir: Path, doc: MetricsDocument) -> None:
    """Write ``metrics.json``, ``confusion_matrix.png``, ``roc.png``, ``reliability.png``
    (when calibrated), ``cv_roc.png`` (after a cross-validation) and ``report.html``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(doc.to_json())
    plot_confusion(doc, out_dir / "confusion_matrix.png")
    plot_roc([(doc.model_name, doc)], out_dir / "roc.png")
    if doc.calibration is not None:
        plot_reliability(doc.calibration, out_dir / "reliability.png")
    if doc.training.get("cross_validation"):
        plot_cv_roc(doc.training["cross_validation"], out_dir / "cv_roc.png")
    (out_dir / "report.html").write_text(render_html(doc, out_dir), encoding="utf-8")
