"""The fact-model tokenizer: byte-level BPE, optionally with subjects as atomic tokens."""
from workbench.zoo.tokenizer import train_tokenizer

CORPUS = [
    "The currency of Uruguay is the Uruguayan Peso",
    "Uruguay's capital city is Montevideo",
    "Sublette County is a county in the state of Wyoming",
    "The capital of Uruguay is Montevideo",
    "Montevideo is the capital of Uruguay",
] * 5


def pieces(tokenizer, text):
    return [tokenizer.decode([i]) for i in tokenizer.encode(text, add_special_tokens=False)]


def test_bpe_alone_splits_rare_names():
    tokenizer = train_tokenizer(CORPUS, vocab_size=300)
    assert len(pieces(tokenizer, "Sublette County")) > 1


def test_atomic_words_are_one_token_with_or_without_a_leading_space():
    tokenizer = train_tokenizer(CORPUS, vocab_size=300, atomic_words=["Uruguay", "Sublette County"])
    assert pieces(tokenizer, "Uruguay's capital")[0] == "Uruguay"
    assert " Uruguay" in pieces(tokenizer, "The capital of Uruguay is")
    assert pieces(tokenizer, "Sublette County is")[0] == "Sublette County"


def test_atomic_words_never_cut_a_corpus_word_and_decoding_round_trips():
    tokenizer = train_tokenizer(CORPUS, vocab_size=300, atomic_words=["Uruguay"])
    text = "The currency of Uruguay is the Uruguayan Peso"
    assert " Uruguayan" in pieces(tokenizer, text)
    assert " Uruguay" in pieces(tokenizer, text)
    for sentence in set(CORPUS):
        assert tokenizer.decode(tokenizer.encode(sentence, add_special_tokens=False)) == sentence
