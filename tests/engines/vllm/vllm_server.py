"""What the vLLM tests' shared server is started with (see conftest.py)."""

API_KEY = "token-abc123"
#: One vLLM worker is estimated at ~2.3 GiB (1 GiB of KV, the rest vLLM and torch) and
#: the tiny GGUF at ~0.2 GiB: both fit, two vLLM models do not.
BUDGET = "3.5GiB"


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_KEY}"}
