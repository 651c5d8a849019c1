"""The whole configuration, as ``--config FILE`` and flags give it to a subcommand.

Precedence, lowest first: the defaults of each component's config dataclass, the configuration
stored in a block store (when the command works on one), the ``--config`` YAML file, then flags.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from blocknerf.training.cluster import ClusterConfig
from blocknerf.config import dotted_to_nested, read_yaml, replace
from blocknerf.model.config import ModelConfig
from blocknerf.synth.config import SynthConfig
from blocknerf.training.config import TrainConfig
from blocknerf.updating.config import UpdateConfig
from partitioning import PartitionConfig
from streaming.config import StreamConfig


@dataclass(frozen=True, slots=True)
class Settings:
    """Every component's settings; a YAML config file holds any subset of these sections."""

    synth: SynthConfig = field(default_factory=SynthConfig)
    partition: PartitionConfig = field(default_factory=PartitionConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
    update: UpdateConfig = field(default_factory=UpdateConfig)


PER_RUN_SECTIONS = ("cluster",)
"""Sections that describe one run, not the city: a store neither records nor reapplies them (a
store trained once through ``--scheduler ADDR`` must not keep calling that address)."""


def storable(settings: Settings) -> dict[str, Any]:
    """The settings a store records, as a plain document (everything but ``PER_RUN_SECTIONS``)."""
    from blocknerf.config import to_dict

    return {k: v for k, v in to_dict(settings).items() if k not in PER_RUN_SECTIONS}


def stored_settings(stored: Mapping[str, Any] | None, *, where: str = "store") -> Settings:
    """The defaults overridden by a store's recorded settings (its per-run sections ignored)."""
    if not stored:
        return Settings()
    return replace(Settings(), {k: v for k, v in stored.items() if k not in PER_RUN_SECTIONS}, where=where)


def add_config_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="YAML file of setting overrides (see configs/)")


def resolve(
    args: argparse.Namespace,
    flags: Mapping[str, Any] | None = None,
    *,
    stored: Mapping[str, Any] | None = None,
    where_stored: str = "store",
) -> Settings:
    """Settings from defaults < ``stored`` < ``--config`` file < ``flags`` (dotted keys, None = unset)."""
    settings = stored_settings(stored, where=where_stored)
    if getattr(args, "config", None):
        settings = replace(settings, read_yaml(args.config), where=args.config)
    if flags:
        settings = replace(settings, dotted_to_nested(flags), where="command line")
    return settings
