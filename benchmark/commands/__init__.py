"""Command groups of the ctrbench CLI; each module exposes ``register(app, data_app)``."""
