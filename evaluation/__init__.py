"""The sxtquant evaluation harness: the reference paper's metrics, regenerated.

``python -m evaluation run --quick`` runs it (see :mod:`evaluation.harness` and
``docs/evaluation.md``); ``pytest evaluation/`` asserts its scores.
"""
