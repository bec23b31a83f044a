"""Ablation matrices: ``cm3leon ablate configs/ablations/NAME.yaml``.

:mod:`~cm3leon.eval.ablation.spec` expands a declarative file into runs,
:mod:`~cm3leon.eval.ablation.execute` runs them through a registered runner (resumable), and
:mod:`~cm3leon.eval.ablation.report` writes the tables and plots.
"""
