"""Train a small byte-level BPE tokenizer and wrap it in Hugging Face format.

The bundled fact model needs its own tokenizer: GPT-2's would have to be downloaded, and
a vocabulary of a few thousand tokens trained on the fact corpus keeps most subjects
multi-token, as real names are in GPT-2 (a large vocabulary on a small corpus turns
subjects into single tokens, which leaves causal tracing nothing to localise).

``atomic_words`` makes chosen strings (a model's subjects) single tokens on purpose, for
experiments that need one token per subject.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from workbench.errors import InvalidRequestError

END_OF_TEXT = "<|endoftext|>"


def train_tokenizer(
    texts: Iterable[str], vocab_size: int = 4096, atomic_words: Sequence[str] = ()
) -> PreTrainedTokenizerFast:
    """Train a GPT-2-style byte-level BPE tokenizer on ``texts``.

    Args:
        texts: the training corpus, one document per item.
        vocab_size: upper bound on the vocabulary (256 byte tokens + merges + ``<|endoftext|>``);
            the trainer stops early when the corpus has no more merges to offer.
        atomic_words: strings that become one token each (with and without a leading space), on
            top of ``vocab_size``. Words of the corpus that merely begin with one of them
            ("Uruguayan" for "Uruguay") become single tokens too, so an atomic token never cuts a
            corpus word in two; in other text it can.

    Returns:
        A fast tokenizer that uses ``<|endoftext|>`` as BOS, EOS, UNK and padding token, and
        adds no special tokens when encoding (like GPT-2's), so prompts tokenize as written.
    """
    if vocab_size < 257:
        raise InvalidRequestError(f"vocab_size must be at least 257 (256 bytes + {END_OF_TEXT}), got {vocab_size}")
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    texts = list(texts)
    core.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=END_OF_TEXT,
        eos_token=END_OF_TEXT,
        unk_token=END_OF_TEXT,
        pad_token=END_OF_TEXT,
        model_max_length=1024,
    )
    if atomic_words:
        tokenizer.add_tokens(_atomic_tokens(atomic_words, texts))
    return tokenizer


def _atomic_tokens(words: Sequence[str], texts: Sequence[str]) -> list[AddedToken]:
    """Added tokens for ``words`` (bare at a text's start, with their leading space elsewhere) and for
    the corpus words they are a prefix of. Added tokens match longest-first, so " Uruguayan" wins
    over " Uruguay"."""
    words = sorted(set(words), key=len, reverse=True)
    starts = re.compile(r"(?<!\w) ?(?:" + "|".join(map(re.escape, words)) + r")\w+")
    longer = {match.group(0).lstrip(" ") for text in texts for match in starts.finditer(text)}
    contents = sorted(set(words) | longer)
    bare = [AddedToken(word, single_word=True, normalized=False) for word in contents]
    spaced = [AddedToken(" " + word, normalized=False) for word in contents]
    return bare + spaced
