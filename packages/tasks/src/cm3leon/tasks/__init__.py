"""cm3leon.tasks."""
