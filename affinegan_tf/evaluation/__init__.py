"""Intensity curves, the paper's ACD metrics and ablation runs."""
