"""Video metrics as torchmetrics.Metric classes (DDP-synced sums), each backed by a per-video function
returning [B] values for per-video tables. Videos are [B, 3, T, H, W] float in [-1, 1]."""

from rf.metrics.copying import FirstFrameCopying, first_frame_copying
from rf.metrics.drift import Drift, LaplacianSharpness, drift
from rf.metrics.dynamics import DynamicDegree, dynamics
from rf.metrics.smoothness import MotionSmoothness, TemporalFlicker, motion_smoothness, temporal_flicker

__all__ = [
    "Drift",
    "DynamicDegree",
    "FirstFrameCopying",
    "LaplacianSharpness",
    "MotionSmoothness",
    "TemporalFlicker",
    "drift",
    "dynamics",
    "first_frame_copying",
    "motion_smoothness",
    "temporal_flicker",
]
