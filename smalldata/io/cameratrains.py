"""A per-train camera's images of a run as batches of trains for the event loop.

:class:`CameraTrains` knows which trains of the run have an image of the camera (recorded train ids
plus the type's train-id offset) and reads the images of some of them as a
:class:`~smalldata.plugin.frames.RawBatch` of one module: one frame per train, pulse and memory
cell 0. Images are read through extra-data's selection API, so sequence files and missing trains
are handled as extra-data handles them.
"""
from __future__ import annotations

import logging

import numpy as np

from smalldata.cameras.reading import check_camera_source
from smalldata.detectors.types import DetectorType
from smalldata.errors import DataError
from smalldata.plugin.frames import RawBatch

log = logging.getLogger(__name__)


class CameraTrains:
    """The trains with an image of one camera, and their images.

    Parameters
    ----------
    data : extra_data.DataCollection
        The run.
    detector_type : DetectorType
        The camera's type (source, key, shape, train-id offset).
    name : str
        Detector name in the config (for messages).
    where : str
        How the run is named in messages (its path).
    """

    def __init__(self, data, detector_type: DetectorType, name: str, where: str):
        self.data, self.type, self.name, self.where = data, detector_type, name, where
        source, key = detector_type.source(), detector_type.image_key
        check_camera_source(data, source, key, detector_type.name, f"detectors.{name} (run {where})",
                            f"set detectors.{name}.camera or .source to the camera that recorded it")
        self._key = data[source, key]
        recorded = np.asarray(data.train_ids, dtype=np.int64)
        counts = np.asarray(self._key.data_counts(labelled=False))
        if (counts > 1).any():
            log.warning("%s: %s has %d trains with more than one image; the first of each is used", where, source,
                        int(np.count_nonzero(counts > 1)))
        self._recorded = recorded[counts > 0]
        #: (T,) uint64 true train ids that have an image, ascending
        self.train_ids = (self._recorded + detector_type.train_id_offset).astype(np.uint64)
        shape = tuple(self._key.entry_shape)
        if shape != tuple(detector_type.module_shape):
            raise DataError(f"detectors.{name}: {source} images of run {where} are {shape[0]}x{shape[1]} pixels, "
                            f"the {detector_type.name} preset's {detector_type.module_shape[0]}x"
                            f"{detector_type.module_shape[1]}; set detectors.{name}.shape to {list(shape)}")

    def read(self, train_ids: np.ndarray) -> RawBatch:
        """The images of ``train_ids`` (true ids, all in :attr:`train_ids`) as a one-module batch."""
        from extra_data import by_id

        train_ids = np.asarray(train_ids, dtype=np.uint64)
        recorded = train_ids.astype(np.int64) - self.type.train_id_offset
        selection = self._key.select_trains(by_id[[int(t) for t in recorded]])
        ids = np.asarray(selection.train_id_coordinates(), dtype=np.int64)
        images = selection.ndarray()
        first = np.concatenate([[True], ids[1:] != ids[:-1]]) if len(ids) else np.zeros(0, bool)
        ids, images = ids[first], images[first]
        if not np.array_equal(ids, recorded):
            lacking = sorted(set(recorded.tolist()) - set(ids.tolist()))
            raise DataError(f"detectors.{self.name}: run {self.where}: no image of train(s) {lacking[:5]} that "
                            "the index lists; the camera's files may be damaged")
        n = len(train_ids)
        return RawBatch(train_ids=train_ids, pulse_ids=np.zeros(n, np.uint64), cell_ids=np.zeros(n, np.uint16),
                        frame_index=np.zeros(n, np.int64), modules=(0,), data=images[:, None],
                        present=np.ones((n, 1), bool))

    def batch_trains(self, megabytes: float) -> int:
        """Trains per batch such that a batch's raw images take about ``megabytes`` MiB."""
        return max(1, int(megabytes * 2**20 // max(self.type.frame_bytes, 1)))
