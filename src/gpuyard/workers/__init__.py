"""Built-in OpenAI-compatible CPU inference servers: ``embeddings``, ``chat``, ``tts``.

Each module builds a Starlette app (``build_app``) that ``serving.run_worker`` serves; the commands
are ``gpuyard worker …`` (``gpuyard.cli.worker``). See ``docs/workers.md``.
"""
