"""FSDP2 for the Wan transformers, applied in `LightningModule.configure_model` (the model code stays plain).

Lightning's `ModelParallelStrategy` (conf/trainer/fsdp2.yaml) builds the device mesh and calls
`configure_model`; there each transformer is sharded with `torch.distributed.fsdp.fully_shard`:

    one unit per block                  the all-gather of a block's weights overlaps the block before it
    per block, attn2's to_k/to_v/norm_k the causal student computes text K/V once per prompt
                                        (`encode_text`, a forward of the whole model with text_only=True),
                                        outside the block's forward: those weights need a unit of their own,
                                        whose hooks fire when they are called
    the root                            everything else (embeddings, output head)

Mixed precision is FSDP2's: parameters gathered in bf16, gradients reduced in fp32 (PAPER.md §4).
"""

from __future__ import annotations

import torch


def shard_wan(model: torch.nn.Module, mesh, param_dtype: torch.dtype = torch.bfloat16) -> None:
    """Shard a (Causal)WanTransformer3DModel in place over the data-parallel mesh."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    # Only the root casts its floating inputs to bf16. Inside, the blocks keep what they are given: the RoPE
    # tables stay fp32 (bf16 angles drift), and activation checkpointing recomputes a block with the very
    # dtypes of its forward (a cast in the block's own hook happens in one and not the other).
    inner = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32, cast_forward_inputs=False)
    root = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32)
    for block in model.blocks:
        attn2 = block.attn2
        fully_shard([attn2.to_k, attn2.to_v, attn2.norm_k], mesh=mesh, mp_policy=inner)
        fully_shard(block, mesh=mesh, mp_policy=inner)
    fully_shard(model, mesh=mesh, mp_policy=root)


def data_parallel_mesh(module):
    """The module's data-parallel mesh under ModelParallelStrategy, else None (one process, DDP, CPU)."""
    mesh = getattr(module, "_device_mesh", None)
    if mesh is None:
        return None
    return mesh["data_parallel"] if "data_parallel" in (mesh.mesh_dim_names or ()) else mesh
