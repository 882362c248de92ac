"""The conventions every stage shares, each defined once."""

from __future__ import annotations

#: The reference paper's decision threshold: a voxel is membrane where the network's
#: probability is strictly greater than this (Dyhr et al. 2023).
THRESHOLD = 0.9
