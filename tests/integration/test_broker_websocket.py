"""STOMP over WebSocket: the embedded broker and RabbitMQ's Web-STOMP, same test."""

from __future__ import annotations

import asyncio
import uuid
import aiohttp

from broker.client import BrokerAddress
from broker.core import BrokerLimits
from broker.frames import Frame, encode_frame
from broker.parser import FrameParser
from tests.waiting import eventually

from .conftest import collecting_client, start_embedded

SERVER_COMMANDS = frozenset({"CONNECTED", "MESSAGE", "RECEIPT", "ERROR"})


async def _ws_session(url: str, topic: str, publish: "asyncio.Future[None]") -> list[Frame]:
    parser = FrameParser(commands=SERVER_COMMANDS)
    frames: list[Frame] = []

    async def next_frame(ws: aiohttp.ClientWebSocketResponse) -> Frame:
        while not frames:
            msg = await asyncio.wait_for(ws.receive(), 10)
            data = msg.data.encode() if msg.type == aiohttp.WSMsgType.TEXT else msg.data
            frames.extend(parser.feed(data))
        return frames.pop(0)

    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(url, protocols=("v12.stomp", "v11.stomp")) as ws:
            assert ws.protocol in ("v12.stomp", "v11.stomp")
            # Two frames in one WebSocket message is allowed.
            connect = encode_frame(Frame("CONNECT", {"accept-version": "1.2", "host": "/", "login": "guest",
                                                     "passcode": "guest", "heart-beat": "0,0"}))
            await ws.send_str(connect.decode())
            connected = await next_frame(ws)
            assert connected.command == "CONNECTED", connected
            parser.version = connected.headers["version"]
            await ws.send_str(encode_frame(Frame("SUBSCRIBE", {"destination": f"/topic/{topic}", "id": "0",
                                                               "receipt": "sub"})).decode())
            assert (await next_frame(ws)).headers["receipt-id"] == "sub"
            publish.set_result(None)
            message = await next_frame(ws)
            # Two frames in one WebSocket message; each gets its receipt.
            await ws.send_str("".join(
                encode_frame(Frame("SEND", {"destination": f"/topic/{topic}.back", "receipt": r}, b"from ws")).decode()
                for r in ("r1", "r2")))
            receipts = [await next_frame(ws), await next_frame(ws)]
            return [connected, message, *receipts]


def test_websocket_subscriber_gets_tcp_publications_and_publishes_back(ws_target: tuple[str, BrokerAddress]) -> None:
    url, address = ws_target
    topic = f"ws.{uuid.uuid4().hex[:8]}"
    tcp, back = collecting_client(address, f"/topic/{topic}.back")

    async def main() -> list[Frame]:
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        session = asyncio.create_task(_ws_session(url, topic, ready))
        await ready
        await asyncio.to_thread(tcp.publish, f"/topic/{topic}", {"hello": "browser"})
        return await asyncio.wait_for(session, 20)

    try:
        connected, message, *receipts = asyncio.run(main())
        assert message.command == "MESSAGE" and message.body == b'{"hello":"browser"}'
        assert [r.headers["receipt-id"] for r in receipts] == ["r1", "r2"]
        # Receipts to the WebSocket say the broker took them; delivery to the TCP client is another hop.
        eventually(lambda: len(back) >= 2, timeout_s=5, what="both publications from the WebSocket")
        assert back == [b"from ws", b"from ws"]
    finally:
        tcp.close()


def test_websocket_refuses_non_stomp_garbage_without_harming_others() -> None:
    thread = start_embedded()
    try:
        async def main() -> str:
            async with aiohttp.ClientSession() as http:
                async with http.ws_connect(f"ws://127.0.0.1:{thread.websocket_port}/stomp",
                                           protocols=("v12.stomp",)) as ws:
                    await ws.send_bytes(b"\x00\xffnot stomp\n\n\x00")
                    msg = await asyncio.wait_for(ws.receive(), 10)
                    text = msg.data if isinstance(msg.data, str) else msg.data.decode("utf-8", "replace")
                    closing = await asyncio.wait_for(ws.receive(), 10)
                    assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                            aiohttp.WSMsgType.CLOSING)
                    return text

        text = asyncio.run(main())
        assert text.startswith("ERROR\n")
        core = thread.broker.core
        assert core is not None
        assert thread.call(lambda: len(core.sessions)) == 0
    finally:
        thread.stop()


def test_a_websocket_publisher_is_paused_by_the_memory_alarm_and_resumed() -> None:
    thread = start_embedded(BrokerLimits(max_held_bytes=64 * 1024))
    core = thread.broker.core
    assert core is not None
    consumer, got = collecting_client(BrokerAddress("127.0.0.1", thread.broker.port, "guest", "guest"),
                                      "/topic/unused")
    try:
        async def main() -> Frame:
            parser = FrameParser(commands=SERVER_COMMANDS)
            async with aiohttp.ClientSession() as http:
                async with http.ws_connect(f"ws://127.0.0.1:{thread.websocket_port}/stomp",
                                           protocols=("v12.stomp",)) as ws:
                    await ws.send_str(encode_frame(Frame("CONNECT", {"accept-version": "1.2", "host": "/",
                                                                     "login": "app", "passcode": "app-pass",
                                                                     "heart-beat": "0,0"})).decode())
                    parser.feed((await ws.receive()).data.encode())
                    for i in range(100):
                        await ws.send_str(encode_frame(Frame("SEND", {"destination": "/queue/parked"},
                                                             b"x" * 1024)).decode())
                    await ws.send_str(encode_frame(Frame("SEND", {"destination": "/queue/parked",
                                                                  "receipt": "last"}, b"last")).decode())
                    await asyncio.to_thread(eventually, lambda: thread.call(
                        lambda: core.stats()["paused_publishers"]) == 1, timeout_s=10, what="the publisher paused")
                    drained: list[bytes] = []
                    await asyncio.to_thread(consumer.subscribe, "/queue/parked",
                                            lambda m: drained.append(m.body), receipt=True)
                    msg = await asyncio.wait_for(ws.receive(), 20)
                    (receipt,) = parser.feed(msg.data.encode())
                    await asyncio.to_thread(eventually, lambda: len(drained) == 101, timeout_s=10,
                                            what="every message parked while paused")
                    return receipt

        receipt = asyncio.run(main())
        assert receipt.headers["receipt-id"] == "last" and got == []
        assert thread.call(lambda: core.stats()["paused_publishers"]) == 0
    finally:
        consumer.close()
        thread.stop()
