"""Split a capture into overlapping blocks (Block-NeRF / Mega-NeRF style), without torch.

``plan_blocks(cameras, cfg)`` places blocks (``grid``, ``trajectory`` or ``clusters``), assigns each
frame to the blocks its rays cross, merges blocks that too few frames see and returns a
``BlockPlan`` that serialises to JSON. ``affected_blocks`` / ``extend_plan`` serve incremental
updates. Cameras come in as ``CameraArrays``; nothing here imports ``blocknerf``.

Definitions:

- *Region*: a block is a vertical cylinder, the disc of ``radius_m`` about its centre between
  ``z_min`` and ``z_max`` (world units; ENU metres for a geo-registered capture).
- *Overlap*: the share of a diameter that two neighbouring discs have in common along the line
  between their centres, so ``radius_m = spacing_m / (2 (1 - overlap))``; 50 % (the default, as in
  Block-NeRF) makes each disc reach its neighbours' centres. Exact for ``grid``; ``trajectory``
  places centres on a 1/16-spacing lattice (a few % off); ``clusters`` overlap at least this much.
- *Share*: the fraction of a frame's ``rays_per_frame`` sampled rays (a fixed pattern over the
  image) whose segment from the camera to ``far_m`` meets a region. A frame belongs to every block
  where its share is at least ``min_share``; a frame that reaches that nowhere goes to the block it
  sees best (the nearest if it sees none), so every frame is in some block. Shares are recorded per
  block and frame; ``BlockSpec.ray_crossing`` is the same test for a trainer's pixel rays.
- *Ids*: ``b{i}_{j}`` from a lattice anchored at the world origin (``m`` for minus: ``bm02_013``):
  grid cells of ``spacing_m`` for ``grid``, a ``spacing_m / 4`` lattice for ``trajectory`` and
  ``clusters``; adding a few frames keeps them.
"""

from partitioning.cameras import CameraArrays
from partitioning.config import STRATEGIES, PartitionConfig
from partitioning.plan import BLOCK_ID_PATTERN, SCHEMA_VERSION, BlockPlan, BlockSpec, block_id_problem
from partitioning.planner import plan_blocks
from partitioning.rays import crosses_cylinder, frame_rays, ray_pattern
from partitioning.update import affected_blocks, extend_plan, frame_blocks

__all__ = [
    "CameraArrays",
    "PartitionConfig",
    "STRATEGIES",
    "BLOCK_ID_PATTERN",
    "BlockSpec",
    "block_id_problem",
    "BlockPlan",
    "SCHEMA_VERSION",
    "plan_blocks",
    "affected_blocks",
    "extend_plan",
    "frame_blocks",
    "crosses_cylinder",
    "frame_rays",
    "ray_pattern",
]
