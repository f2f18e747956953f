"""Field bookkeeping on a fuxictr ``FeatureMap``: which columns the embedding layer stacks, in what order."""

from __future__ import annotations

from ..errors import ModelConfigError


def embedded_fields(feature_map, exclude=()) -> list[str]:
    """Names of the fields ``FeatureEmbedding`` stacks (every non-meta feature, in feature-map order)."""
    return [
        name
        for name, spec in feature_map.features.items()
        if spec["type"] != "meta" and name not in set(exclude)
    ]


def fields_of_type(feature_map, *types) -> list[str]:
    return [name for name, spec in feature_map.features.items() if spec["type"] in types]


def field_positions(feature_map, names, key: str) -> list[int]:
    """Positions of ``names`` among the stacked fields; an unknown name is a config error naming ``key``."""
    fields = embedded_fields(feature_map)
    positions = []
    for name in names or []:
        if name not in fields:
            raise ModelConfigError(
                f"{key}: '{name}' is not a feature of dataset '{feature_map.dataset_id}'; "
                f"use some of {', '.join(fields)}"
            )
        positions.append(fields.index(name))
    return positions
