"""The groups of an output beside its rows: ``/UserDataCfg``, ``/Sums`` and ``/meta``.

One implementation for both producers: offline (:mod:`smalldata.pipeline.eventloop`) and live
(:mod:`smalldata.live.finish`) write the same groups from the same objects once their rows are
merged into the output's temporary file.
"""
from __future__ import annotations

from typing import Any, Callable, List, Mapping, Optional, Sequence, Tuple

import h5py
import numpy as np

from smalldata.output.losses import LossSummary
from smalldata.output.writer import write_mapping
from smalldata.timing.hook import delay_loss_paths


def write_run_groups(out: h5py.File, config, stage, setups: Sequence, points, descriptions: Sequence[Mapping],
                     skipped: List[Tuple[int, str]], access, train_ids: np.ndarray, meta_attrs: Mapping[str, Any],
                     poll: Optional[Callable[[], None]] = None,
                     no_image: Optional[Mapping[str, np.ndarray]] = None) -> LossSummary:
    """Write the description, the run sums and ``/meta`` (skipped, incomplete and invalid trains, losses).

    Parameters
    ----------
    out : h5py.File
        The output (its rows merged).
    config : ProducerConfig
    stage, setups, points
        The frame stage (None without a per-pulse detector), the detector set-ups of every type
        (accumulators reduced) and the point reader.
    descriptions : sequence of mapping
        ``setup.describe()`` of each set-up (user code: the caller runs it where it can be interrupted).
    skipped : list of (train id, reason)
        Trains of the input without rows.
    access : RunAccess or LiveAccess
        Frame counts per module, the fault log and unreadable files of the input.
    train_ids : ndarray
        The input's trains (the first ones of ``access``: fewer with ``--max-trains``).
    meta_attrs : mapping
        Attributes of ``/meta`` (config, version, command, ranks, run, times, ...).
    poll : callable, optional
        Called between long steps (stop requests from other ranks).
    no_image : mapping, optional
        Per-train detector name -> the input's trains without its image (``/meta/no_image/<det>``).

    Returns
    -------
    LossSummary
        Written to ``/meta/losses``; the caller checks it is usable and warns.
    """
    cfg = out.create_group("UserDataCfg")
    for s, description in zip(setups, descriptions):
        write_mapping(cfg.require_group(s.name), description)
    write_mapping(cfg.require_group("point_data"), points.describe())
    if stage is not None:
        write_mapping(cfg.require_group("frames"), stage.describe())
    sums = None
    for s in setups:
        if s.accumulators is not None:
            sums = sums or out.create_group("Sums")
            s.accumulators.write(sums, s.det.geometry, s.modules)
    if poll is not None:
        poll()
    meta = out.create_group("meta")
    meta.attrs.update(dict(meta_attrs, n_trains_input=len(train_ids), n_trains_skipped=len(skipped)))
    meta.create_dataset("skipped_trainId", data=np.array([t for t, _ in skipped], dtype=np.uint64))
    meta.create_dataset("skipped_reason", data=np.array([r for _, r in skipped], dtype=object),
                        dtype=h5py.string_dtype())
    incomplete, n_pairs = [], 0
    out_trains = np.unique(out["trainId"][()])
    for name, ids in (no_image or {}).items():
        ds = meta.require_group("no_image").create_dataset(name, data=np.asarray(ids, dtype=np.uint64))
        ds.attrs["meaning"] = f"trains of the input without an image of {name}: no row in /{name}"
    for s in setups:
        if s.det.type.per_pulse is False:
            continue
        counts = access.frame_counts(s.modules)[: len(train_ids)]
        expected = counts.max(axis=1, keepdims=True)
        for ti, mi in zip(*np.nonzero(counts < expected)):
            incomplete.append((int(train_ids[ti]), int(s.modules[mi])))
        n_pairs += len(out_trains) * len(s.modules)
    meta.create_dataset("incomplete_trains", data=np.array(incomplete, dtype=np.uint64).reshape(-1, 2))
    meta["incomplete_trains"].attrs["columns"] = "trainId, module: module frames missing in this train"
    faults = access.faults.entries()
    meta.create_dataset("invalid_trainId", data=np.array([t for t, _, _ in faults], dtype=np.uint64))
    for name, column in (("invalid_where", 1), ("invalid_reason", 2)):
        meta.create_dataset(name, data=np.array([f[column] for f in faults], dtype=object),
                            dtype=h5py.string_dtype())
    meta["invalid_trainId"].attrs["meaning"] = ("trains whose rows of a module or source were not used: the "
                                                "ids they hold disagree with the file's INDEX")
    losses = LossSummary.from_output(
        out, [(f"{g}/{n}", spec["per"]) for (g, n), spec in points.specs.items()]
        + delay_loss_paths(config.settings.get("delay")), len(train_ids),
        len(skipped), len(incomplete), n_pairs, access.faults.by_place())
    losses.write(meta)
    if access.unreadable_files:
        meta.attrs["unreadable_files"] = access.unreadable_files
    return losses
