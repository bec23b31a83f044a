"""cm3leon.retrieval."""
