"""``gpuyard worker …``: the built-in OpenAI-compatible CPU inference servers that the agent's
``process`` runtime starts for the images ``gpuyard/worker:embeddings|chat|tts``.
``register(app)`` adds the group.

The worker modules are imported inside each command so that ``gpuyard --help`` does not pay for
them; torch and transformers load only in the background once a worker starts.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

console = Console(stderr=True, soft_wrap=True)

worker = typer.Typer(
    name="worker",
    help="Built-in OpenAI-compatible CPU inference servers (what the process runtime runs for "
    "the gpuyard/worker:<kind> images).",
    no_args_is_help=True,
)

Host = Annotated[
    str,
    typer.Option(
        "--host",
        envvar="HOST",
        show_envvar=True,
        help="Address to listen on (the process runtime sets HOST).",
    ),
]
Port = Annotated[
    int,
    typer.Option(
        "--port", envvar="PORT", show_envvar=True, min=1, max=65535, help="Port to listen on."
    ),
]
ModelId = Annotated[
    str | None,
    typer.Option(
        "--model-id",
        help="The model name clients send and /v1/models lists.",
        show_default="the model's own name",
    ),
]
Threads = Annotated[
    int | None,
    typer.Option("--threads", min=1, help="CPU threads for torch.", show_default="all cores"),
]
LogLevel = Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
INSTALL_HINT = "install the workers extra: pip install 'gpuyard[workers]'"


def _logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/bold red] {escape(message)}", highlight=False)
    raise typer.Exit(1)


@worker.command()
def embeddings(
    model: Annotated[
        str,
        typer.Option(
            "--model",
            help="auto, minilm (all-MiniLM-L6-v2, 384 dims, needs torch), wordllama "
            "(256 dims, no torch) or a sentence-transformers model directory. auto: minilm "
            "when torch is installed, else wordllama.",
        ),
    ] = "auto",
    model_id: ModelId = None,
    host: Host = DEFAULT_HOST,
    port: Port = DEFAULT_PORT,
    max_batch: Annotated[
        int, typer.Option("--max-batch", min=1, help="Inputs per request.")
    ] = 2048,
    max_input_tokens: Annotated[
        int, typer.Option("--max-input-tokens", min=1, help="Tokens per input.")
    ] = 8192,
    threads: Threads = None,
    log_level: LogLevel = "info",
) -> None:
    """Serve POST /v1/embeddings (OpenAI shape; float or base64)."""
    from gpuyard.workers import embedders, embeddings
    from gpuyard.workers.serving import WorkerFailed, run_worker

    _logging(log_level)
    try:
        choice = embedders.resolve(model, model_id)
    except ValueError as exc:
        _fail(str(exc))
        return
    limits = embeddings.EmbeddingsLimits(max_batch=max_batch, max_input_tokens=max_input_tokens)
    app, slot = embeddings.build_app(choice, limits=limits, threads=threads)
    try:
        run_worker(app, slot, host=host, port=port, log_level=log_level)
    except WorkerFailed as exc:
        _fail(str(exc))


@worker.command()
def chat(
    model: Annotated[
        Path,
        typer.Option(
            "--model",
            metavar="PATH",
            help="A local Hugging Face causal LM directory (config.json, weights, tokenizer).",
        ),
    ],
    model_id: ModelId = None,
    max_new_tokens: Annotated[
        int,
        typer.Option(
            "--max-new-tokens", min=1, help="Default and cap of the tokens one answer generates."
        ),
    ] = 512,
    host: Host = DEFAULT_HOST,
    port: Port = DEFAULT_PORT,
    threads: Threads = None,
    log_level: LogLevel = "info",
) -> None:
    """Serve POST /v1/chat/completions and /v1/completions (streaming too) with a local model."""
    from gpuyard.workers import chat as chat_worker
    from gpuyard.workers import textgen
    from gpuyard.workers.serving import WorkerFailed, run_worker

    _logging(log_level)
    missing = textgen.missing_modules()
    if missing:
        _fail(f"the chat worker needs {', '.join(missing)}: {INSTALL_HINT}")
    if not model.expanduser().is_dir():
        _fail(f"--model {model}: not a directory (give a local Hugging Face model directory)")
    if not (model.expanduser() / "config.json").is_file():
        _fail(f"--model {model}: no config.json there; is it a Hugging Face model directory?")
    app, slot = chat_worker.build_app(
        model.expanduser(), model_id=model_id, max_new_tokens=max_new_tokens, threads=threads
    )
    try:
        run_worker(app, slot, host=host, port=port, log_level=log_level)
    except WorkerFailed as exc:
        _fail(str(exc))


@worker.command()
def tts(
    voice_default: Annotated[
        str,
        typer.Option(
            "--voice-default",
            help="The voice when a request names none (see GET /v1/audio/voices).",
        ),
    ] = "en-us",
    model_id: ModelId = None,
    max_input_chars: Annotated[
        int, typer.Option("--max-input-chars", min=1, help="Characters of one input.")
    ] = 4096,
    host: Host = DEFAULT_HOST,
    port: Port = DEFAULT_PORT,
    log_level: LogLevel = "info",
) -> None:
    """Serve POST /v1/audio/speech (wav or pcm) and GET /v1/audio/voices with eSpeak NG."""
    from gpuyard.workers import espeak
    from gpuyard.workers import tts as tts_worker
    from gpuyard.workers.serving import WorkerFailed, run_worker

    _logging(log_level)
    try:
        espeak.locate_library()
    except espeak.EspeakMissing as exc:
        _fail(str(exc))
    app, slot = tts_worker.build_app(
        model_id=model_id or tts_worker.DEFAULT_MODEL_ID,
        default_voice=voice_default,
        max_input_chars=max_input_chars,
    )
    try:
        run_worker(app, slot, host=host, port=port, log_level=log_level)
    except WorkerFailed as exc:
        _fail(str(exc))


@worker.command()
def serverless(
    max_queue_time: Annotated[
        float,
        typer.Option("--max-queue-time", min=0, help="Seconds a request may queue (else 429)."),
    ] = 30.0,
    host: Host = "0.0.0.0",
    port: Port = DEFAULT_PORT,
    log_level: LogLevel = "info",
) -> None:
    """A serverless worker speaking Vast's worker protocol (signed grants, load reports) whose
    work is CPU hashing, for demos and tests; it reads REPORT_ADDR, MASTER_TOKEN, CONTAINER_ID,
    WORKER_PORT, PUBLIC_IPADDR and VAST_TCP_PORT_<WORKER_PORT> as a serverless worker is given."""
    import uvicorn

    from gpuyard.workers.serverless import build_app

    _logging(log_level)
    try:
        app = build_app(listen_port=port, max_queue_time=max_queue_time)
    except KeyError as exc:
        _fail(f"missing {exc.args[0]}: run it as a serverless endpoint's worker")
        return
    uvicorn.run(app, host=host, port=port, log_level=log_level)


@worker.command("make-tiny-model")
def make_tiny_model(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="Where to write it (new).")],
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same weights.")] = 0,
) -> None:
    """Write a tiny random-weight chat model (about 400 KB, gibberish, fast) for tests and demos
    of `gpuyard worker chat --model DIR`. Downloads nothing."""
    from gpuyard.workers.testing import make_tiny_model as make

    try:
        path = make(directory.expanduser(), seed=seed)
    except FileExistsError as exc:
        _fail(str(exc))
        return
    except ModuleNotFoundError as exc:
        _fail(f"{exc}: {INSTALL_HINT}")
        return
    print(path.resolve())


def register(app: typer.Typer) -> None:
    """Add ``gpuyard worker …`` to ``app``."""
    app.add_typer(worker, name="worker")


if __name__ == "__main__":
    worker()
