"""The MCP scenario with the official Python SDK (`mcp`): initialize, list
tools, call tools with valid and invalid input, with and without a token.

usage: mcp_scenario.py URL TOKEN
prints one JSON object.
"""
import asyncio
import json
import sys

from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client
from mcp.shared.exceptions import McpError

url, token = sys.argv[1], sys.argv[2]


def result(r):
    return {
        "isError": r.isError,
        "structured": r.structuredContent,
        "text": r.content[0].text if r.content else None,
    }


async def main():
    out = {}
    headers = {"authorization": f"Bearer {token}"}
    async with streamablehttp_client(url, headers=headers) as (read, write, _):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            out["protocol"] = init.protocolVersion
            out["server"] = init.serverInfo.name
            listed = (await session.list_tools()).tools
            out["tools"] = sorted(t.name for t in listed)
            by_name = {t.name: t for t in listed}
            get_user = by_name["shop_user_v1_UserService_GetUser"]
            out["get_user_tool"] = {
                "description": get_user.description,
                "input": get_user.inputSchema,
                "read_only": get_user.annotations.readOnlyHint if get_user.annotations else None,
            }
            out["get_user"] = result(await session.call_tool(get_user.name, {"id": 1}))
            out["invalid"] = result(await session.call_tool(get_user.name, {"id": "one"}))
            out["get_order"] = result(
                await session.call_tool(
                    "shop_order_v1_OrderService_GetOrder", {"name": "users/1/orders/1001"}
                )
            )
            out["watch"] = result(
                await session.call_tool(
                    "shop_order_v1_OrderService_WatchOrder", {"name": "users/2/orders/1003"}
                )
            )
            try:
                await session.call_tool("no_such_tool", {})
                out["unknown"] = None
            except McpError as e:
                out["unknown"] = {"code": e.error.code, "message": e.error.message}
    async with streamablehttp_client(url) as (read, write, _):
        async with ClientSession(read, write) as session:
            await session.initialize()
            out["anonymous"] = result(
                await session.call_tool(
                    "shop_order_v1_OrderService_GetOrder", {"name": "users/1/orders/1001"}
                )
            )
    print(json.dumps(out))


asyncio.run(main())
