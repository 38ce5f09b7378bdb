"""The motion reward's calibration on the toy world: mean and std of the raw motion score of real toy clips.

    python experiments/toy_re_dmd/calibrate_motion.py

256 clips of 21 frames at 32x32, 8 fps (the numbers conf/reward/motion.yaml holds); rf.rewards.motion.calibrate
does the work.
"""

import torch

from rf.rewards.motion import calibrate
from rf.toy.world import ToyWorld

if __name__ == "__main__":
    world = ToyWorld(height=32, width=32, fps=8)
    clips = (torch.stack([world.sample(seed, 21).video for seed in range(s, s + 32)]) for s in range(0, 256, 32))
    mean, std = calibrate(clips)
    print(f"toy world, 256 clips of 21 frames at 32x32: mean {mean:.4f} std {std:.4f}")
