"""Write what was tuned in the session back into a copy of the producer YAML.

The copy keeps the original's comments, key order and formatting where ruamel.yaml's round trip
allows (it does for comments and order; flow/block style of changed values is chosen here).
It is checked with the producer's own config validation before it replaces anything, so the
producer accepts it unchanged. What is written:

* ROIs of :meth:`SelectRegion`: the ``roi`` function of the same name (``module``, ``roi``),
  appended when the config has none;
* the beam centre of :meth:`FitCircle` / :meth:`AzInt(refine=True)`: ``center`` of every
  ``azimuthal`` function of the detector;
* masks of :meth:`MakeMask`: a ``<name>_<det>_mask.npy`` next to the copy (combined with the
  config's own ``user_mask``), set as ``detectors.<det>.user_mask``;
* quadrant positions of :meth:`set_geometry`;
* a frame cut (a named cut or a selection): ``<name>_frame_mask.h5`` as ``rejection.user_mask``.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional, Union

import h5py
import numpy as np

from smalldata.errors import SmallDataError

#: config keys holding paths relative to the config's folder: (section path, key)
PATH_KEYS = (((), "data_root"), ((), "calib_dir"), ((), "output_dir"), (("rejection",), "user_mask"))
DETECTOR_PATH_KEYS = ("user_mask", "geometry_file")


def _flow(values):
    from ruamel.yaml.comments import CommentedSeq

    seq = CommentedSeq(values)
    seq.fa.set_flow_style()
    return seq


def _metres(value: float) -> float:
    return float(f"{float(value):.7g}")


def _umask_mode(mode: int) -> int:
    """``mode`` with the caller's umask applied, as ``open()`` would create a file."""
    umask = os.umask(0)
    os.umask(umask)
    return mode & ~umask


class ConfigWriteMixin:
    """write_config of ``SmallDataAna``."""

    def write_config(self, path: os.PathLike, frame_cut: Union[None, str, np.ndarray] = None,
                     overwrite: bool = False) -> Path:
        """Write the producer config with the session's tuned ROIs, centre, masks and frame cut.

        Parameters
        ----------
        path : path
            The new YAML file (mask files are written next to it).
        frame_cut : str or bool array, optional
            A named cut (:meth:`addCut`) or event selection to keep: written as the frame mask
            ``rejection.user_mask``. A cut that keeps no event is refused.
        overwrite : bool
            Replace an existing file at ``path``.

        Returns
        -------
        Path
            ``path``, after the producer's config validation accepted it. Files are created with
            the caller's umask (as the producer's output), so the proposal's group can read them.
        """
        from ruamel.yaml import YAML
        from ruamel.yaml.comments import CommentedMap

        from smalldata.config.producer import ProducerConfig

        dest = Path(path).resolve()
        if dest.exists() and not overwrite:
            raise SmallDataError(f"{dest} exists; pass overwrite=True or another path")
        if not dest.parent.is_dir():
            raise SmallDataError(f"folder {dest.parent} does not exist")
        source = self.config_path.resolve()
        if not source.is_file():
            raise SmallDataError(f"the session's config {source} does not exist; open the session with -c CONFIG")
        if frame_cut is not None:  # checked before anything is written
            cut_trains, cut_mask = self.frame_mask(frame_cut)
            if not cut_mask.any():
                name = f"cut {frame_cut!r}" if isinstance(frame_cut, str) else "the frame_cut selection"
                raise SmallDataError(f"write_config: {name} keeps none of the {len(self)} events, so the config would "
                                     "reject every frame; loosen the cut (ana.printCuts() shows what each keeps)")
        yaml = YAML()
        yaml.preserve_quotes = True
        yaml.width = 120
        data = yaml.load(source.read_text())
        if source.parent != dest.parent:
            self._rebase_paths(data, source.parent, dest.parent)
        for region in self._tuned.get("regions", {}).values():
            functions = self._functions_of(data, region.det)
            entry = next((f for f in functions if f.get("name", f.get("type")) == region.name), None)
            if entry is None:
                entry = CommentedMap(type="roi", name=region.name)
                functions.append(entry)
            elif entry.get("type") != "roi":
                raise SmallDataError(f"function {region.name!r} of {region.det} is a {entry.get('type')!r}, not an "
                                     "roi; name the region differently")
            entry["module"] = int(region.module)
            entry["roi"] = _flow([int(v) for v in region.roi])
        for det, center in self._tuned.get("center", {}).items():
            for entry in self._functions_of(data, det):
                if entry.get("type") == "azimuthal":
                    entry["center"] = _flow([_metres(center[0]), _metres(center[1])])
        for det, geometry in self._tuned.get("geometry", {}).items():
            self._detector(data, det)["quadrant_positions"] = [
                _flow([_metres(x), _metres(y)]) for x, y in geometry.quadrant_positions]
        for det, mask in self._tuned.get("masks", {}).items():
            det_cfg = self._detector(data, det)
            mask_path = dest.parent / f"{dest.stem}_{det}_mask.npy"
            np.save(mask_path, self._combined_mask(det_cfg, dest.parent, mask))
            det_cfg["user_mask"] = mask_path.name
        if frame_cut is not None:
            mask_path = dest.parent / f"{dest.stem}_frame_mask.h5"
            with h5py.File(mask_path, "w") as f:
                f["trainId"] = cut_trains
                f["mask"] = cut_mask
            if data.get("rejection") is None:
                data["rejection"] = CommentedMap()
            data["rejection"]["user_mask"] = mask_path.name
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".yaml", dir=dest.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                yaml.dump(data, fh)
            ProducerConfig.from_file(tmp)
            os.chmod(tmp, _umask_mode(0o666))  # mkstemp makes 0600; the proposal's group must read the config
            os.replace(tmp, dest)
        finally:
            Path(tmp).unlink(missing_ok=True)
        self.log.info("config written to %s", dest)
        return dest

    @staticmethod
    def _detector(data, det: str):
        detectors = data.get("detectors") or {}
        if det not in detectors:
            raise SmallDataError(f"no detector {det!r} in the config; detectors: {list(detectors)}")
        return detectors[det]

    def _functions_of(self, data, det: str):
        det_cfg = self._detector(data, det)
        if det_cfg.get("functions") is None:
            det_cfg["functions"] = []
        return det_cfg["functions"]

    def _rebase_paths(self, data, old: Path, new: Path) -> None:
        """Relative paths of the config, re-expressed from the copy's folder."""
        def rebase(value):
            if not isinstance(value, str) or os.path.isabs(os.path.expandvars(os.path.expanduser(value))):
                return value
            return os.path.relpath(old / value, new)

        for section, key in PATH_KEYS:
            node = data
            for part in section:
                node = node.get(part) if isinstance(node, dict) else None
            if isinstance(node, dict) and node.get(key) is not None:
                node[key] = rebase(node[key])
        for det_cfg in (data.get("detectors") or {}).values():
            for key in DETECTOR_PATH_KEYS:
                if isinstance(det_cfg, dict) and det_cfg.get(key) is not None:
                    det_cfg[key] = rebase(det_cfg[key])

    @staticmethod
    def _combined_mask(det_cfg, folder: Path, mask: np.ndarray) -> np.ndarray:
        """The session's mask of the whole detector (modules, rows, columns) AND the config's own user mask,
        if it has one."""
        from smalldata.calib.masks import load_user_mask

        existing: Optional[str] = det_cfg.get("user_mask")
        if existing is None:
            return np.asarray(mask, dtype=bool)
        resolved = Path(os.path.expandvars(os.path.expanduser(existing)))
        resolved = resolved if resolved.is_absolute() else folder / resolved
        mask = np.asarray(mask, dtype=bool)
        return mask & load_user_mask(resolved, range(mask.shape[0]), module_shape=mask.shape[1:],
                                     n_modules=mask.shape[0])
