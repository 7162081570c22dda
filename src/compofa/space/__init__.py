"""Subnet specs, model families and design spaces: pure data, no torch.

Search and tables import only this package, so they work without building
networks.
"""

from compofa.space.design import (
    ENUMERATION_LIMIT,
    SEARCH_RESOLUTIONS,
    TRAIN_RESOLUTIONS,
    DesignSpace,
    StageChoices,
)
from compofa.space.family import Family, StageDef, get_family, list_families, make_divisible
from compofa.space.registry import get_space, list_spaces, register_space, unconstrained_space
from compofa.space.spec import DEFAULT_SPACE, BlockSetting, SubnetSpec, format_spec, parse_spec, read_spec

__all__ = [
    "BlockSetting",
    "DEFAULT_SPACE",
    "DesignSpace",
    "ENUMERATION_LIMIT",
    "Family",
    "SEARCH_RESOLUTIONS",
    "StageChoices",
    "StageDef",
    "SubnetSpec",
    "TRAIN_RESOLUTIONS",
    "format_spec",
    "get_family",
    "get_space",
    "list_families",
    "list_spaces",
    "make_divisible",
    "parse_spec",
    "read_spec",
    "register_space",
    "unconstrained_space",
]
