"""Evaluation: retrieval metrics, timing helpers, unsupervised code baselines and benchmark scripts.

Installed as ``hashpa.eval`` (the repository's top-level ``eval/`` folder, mapped by setuptools'
``package-dir``); benchmarks run as ``python -m hashpa.eval.<name>``.
"""
