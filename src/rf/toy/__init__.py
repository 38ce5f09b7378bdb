"""A toy text-to-video setting that runs on a CPU: a procedural world, an exact autoencoder, a word
encoder. Each mirrors the interface of the real component it stands in for."""

from rf.toy.autoencoder import ToyAutoencoder, ToyStreamDecoder
from rf.toy.grammar import VOCABULARY, parse_prompt
from rf.toy.scene import ObjectSpec, SceneSpec, ToyClip
from rf.toy.text import ToyTextEncoder
from rf.toy.world import ToyWorld

__all__ = [
    "VOCABULARY",
    "ObjectSpec",
    "SceneSpec",
    "ToyAutoencoder",
    "ToyClip",
    "ToyStreamDecoder",
    "ToyTextEncoder",
    "ToyWorld",
    "parse_prompt",
]
