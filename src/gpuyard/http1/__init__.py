"""gpuyard's own HTTP/1.1 client (``client.HttpClient``), for the paths where httpx's CPU per
request was the bottleneck: the gateway's hop to its replicas and webhook delivery. It imports
nothing of gpuyard; httpx stays for everything else."""
