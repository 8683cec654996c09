"""Epoch checkpoints of a training phase (orbax), so a killed run resumes where it was.

What is saved is everything a phase carries between epochs: the stacked member states, the
carried member hyper-parameters (moving class weights) and the per-epoch history arrays.
Keys are derived from (seed, epoch), so nothing random needs saving: a resumed run replays
exactly what an uninterrupted one would have computed. orbax writes into a temporary directory
and renames it when complete, so a kill mid-save leaves the previous checkpoint usable; a
checkpoint damaged afterwards (disk error, a user's edit) is skipped for the one before it
(`restore_latest`).
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

  def restore_latest(self, like, log) -> tuple[int, object] | None:
    """(epoch, carry) of the newest readable checkpoint, or None when there is none.

    An unreadable newer checkpoint is deleted with a warning (its epoch is recomputed exactly,
    keys being functions of (seed, epoch)); one that cannot be read for lack of permission is
    an error, not corruption.
    """
    for epoch in sorted(self._manager.all_steps(), reverse=True):
      try:
        return epoch, self.restore(epoch, like)
      except Exception as e:  # noqa: BLE001 - orbax/tensorstore/json raise many types
        if any(isinstance(x, PermissionError) for x in (e, e.__cause__, e.__context__)):
          raise
        log(f"warning: checkpoint {os.path.join(self.directory, str(epoch))} is unreadable "
            f"({type(e).__name__}: {' '.join(str(e).split())[:160]}); deleting it and "
            "falling back to the one before")
        self._manager.delete(epoch)
    return None

  def close(self) -> None:
    self._manager.close()
