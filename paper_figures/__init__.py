"""One script per figure of the reference paper, drawn from the evaluation harness's outputs.

``python -m paper_figures`` draws them all (see :mod:`paper_figures.__main__`).
"""
