"""Run code in a kernel of a live single-user server, through the proxy, the way JupyterLab does
(REST to start the kernel, the Jupyter messaging protocol over its websocket)."""
from __future__ import annotations

import asyncio
import json
import uuid

import requests
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect


def run_code(base_url: str, token: str, code: str, timeout: float = 60) -> str:
    """``base_url`` is the server's URL (``http://127.0.0.1:PORT/user/NAME/SERVER/``); returns stdout."""
    h = {"Authorization": f"token {token}"}
    r = requests.post(base_url + "api/kernels", headers=h, json={"name": "python3"}, timeout=timeout)
    r.raise_for_status()
    kernel_id = r.json()["id"]
    try:
        return asyncio.run(asyncio.wait_for(_execute(base_url, token, kernel_id, code), timeout))
    finally:
        requests.delete(base_url + f"api/kernels/{kernel_id}", headers=h, timeout=timeout)


async def _execute(base_url: str, token: str, kernel_id: str, code: str) -> str:
    ws_url = base_url.replace("http://", "ws://") + f"api/kernels/{kernel_id}/channels"
    conn = await websocket_connect(HTTPRequest(ws_url, headers={"Authorization": f"token {token}"}))
    msg_id = uuid.uuid4().hex
    conn.write_message(json.dumps({
        "header": {"msg_id": msg_id, "username": "test", "session": uuid.uuid4().hex,
                   "msg_type": "execute_request", "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell",
        "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True},
    }))
    out, done_reply, done_idle = [], False, False
    while not (done_reply and done_idle):
        raw = await conn.read_message()
        if raw is None:
            raise RuntimeError("kernel websocket closed")
        msg = json.loads(raw)
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        t = msg["header"]["msg_type"]
        if t == "stream":
            out.append(msg["content"]["text"])
        elif t == "error":
            raise RuntimeError(f"{msg['content']['ename']}: {msg['content']['evalue']}")
        elif t == "execute_reply":
            done_reply = True
        elif t == "status" and msg["content"]["execution_state"] == "idle":
            done_idle = True
    conn.close()
    return "".join(out)
