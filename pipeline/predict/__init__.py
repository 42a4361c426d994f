"""Screening new films (``jobs/predict.py``): models, scoring, heatmaps, outputs."""
