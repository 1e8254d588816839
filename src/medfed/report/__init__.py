"""Run summaries and the self-contained HTML report."""
