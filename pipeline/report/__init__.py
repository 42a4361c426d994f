"""What a run reports: the metrics, the one metrics document, its plots and pages, comparisons."""
