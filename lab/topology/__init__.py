"""The network picture as data: the model, the loader (file:line problems), routing, the diagram."""
