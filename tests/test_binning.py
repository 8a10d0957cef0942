"""Scan binning (smalldata.sums.binning): edges, width around an origin, unique values, a single bin."""
import numpy as np
import pytest

from smalldata.errors import ConfigError, DataError
from smalldata.sums.binning import ScanBinning


def test_edges_binning():
    b = ScanBinning(edges=[0.0, 1.0, 2.5, 4.0], name="delay", units="mm")
    v = np.array([-0.1, 0.0, 0.99, 1.0, 2.5, 3.99, 4.0, np.nan])
    assert b.assign(v).tolist() == [-1, 0, 0, 1, 2, 2, -1, -1]
    assert b.n_bins == 3 and b.centres.tolist() == [0.5, 1.75, 3.25]
    for bad in ([1.0], [0.0, 0.0], [2.0, 1.0], [0.0, np.inf]):
        with pytest.raises(ConfigError):
            ScanBinning(edges=bad)


def test_width_binning_centred_on_origin():
    b = ScanBinning(width=0.5, origin=0.1)
    with pytest.raises(ConfigError):
        b.assign(np.array([1.0]))  # not fitted yet
    b.fit(np.array([0.1, 0.6, 1.6, np.nan, 0.34]))
    np.testing.assert_allclose(b.centres, [0.1, 0.6, 1.1, 1.6])
    np.testing.assert_allclose(b.edges, [-0.15, 0.35, 0.85, 1.35, 1.85])
    assert b.assign(np.array([0.1, 0.34, 0.36, 1.6, 1.84, 1.86, -0.2, np.nan])).tolist() == [0, 0, 1, 3, 3, -1, -1, -1]
    with pytest.raises(DataError):
        ScanBinning(width=1.0).fit(np.array([np.nan]))
    for bad in (0, -1.0, np.nan, "1"):
        with pytest.raises(ConfigError):
            ScanBinning(width=bad)


def test_unique_and_single_binning():
    b = ScanBinning(unique=True).fit(np.array([860.0, 861.5, 860.0, 865.0]))
    assert b.centres.tolist() == [860.0, 861.5, 865.0]
    assert b.assign(np.array([861.5, 860.0, 860.5, np.nan, 865.0])).tolist() == [1, 0, -1, -1, 2]
    s = ScanBinning()
    assert s.n_bins == 1 and s.assign(None, n_frames=3).tolist() == [0, 0, 0]
    assert s.assign(np.array([np.nan, 1.0])).tolist() == [0, 0]
    with pytest.raises(ConfigError):
        ScanBinning(edges=[0, 1], width=1.0)
