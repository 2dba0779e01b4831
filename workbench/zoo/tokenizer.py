"""Train a small byte-level BPE tokenizer and wrap it in Hugging Face format.

The bundled fact model needs its own tokenizer: GPT-2's would have to be downloaded, and
a vocabulary of a few thousand tokens trained on the fact corpus keeps most subjects
multi-token, as real names are in GPT-2 (a large vocabulary on a small corpus turns
subjects into single tokens, which leaves causal tracing nothing to localise).
"""
from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from workbench.errors import InvalidRequestError

END_OF_TEXT = "<|endoftext|>"


def train_tokenizer(texts: Iterable[str], vocab_size: int = 4096) -> PreTrainedTokenizerFast:
    """Train a GPT-2-style byte-level BPE tokenizer on ``texts``.

    Args:
        texts: the training corpus, one document per item.
        vocab_size: upper bound on the vocabulary (256 byte tokens + merges + ``<|endoftext|>``);
            the trainer stops early when the corpus has no more merges to offer.

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
    core.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=END_OF_TEXT,
        eos_token=END_OF_TEXT,
        unk_token=END_OF_TEXT,
        pad_token=END_OF_TEXT,
        model_max_length=1024,
    )
