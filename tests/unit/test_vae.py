"""Chunked (streaming) decode equals one-shot decode, for the Wan VAE and the toy autoencoder."""

import torch
from diffusers import AutoencoderKLWan

from rf.models.vae import WanVideoAutoencoder
from rf.toy.autoencoder import ToyAutoencoder


def tiny_wan_vae() -> AutoencoderKLWan:
    torch.manual_seed(0)
    z = 4
    return AutoencoderKLWan(
        base_dim=8,
        z_dim=z,
        dim_mult=[1, 2, 2, 2],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
        latents_mean=[0.1 * i for i in range(z)],
        latents_std=[1.0 + 0.1 * i for i in range(z)],
    ).eval()


def test_wan_stream_decode_equals_diffusers_decode():
    vae = tiny_wan_vae()
    ae = WanVideoAutoencoder(vae)
    latents = torch.randn(1, 4, 7, 4, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        z = latents * ae.std + ae.mean
        ref = vae.decode(z).sample  # diffusers, one shot
        dec = ae.stream_decoder()
        chunks = [dec.decode(latents[:, :, i : i + 3]) for i in (0, 3)] + [dec.decode(latents[:, :, 6:])]
    out = torch.cat(chunks, dim=2)
    assert out.shape == ref.shape == (1, 3, ae.num_frames(7), 32, 32)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    # restarting the cache at every chunk (what calling vae.decode per chunk does) gives a different video
    with torch.no_grad():
        restarted = torch.cat([vae.decode(z[:, :, i : i + 3]).sample for i in (0, 3)], dim=2)
    assert (restarted - ref[:, :, : restarted.shape[2]]).abs().max() > 1e-3


def test_wan_encode_normalises_latents():
    ae = WanVideoAutoencoder(tiny_wan_vae())
    video = torch.rand(1, 3, 5, 32, 32) * 2 - 1
    z = ae.encode(video)
    assert z.shape == (1, 4, 2, 4, 4)
    raw = ae.vae.encode(video).latent_dist.mode()
    torch.testing.assert_close(z * ae.std + ae.mean, raw, atol=1e-5, rtol=1e-5)


def test_toy_stream_decode_equals_one_shot():
    ae = ToyAutoencoder(factor=2)
    video = torch.rand(2, 3, 9, 16, 16) * 2 - 1
    z = ae.encode(video)
    dec = ae.stream_decoder()
    out = torch.cat([dec.decode(z[:, :, i : i + 3]) for i in range(0, 9, 3)], dim=2)
    torch.testing.assert_close(out, ae.decode(z))
    torch.testing.assert_close(out, video, atol=1e-6, rtol=0)
