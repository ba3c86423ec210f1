"""A `Router` over one vLLM-preset provider that talks to a loopback stub server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from .http_server import Reply, Request, StubServer


async def stub_router(handler: Callable[[Request], Reply]) -> AsyncIterator[tuple[object, StubServer]]:
    """Yields once (use `async for`): the router and its stub; retries do not wait."""
    from providers import build_provider
    from providers.router import Router

    server = await StubServer(handler).start()
    provider = build_provider("vllm", {"VLLM_BASE_URL": server.url + "/v1", "VLLM_MODEL": "stub-model"})

    async def no_sleep(_: float) -> None:
        return None

    router = Router({"vllm": provider}, ["vllm"], sleep=no_sleep)
    try:
        yield router, server
    finally:
        await router.aclose()
        await server.close()
