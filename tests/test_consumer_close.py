"""A socket's consumer sends nothing after its own close, and a graceful stop's drain closes every socket.

uvicorn answers any ASGI message that follows a websocket.close with a
RuntimeError, which ends the consumer before its disconnect() runs: its
count in chat/live.py stays (a graceful stop waits out its whole drain) and
its refresher keeps its user online until the process exits. Seen once in
the sockets experiment's rolling restart (docs/experiments/sockets.md). The
send below keeps uvicorn's rule, so the test fails where uvicorn would.
"""

from asgiref.sync import async_to_sync
from uvicorn.protocols.utils import ClientDisconnected

from chat import live
from chat.consumers import RoomConsumer


class ServerSend:
    """An ASGI server's send as uvicorn keeps it: every message recorded, and none allowed after a close."""

    def __init__(self):
        self.messages = []

    async def __call__(self, message):
        if any(sent["type"] == "websocket.close" for sent in self.messages):
            raise RuntimeError(f"Unexpected ASGI message '{message['type']}', after sending 'websocket.close'")
        self.messages.append(message)


def test_after_its_close_a_consumer_sends_no_frame_and_no_second_close():
    consumer, send = RoomConsumer(), ServerSend()
    consumer.base_send = send

    async def closed_while_frames_arrive():
        await consumer.close(code=1001, reason="this instance is stopping; reconnect")  # the drain's close
        # Before its websocket.disconnect, the layer still delivers to it, and its refresher still runs.
        await consumer.chat_message({"message": {"id": 7, "prev": 6, "text": "late"}})
        await consumer.presence_online({"online": ["ada"]})
        await consumer.close(code=1000)

    async_to_sync(closed_while_frames_arrive)()
    assert send.messages == [{"type": "websocket.close", "code": 1001,
                              "reason": "this instance is stopping; reconnect"}]


class GoneClient(ServerSend):
    """A client that left before its close: uvicorn's send raises ClientDisconnected, an OSError."""

    async def __call__(self, message):
        raise ClientDisconnected()


def test_a_drain_closes_every_socket_though_one_client_is_gone(monkeypatch):
    monkeypatch.setattr(live, "_draining", False)  # the drain leaves it set: this process serves on
    consumers = [RoomConsumer() for _ in range(3)]
    sends = [ServerSend(), GoneClient(), ServerSend()]
    for consumer, send in zip(consumers, sends):
        consumer.base_send = send
        live.opened(consumer)
    try:
        async_to_sync(live.drain)()
    finally:
        for consumer in consumers:
            live.closed(consumer)
    going_away = {"type": "websocket.close", "code": 1001, "reason": live.DRAIN_REASON}
    assert (sends[0].messages, sends[2].messages) == ([going_away], [going_away])
