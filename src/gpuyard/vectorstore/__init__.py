"""The vector store: collections of text items with their embeddings, searched by meaning.

It imports nothing of the server: the composition root hands it its ports (ports.py), the rows
in the database and the embedding model behind the gateway, as for ``gateway/``.
"""
