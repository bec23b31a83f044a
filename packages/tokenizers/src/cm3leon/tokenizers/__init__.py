"""cm3leon.tokenizers."""
