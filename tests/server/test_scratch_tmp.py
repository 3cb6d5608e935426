from pathlib import Path
from tests.harness import Api
from tests.server.vastai_runner import Vastai

async def test_scratch(api: Api, tmp_path: Path) -> None:
    t = await api.tenant("Acme")
    v = Vastai(api.base_url, t.key, tmp_path / "home")
    for args in [
        ("create", "endpoint", "--endpoint_name", "llama", "--cold_workers", "1", "--max_workers", "3"),
        ("show", "endpoints"),
        ("update", "endpoint", "1", "--target_util", "0.8"),
        ("create", "template", "--name", "t1", "--image", "python", "--image_tag", "3.11", "--env", "-p 8000:8000 -e A=1", "--onstart-cmd", "python -m http.server $PORT"),
        ("search", "templates"),
        ("create", "workergroup", "--endpoint_name", "llama", "--launch_args", "--image python --onstart-cmd 'sleep 100'", "--search_params", "gpu_name=RTX_4090"),
        ("show", "workergroups"),
        ("update", "workergroup", "1", "--gpu_ram", "16"),
        ("get", "endpt-workers", "1"),
        ("get", "endpt-logs", "1"),
        ("delete", "workergroup", "1"),
        ("delete", "endpoint", "1"),
        ("update", "endpoint", "1", "--target_util", "2"),
    ]:
        r = await v(*args)
        print(args, r.rc, r.out[-1500:], r.err[-800:])
