"""The Python SDK's MCP client (PyPI mcp), driven by the gateway's Rust tests with its defaults.

Signs in to MCP_URL with the SDK's OAuthClientProvider, as the pre-registered public client
MCP_OAUTH_CLIENT or, without it, as the SDK's defaults have it (the authorization URL is printed for
the test to sign in; the code comes back to a loopback listener on MCP_CALLBACK_PORT), then lists
tools, calls echo, calls slow_count with progress, waits for a line on stdin (the test lets the
token expire) and calls echo again. With MCP_STEP_UP_TOOL it then calls that tool, which needs a
scope the token lacks (step up), hands its token to the test (`hold`) and waits for a line before
calling echo again. Then it calls test_reconnection, and closes. Prints one JSON line per step
(`at` = ms since the start); trusts the gateway's certificate through SSL_CERT_FILE.
"""

import asyncio
import base64
import json
import os
import sys
import time
from urllib.parse import parse_qs, urlparse

from mcp import Client
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

START = time.monotonic()


def say(step, **fields):
    at = round((time.monotonic() - START) * 1000)
    print(json.dumps({"step": step, "at": at, **fields}), flush=True)


def claims(jwt):
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


class Storage:
    """Tokens and the client (pre-registered, or as the SDK registered it), in memory; counts the tokens saved."""

    def __init__(self, client):
        self.client = client
        self.tokens = None
        self.saves = 0

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken):
        self.tokens = tokens
        self.saves += 1
        c = claims(tokens.access_token)
        say("tokens", aud=c["aud"], sub=c["sub"], scope=tokens.scope, refresh=tokens.refresh_token is not None)

    async def get_client_info(self):
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull):
        self.client = client_info
        say("client", client_id=client_info.client_id, scope=client_info.scope)


class Callback:
    """The redirect URI: a loopback listener that hands over the next authorization response."""

    def __init__(self):
        self.responses = asyncio.Queue()
        self.authorizations = 0

    async def handle(self, reader, writer):
        request_line = (await reader.readline()).decode()
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        q = parse_qs(urlparse(request_line.split(" ")[1]).query)
        first = {k: v[0] for k, v in q.items()}
        say("callback", ok="code" in first, iss=first.get("iss"), error=first.get("error"))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 9\r\n\r\nsigned in")
        await writer.drain()
        writer.close()
        await self.responses.put(first)

    async def redirect(self, url):
        self.authorizations += 1
        say("authorize", url=url)

    async def response(self):
        r = await self.responses.get()
        return AuthorizationCodeResult(code=r["code"], state=r.get("state"), iss=r.get("iss"))


async def main():
    url = os.environ["MCP_URL"]
    redirect_uri = f"http://127.0.0.1:{os.environ['MCP_CALLBACK_PORT']}/cb"
    callback = Callback()
    listener = await asyncio.start_server(callback.handle, "127.0.0.1", int(os.environ["MCP_CALLBACK_PORT"]))
    grants = ["authorization_code", "refresh_token"]
    preregistered = os.environ.get("MCP_OAUTH_CLIENT")
    storage = Storage(
        preregistered
        and OAuthClientInformationFull(
            client_id=preregistered,
            redirect_uris=[redirect_uri],
            grant_types=grants,
            token_endpoint_auth_method="none",
        )
    )
    provider = OAuthClientProvider(
        server_url=url,
        client_metadata=OAuthClientMetadata(
            client_name="gatehouse test client",
            redirect_uris=[redirect_uri],
            grant_types=grants,
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=callback.redirect,
        callback_handler=callback.response,
    )

    async def log(response):
        r = response.request
        challenge = response.headers.get("www-authenticate")
        say("http", method=r.method, url=str(r.url), status=response.status_code, challenge=challenge)

    http = create_mcp_http_client(auth=provider)
    http.event_hooks = {"response": [log]}

    async def echo(client):
        result = await client.call_tool("echo", {"text": "hello"})
        return json.loads(result.content[0].text)

    async with http, Client(streamable_http_client(url, http_client=http)) as client:
        say("connected", protocol=client.protocol_version)
        tools = await client.list_tools()
        say("tools", names=[t.name for t in tools.tools])
        say("echo", **(await echo(client)))

        async def progress(done, total, message):
            say("progress", progress=done, total=total)

        counted = await client.call_tool("slow_count", {"n": 5, "interval_ms": 200}, progress_callback=progress)
        say("result", text=counted.content[0].text)

        say("expire")
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        echoed = await echo(client)
        say("after-expiry", **echoed, authorizations=callback.authorizations, token_saves=storage.saves)

        step_up_tool = os.environ.get("MCP_STEP_UP_TOOL")
        if step_up_tool:
            # the SDK answers 403 insufficient_scope itself: it authorizes again with more scope
            stepped = await client.call_tool(step_up_tool, {"user": "bob"})
            say("step-up", text=stepped.content[0].text, by="sdk", authorizations=callback.authorizations)
            # the test tries the token elsewhere and revokes it; the next call meets the revocation
            say("hold", token=storage.tokens.access_token, client_id=storage.client.client_id)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
            echoed = await echo(client)
            say("after-revocation", **echoed, authorizations=callback.authorizations, token_saves=storage.saves)

        resumed = await client.call_tool("test_reconnection", {})
        say("reconnection", text=resumed.content[0].text)
    say("terminated")
    listener.close()


if __name__ == "__main__":
    asyncio.run(main())
