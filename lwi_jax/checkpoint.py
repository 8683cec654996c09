"""Epoch checkpoints of a training phase (orbax), so a killed run resumes where it was.

What is saved is everything a phase carries between epochs: the stacked member states, the
carried member hyper-parameters (moving class weights) and the per-epoch history arrays.
Keys are derived from (seed, epoch), so nothing random needs saving: a resumed run replays
exactly what an uninterrupted one would have computed. orbax writes into a temporary directory
and renames it when complete, so a kill mid-save leaves the previous checkpoint usable.
"""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp


class PhaseCheckpointer:
  """Saves / restores the carry of one phase after each epoch; keeps the newest two."""

  def __init__(self, directory: str):
    self.directory = os.path.abspath(directory)
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=2, enable_async_checkpointing=False,
                                             cleanup_tmp_directories=True))

  def latest_epoch(self) -> int | None:
    return self._manager.latest_step()

  def save(self, epoch: int, carry) -> None:
    self._manager.save(epoch, args=ocp.args.StandardSave(carry))
    self._manager.wait_until_finished()

  def restore(self, epoch: int, like):
    """Restores the carry saved after `epoch`, with the structure, shapes and dtypes of `like`."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    return self._manager.restore(epoch, args=ocp.args.StandardRestore(abstract))

  def close(self) -> None:
    self._manager.close()
