"""Training state <-> checkpoint arrays: weights, Adam moments, occupancy, RNG, counters.

Everything is numeric arrays plus JSON (no pickle), so checkpoints live in the zarr store next to
the block and a resumed run continues exactly where the interrupted one stopped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from blocknerf.model.field import BlockField
from blocknerf.model.occupancy import OccupancyGrid


def checkpoint_arrays(
    field: BlockField, optimizer: torch.optim.Optimizer, occupancy: OccupancyGrid, generator: torch.Generator
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Arrays and JSON attrs capturing the whole training state."""
    arrays = {f"model.{k}": v.detach().cpu().numpy() for k, v in field.state_dict().items()}
    opt = optimizer.state_dict()
    for idx, state in opt["state"].items():
        for key, value in state.items():
            arrays[f"optim.{idx}.{key}"] = torch.as_tensor(value).detach().cpu().numpy()
    arrays.update({k: v.cpu().numpy() for k, v in occupancy.state_arrays().items()})
    arrays["rng.sampler"] = generator.get_state().numpy()
    attrs = {"optimizer_groups": opt["param_groups"]}
    return arrays, attrs


def restore_checkpoint(
    arrays: Mapping[str, np.ndarray],
    attrs: Mapping[str, Any],
    field: BlockField,
    optimizer: torch.optim.Optimizer,
    occupancy: OccupancyGrid,
    generator: torch.Generator,
) -> None:
    """Load a state written by ``checkpoint_arrays`` into freshly built objects."""
    device = next(field.parameters()).device
    field.load_state_dict({k[6:]: torch.from_numpy(np.array(v)) for k, v in arrays.items() if k.startswith("model.")})
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in arrays.items():
        if name.startswith("optim."):
            _, idx, key = name.split(".", 2)
            tensor = torch.from_numpy(np.array(value))
            state.setdefault(int(idx), {})[key] = tensor if key == "step" else tensor.to(device)
    optimizer.load_state_dict({"state": state, "param_groups": [dict(g) for g in attrs["optimizer_groups"]]})
    occupancy.load_state_arrays({k: torch.from_numpy(np.array(v)) for k, v in arrays.items() if k.startswith("occupancy_")})
    generator.set_state(torch.from_numpy(np.array(arrays["rng.sampler"])))
