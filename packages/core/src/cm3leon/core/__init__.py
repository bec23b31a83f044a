"""cm3leon.core: model, objective, documents, shards, world, plugins, configs and CLI.

Heavy submodules (the model, training, shards) are imported on use; importing
``cm3leon.core`` itself is cheap.
"""

__version__ = "0.1.0"
