"""How the worker reads its input topics: each record once, in order (see ``progress``)."""
