"""Facts about the SCS instrument's sources and the DSSC 1M detector.

All lengths are in metres, energies in eV, times in seconds.
"""

# DSSC 1M: 16 modules of 128 x 512 hexagonal pixels, 9-bit ADC.
DSSC_N_MODULES = 16
DSSC_MODULE_SHAPE = (128, 512)
DSSC_ADC_MAX = 511  # a raw value >= this is saturated
DSSC_ASIC_SHAPE = (64, 64)  # 2 x 8 ASICs per module

# Example quadrant positions from SCS, in metres (extra-geom takes them in mm).
DSSC_DEFAULT_QUAD_POSITIONS = (
    (-124.100e-3, 3.112e-3),
    (-133.068e-3, -110.604e-3),
    (0.988e-3, -125.236e-3),
    (4.528e-3, 13.556e-3),
)


def dssc_source(module: int) -> str:
    """Karabo source name of DSSC module ``module`` (0..15)."""
    return f"SCS_DET_DSSC1M-1/DET/{module}CH0:xtdf"


def dssc_aggregator(module: int) -> str:
    """Aggregator name used in the raw file names of DSSC module ``module``."""
    return f"DSSC{module:02d}"


# Pulse-resolved and slow sources at SCS.
XGM_SCS_DEVICE = "SCS_BLU_XGM/XGM/DOOCS"  # the XGM's control source (settings, pulse counts)
XGM_SCS_SOURCE = XGM_SCS_DEVICE + ":output"
XGM_SCS_KEY = "data.intensitySa3TD"
XGM_N_ENTRIES = 1000
TIMESERVER_DEVICE = "SCS_RR_UTC/TSYS/TIMESERVER"  # the timeserver's control source
BUNCH_PATTERN_SOURCE = TIMESERVER_DEVICE + ":outputBunchPattern"
BUNCH_PATTERN_KEY = "data.bunchPatternTable"
# Slots per bunch-pattern row in the recorded data so far; readers take the length from the data.
BUNCH_PATTERN_LENGTH = 2700
DELAY_SOURCE = "SCS_ILH_LAS/DOOCS/PPL_OPT_DELAY"
DELAY_KEY = "actualPosition.value"
PHOTON_ENERGY_SOURCE = "SA3_XTD10_MONO/MDL/PHOTON_ENERGY"
PHOTON_ENERGY_KEY = "actualEnergy.value"
DIGITIZER_SOURCE = "SCS_UTC1_ADQ/ADC/1:network"
DIGITIZER_TRACE_KEY = "digitizers.channel_1_A.raw.samples"
DIGITIZER_INTEGRAL_KEY = "digitizers.channel_1_A.apd.pulseIntegral"

INSTRUMENT = "SCS"

# Physical constants (CODATA), SI.
PLANCK_EV_S = 4.135667696e-15  # eV s
SPEED_OF_LIGHT = 299792458.0  # m / s
HC_EV_M = PLANCK_EV_S * SPEED_OF_LIGHT  # eV m


def wavelength_m(photon_energy_ev: float) -> float:
    """Photon wavelength in metres for an energy in eV."""
    return HC_EV_M / photon_energy_ev
