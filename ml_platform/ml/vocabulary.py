"""The vocabulary of the shipped datasets: category values and the product taxonomy.

Public knowledge about the domain (like a list of a city's neighbourhoods), shared by the
feature builders and the synthetic generators; the generators' hidden parameters (price
multipliers, click weights) stay in `ml_platform.simulation`.
"""

from __future__ import annotations

import numpy as np

NEIGHBOURHOODS = (
    "harbour", "old_town", "riverside", "university", "midtown", "docklands", "suburbs", "airport"
)
ROOM_TYPES = ("entire_home", "private_room", "shared_room")

SEGMENTS = ("students", "parents", "professionals", "retirees", "gamers")
CATEGORIES = ("sports", "news", "music", "food", "travel", "tech", "fashion", "gaming")
# The product taxonomy: each segment's primary and secondary interest.
SEGMENT_PREFERENCES: dict[str, tuple[str, str]] = {
    "students": ("music", "fashion"),
    "parents": ("food", "news"),
    "professionals": ("tech", "news"),
    "retirees": ("travel", "sports"),
    "gamers": ("gaming", "tech"),
}


def affinity_codes(segments: np.ndarray, categories: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(primary, secondary) interest indicators of segment codes and category codes (booleans)."""
    primary = np.array([CATEGORIES.index(SEGMENT_PREFERENCES[s][0]) for s in SEGMENTS])
    secondary = np.array([CATEGORIES.index(SEGMENT_PREFERENCES[s][1]) for s in SEGMENTS])
    return primary[segments] == categories, secondary[segments] == categories
