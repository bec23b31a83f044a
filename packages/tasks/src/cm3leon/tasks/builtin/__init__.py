"""The built-in SFT tasks of Table 5, one module per task.

Each module holds the task's Table 5 template strings and a factory returning a
:class:`cm3leon.core.interfaces.Task`; :mod:`cm3leon.tasks.plugin` registers them.
Tasks that share a record type and rendering logic (captioning, VQA, the
ControlNet-style tasks) compose the shared classes of :mod:`.caption`, :mod:`.vqa`
and :mod:`.conditioned` with their own templates.
"""
