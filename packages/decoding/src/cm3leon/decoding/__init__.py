"""cm3leon.decoding."""
