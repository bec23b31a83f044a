"""cm3leon.eval."""
