import pytest

from gpuyard.agent.runtimes.process_command import (
    CannotRun,
    build_argv,
    build_env,
    builtin_worker_kind,
)
from gpuyard.core.workload import WorkloadSpec

PY = "/opt/venv/bin/python"


def spec(**fields: object) -> WorkloadSpec:
    return WorkloadSpec.model_validate({"id": "wl_1", **fields})


def test_command_wins_and_args_become_positional_parameters() -> None:
    s = spec(command="echo $1", args=["hi"], onstart="ignored", image="gpuyard/worker:chat")
    assert build_argv(s, python=PY) == ["/bin/sh", "-c", "echo $1", "gpuyard", "hi"]


def test_onstart_then_args() -> None:
    s = spec(onstart="pip install x", args=["python", "serve.py"])
    assert build_argv(s, python=PY) == [
        "/bin/sh",
        "-c",
        'pip install x\nexec "$@"',
        "gpuyard",
        "python",
        "serve.py",
    ]


def test_onstart_alone_is_the_whole_script_even_for_an_unknown_image() -> None:
    s = spec(image="pytorch/pytorch:latest", onstart="python train.py")
    assert build_argv(s, python=PY) == ["/bin/sh", "-c", "python train.py"]


def test_onstart_then_builtin_worker() -> None:
    s = spec(image="gpuyard/worker:embeddings", onstart="echo warm", args=["--model", "m"])
    assert build_argv(s, python=PY)[3:] == [
        "gpuyard",
        PY,
        "-m",
        "gpuyard.cli.main",
        "worker",
        "embeddings",
        "--model",
        "m",
    ]


@pytest.mark.parametrize(
    ("image", "kind"),
    [
        ("gpuyard/worker:embeddings", "embeddings"),
        ("ghcr.io/gpuyard/worker:chat", "chat"),
        ("localhost:5000/gpuyard/worker:tts", "tts"),
        ("gpuyard-worker-embeddings", "embeddings"),
        ("gpuyard-worker-chat:0.1.0", "chat"),
        ("pytorch/pytorch", None),
        ("gpuyard/worker", None),
    ],
)
def test_builtin_worker_images(image: str, kind: str | None) -> None:
    assert builtin_worker_kind(image) == kind


def test_builtin_worker_image_runs_the_worker_cli() -> None:
    s = spec(image="gpuyard-worker-tts", args=["--voice", "en"])
    assert build_argv(s, python=PY) == [
        PY,
        "-m",
        "gpuyard.cli.main",
        "worker",
        "tts",
        "--voice",
        "en",
    ]


def test_args_alone_run_directly_without_a_shell() -> None:
    assert build_argv(spec(args=["sleep", "5"]), python=PY) == ["sleep", "5"]


def test_other_image_cannot_run() -> None:
    with pytest.raises(
        CannotRun, match=r"^image nginx:1 cannot run on the process runtime; give a command$"
    ):
        build_argv(spec(image="nginx:1", args=["-g", "daemon off;"]), python=PY)


def test_unknown_builtin_worker_is_named() -> None:
    with pytest.raises(CannotRun, match="unknown built-in worker 'vision'"):
        build_argv(spec(image="gpuyard/worker:vision"), python=PY)


def test_nothing_to_run() -> None:
    with pytest.raises(CannotRun, match="nothing to run"):
        build_argv(spec(), python=PY)


def test_env_precedence_and_pinning() -> None:
    s = spec(
        env={"FOO": "bar", "PORT": "1", "CUDA_VISIBLE_DEVICES": "0,1,2,3", "HOME": "/custom"},
        gpu_indices=[2, 3],
        gpu_uuids=["GPU-a", "GPU-b"],
        ssh_authorized_keys=["ssh-ed25519 AAAA one", " ", "ssh-rsa BBBB two\n"],
    )
    base = {"PATH": "/usr/bin", "GPUYARD_TOKEN": "secret", "LANG": "C.UTF-8"}
    env = build_env(s, host_port=40001, home="/state/home", base=base, listen_host="0.0.0.0")
    assert env["HOST"] == "0.0.0.0"  # where to listen so the control plane reaches it
    assert env["PATH"] == "/usr/bin" and env["LANG"] == "C.UTF-8"
    assert "GPUYARD_TOKEN" not in env  # the agent's credentials stay out
    assert env["FOO"] == "bar"
    assert env["HOME"] == "/custom"  # a spec may choose its HOME
    assert env["PORT"] == "40001"  # but not the port gpuyard allocated
    assert env["CUDA_VISIBLE_DEVICES"] == "2,3"
    assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert env["NVIDIA_VISIBLE_DEVICES"] == "2,3"
    assert env["GPUYARD_WORKLOAD_ID"] == "wl_1"
    assert env["GPUYARD_GPU_UUIDS"] == "GPU-a,GPU-b"
    assert env["GPUYARD_SSH_AUTHORIZED_KEYS"] == "ssh-ed25519 AAAA one\nssh-rsa BBBB two"
    assert env["SSH_PUBLIC_KEY"] == env["GPUYARD_SSH_AUTHORIZED_KEYS"]


def test_env_without_gpus_or_port() -> None:
    env = build_env(spec(env={"PORT": "9000"}), host_port=None, home="/h", base={})
    assert env["CUDA_VISIBLE_DEVICES"] == ""  # hides every GPU
    assert env["NVIDIA_VISIBLE_DEVICES"] == "void"
    assert env["PORT"] == "9000"  # no port allocated: the spec's own PORT stands
    assert env["HOME"] == "/h"
    assert "HOST" not in env  # nothing to listen on
    assert "SSH_PUBLIC_KEY" not in env
