"""Rewards for Re-DMD: scores of decoded rollouts, one z-scored number per sample."""

from rf.rewards.base import RewardModel, RewardSource
from rf.rewards.motion import MotionReward, calibrate

__all__ = ["MotionReward", "RewardModel", "RewardSource", "calibrate"]
