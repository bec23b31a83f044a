"""Build the unified vocabulary (:class:`cm3leon.core.vocab.Vocabulary`) from trained tokenizers.

The layout ``[specials | text | image]`` and its range checks live in core because
every package needs them; this module only ties the sizes to actual tokenizers so
the text block is exactly the BPE vocabulary and the image block exactly the codebook.
"""

from __future__ import annotations

from cm3leon.core.interfaces import ImageTokenizer, TextTokenizer
from cm3leon.core.vocab import Vocabulary

__all__ = ["build_vocabulary"]


def build_vocabulary(text: TextTokenizer, image: ImageTokenizer, *, num_sentinels: int = 8) -> Vocabulary:
    """The unified vocabulary for ``text`` and ``image``.

    Args:
        text: a trained text tokenizer (its ``vocab_size`` becomes the text block).
        image: an image tokenizer (its ``codebook_size`` becomes the image block).
        num_sentinels: number of ``<mask:i>``/``<infill:i>`` pairs.

    Raises:
        TypeError: an argument does not satisfy the tokenizer protocol.
    """
    if not isinstance(text, TextTokenizer):
        raise TypeError(f"build_vocabulary: {type(text).__name__} is not a TextTokenizer")
    if not isinstance(image, ImageTokenizer):
        raise TypeError(f"build_vocabulary: {type(image).__name__} is not an ImageTokenizer")
    return Vocabulary(text_size=text.vocab_size, image_size=image.codebook_size, num_sentinels=num_sentinels)
