"""python -m rf.encode_prompts prompts=FILE [model=wan_1_3b|toy] [cache=DIR]: fill a prompt-embedding cache.

Encodes every line of a prompt file, and the CFG negative prompt, into an EmbeddingCache
(rf.models.text_cache) so that training reads embeddings from disk and never holds the 11 GB umT5
encoder. The encoder is the model's (conf/model/text/): the one behind its cache (umT5 for Wan), or its
own (the toy one); the cache is the one the model reads; the negative prompt is its cached encoder's
(Wan's default, or +model.text_encoder.negative_prompt="..."; none for the toy encoder: zeros). Batched;
prompts already in the cache are skipped, so a killed run relaunched with the same command continues where
it stopped (and a finished one does nothing).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig
from tqdm import tqdm

from rf.models.text_cache import WAN_NEGATIVE_PROMPT, CachedTextEncoder, CorruptEntryError
from rf.toy.text import check_toy_prompts, is_toy_encoder
from rf.utils.cli import entry
from rf.utils.files import read_prompt_file
from rf.utils.instantiate import instantiate, pick_device
from rf.utils.stop import Stop


@entry("encode_prompts", outputs=("cache",))
def main(cfg: DictConfig) -> None:
    if cfg.prompts is None:
        raise ValueError("prompts=FILE is required: a text file with one prompt per line")
    if cfg.batch_size < 1:
        raise ValueError(f"batch_size={cfg.batch_size}: must be >= 1")
    prompts = list(dict.fromkeys(read_prompt_file(cfg.prompts)))  # each distinct prompt once, in file order
    text = cfg.model.get("text_encoder_online") or cfg.model.text_encoder  # umT5 behind the cache, or the toy one
    spec = text.get("encoder") or text  # the encoder itself, not the cache in front of it
    negative = cfg.model.text_encoder.get("negative_prompt", WAN_NEGATIVE_PROMPT)
    if is_toy_encoder(spec):
        check_toy_prompts(prompts, cfg.strict_prompts, f"prompts={cfg.prompts}")
        negative = None  # the toy world's negative is the empty condition, all zeros: nothing to encode
    if negative is not None and negative not in prompts:
        prompts.append(negative)

    device = pick_device(cfg.device)
    encoder = instantiate(spec).to(device)  # checks its weights folder before anything is made
    if Path(cfg.paths.cache).resolve() in Path(cfg.cache).resolve().parents:
        Path(cfg.cache).parent.mkdir(parents=True, exist_ok=True)  # rf's own cache folder: made on demand
    cache = CachedTextEncoder(cfg.cache, encoder=encoder, dtype=cfg.dtype).cache  # creates or checks encoder.json
    cache.remove_strays()

    def done(prompt: str) -> bool:
        if not cfg.verify:
            return prompt in cache
        try:
            return cache.get(prompt) is not None
        except CorruptEntryError:
            return False  # encoded again below; the new file replaces the damaged one

    todo = [p for p in tqdm(prompts, desc="checking", unit="prompt", disable=not cfg.verify) if not done(p)]
    if not todo:
        print(f"{cfg.cache}: all {len(prompts)} prompts already cached")
        return
    bar = tqdm(total=len(prompts), initial=len(prompts) - len(todo), unit="prompt", desc="encoding")
    with Stop() as stop:  # SIGINT / SIGTERM: the batch in hand is encoded and stored, the others wait
        for start in range(0, len(todo), cfg.batch_size):
            batch = todo[start : start + cfg.batch_size]
            for prompt, embedding in zip(batch, encoder(batch), strict=True):  # [b, L, D]
                cache.put(prompt, embedding)
            bar.update(len(batch))
            if stop.requested and start + cfg.batch_size < len(todo):
                bar.close()
                done = len(prompts) - len(todo) + start + len(batch)
                stop.exit(f"{done} of {len(prompts)} prompts encoded in {cfg.cache} (each entry whole)")
    bar.close()
    print(f"{cfg.cache}: encoded {len(todo)} prompts, {len(prompts) - len(todo)} were cached")


if __name__ == "__main__":
    main()
