"""Benchmarks: how close dlb-tune gets to the limit, side by side with the plain alternatives.

``python -m bench all --quick`` runs every figure small; ``python -m bench --help`` lists them.
Results: ``bench/results/<quick|full>/<figure>.json`` and ``table.md`` beside them.
"""
