"""A socket's consumer sends nothing after its own close.

uvicorn answers any ASGI message that follows a websocket.close with a
RuntimeError, which ends the consumer before its disconnect() runs: its
count in chat/live.py stays (a graceful stop waits out its whole drain) and
its refresher keeps its user online until the process exits. Seen once in
the sockets experiment's rolling restart (docs/experiments/sockets.md). The
send below keeps uvicorn's rule, so the test fails where uvicorn would.
"""

from asgiref.sync import async_to_sync

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
