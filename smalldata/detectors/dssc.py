"""The DSSC 1M as a detector type: 16 modules of 128 x 512 pixels, frames per pulse, 9-bit ADC."""
from __future__ import annotations

from smalldata.constants import (
    DSSC_ADC_MAX,
    DSSC_ASIC_SHAPE,
    DSSC_MODULE_SHAPE,
    DSSC_N_MODULES,
    dssc_source,
)

from .types import DetectorType

#: The SCS DSSC 1M (hexagonal pixels of 236 x 204 um between centres, rows x columns).
DSSC = DetectorType(
    kind="dssc",
    name="DSSC 1M",
    n_modules=DSSC_N_MODULES,
    module_shape=DSSC_MODULE_SHAPE,
    per_pulse=True,
    raw_dtype="uint16",
    saturation=DSSC_ADC_MAX,
    pixel_size=(236e-6, 204e-6),
    source_pattern=dssc_source(0).replace("/0CH0", "/{module}CH0"),
    image_key="image.data",
    asic_shape=DSSC_ASIC_SHAPE,
)
