"""Every N iterations, stream a validation video with the current generator to disk and the logger.

Fixed prompts and seed, so videos of different iterations compare. The video goes through the same
StreamSampler and cache policy as training and generation, and is written with the crash-safe mp4
writer to RUN/videos/iter_000200.mp4, with a contact sheet (.png) beside it that is also logged to
TensorBoard when that logger is on. Every rank streams, only rank 0 writes; a video that cannot be written
is a warning, never the end of the run (nor of its last checkpoint).
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from PIL import Image

from rf.diffusion.sampler import GeneratorNoise
from rf.utils.video import StreamingVideoWriter, contact_sheet


class VideoLogCallback(L.Callback):
    def __init__(self, every_n_iterations: int = 100, prompts: list[str] | None = None, latent_frames: int = 24,
                 fps: int = 8, seed: int = 1234):  # fmt: skip
        if every_n_iterations < 1:
            raise ValueError(f"video_log.every_n_iterations={every_n_iterations}: must be >= 1")
        self.every, self.prompts, self.latent_frames = every_n_iterations, list(prompts or []), latent_frames
        self.fps, self.seed = fps, seed
        self._done_at = -1

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        it = module.iteration
        if it % self.every == 0 and module.at_iteration_boundary and it != self._done_at:
            self.write(trainer, module, it)

    def on_train_end(self, trainer, module) -> None:
        if module.iteration != self._done_at:
            self.write(trainer, module, module.iteration)

    @torch.no_grad()
    def write(self, trainer, module, it: int) -> None:
        """Every rank streams (a sharded generator needs all of them in each forward); rank 0 writes."""
        self._done_at = it
        if not self.prompts:
            return
        text = module.text_encoder(self.prompts).to(module.device)
        c, _, h, w = module.latent_shape
        shape = (len(self.prompts), c, self.latent_frames, h, w)
        was_training = module.generator.training
        module.generator.eval()
        latents = module.sampler.rollout([(0, text)], shape, GeneratorNoise(self.seed, module.device))
        module.generator.train(was_training)
        video = module.decode(latents).cpu()  # [B, 3, T, H, W]
        if not trainer.is_global_zero:
            return
        grid = torch.cat(list(video), dim=-1)  # prompts side by side: [3, T, H, B*W]
        path = Path(trainer.default_root_dir) / "videos" / f"iter_{it:06d}.mp4"
        try:  # a video that cannot be written (no PyAV, a full disk) is not worth the run or its last checkpoint
            path.parent.mkdir(parents=True, exist_ok=True)
            with StreamingVideoWriter(path, self.fps, grid.shape[-2], grid.shape[-1]) as writer:
                writer.write(grid)
            sheet = contact_sheet(grid, columns=4, max_frames=16)
            Image.fromarray(sheet.numpy()).save(path.with_suffix(".png"))
        except (OSError, ImportError, RuntimeError, ValueError) as err:
            print(f"warning: the video log of iteration {it} was not written ({type(err).__name__}: {err}); "
                  "training goes on (callbacks.video_log=null turns it off)", flush=True)  # fmt: skip
            return
        for logger in trainer.loggers:
            if hasattr(logger.experiment, "add_image"):
                logger.experiment.add_image("video/contact_sheet", sheet.permute(2, 0, 1), it)
