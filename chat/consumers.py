"""The chat over a WebSocket, at /ws/rooms/<room>/ (docs/design/websockets.md has the protocol).

A socket lives in one process for its life. Live messages reach it only
through the channel layer, in the order the layer delivers them, never
filled in from the database while it is open: with the in-memory layer a
post on another instance never arrives, and a message the layer drops is
missing. Each message carries `prev`, the room's message before it, so the
client sees the gap and closes it by reconnecting with `?after=<its last
contiguous id>`: the replay comes from the database, then the live ones.
"""

import asyncio
import json
import logging
from urllib.parse import parse_qs

import redis
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from chat import live, services, sockets
from chat.api import message_input, post
from labcore.api import ApiError
from labcore.errors import dependency_failure
from labcore.stores import StoreUnavailable

logger = logging.getLogger(__name__)

# The largest frame a client may send; a larger one closes the socket with 1009 (message too big).
MAX_FRAME = 64 * 1024
REPLAY_PAGE = 200


class RoomConsumer(AsyncWebsocketConsumer):
    room = group = user = username = None
    joined = False  # accepted, so in the group and presence (or trying to be)
    refresher = None
    replayed_to = 0  # live messages at or below it were replayed already (or held by the client)
    shown_online = None
    closed_by_us = False  # this consumer sent its close: nothing may follow it

    async def connect(self):
        self.room = self.scope["url_route"]["kwargs"]["room"]
        self.group = f"room.{self.room}"
        refusal = self.scope.get("refusal")  # accounts/sockets.py's verdict on the Origin and the login
        if refusal and refusal["store"]:
            await self._store_failed(refusal["detail"], refusal["reason"], accepted=False)
            return
        if refusal:
            # Before accepting: the server answers the handshake with 403.
            await self.close(code=refusal["code"], reason=refusal["reason"])
            return
        try:
            after = _after(self.scope)
        except ValueError as bad:
            await self.close(code=4400, reason=str(bad))
            return
        self.user = self.scope["user"]
        self.username = self.user.get_username()
        await self.accept()
        live.opened(self)
        if live.draining():
            await self.close(code=live.GOING_AWAY, reason=live.DRAIN_REASON)
            return
        self.joined = True
        try:
            # Into the group first: whatever is posted during the replay waits in
            # this socket's queue, and is dropped below if the replay had it.
            await self.channel_layer.group_add(self.group, self.channel_name)
            await sockets.join(self.room, self.channel_name, self.username)
            await self._announce()
            # Which instance holds the socket (the status bar shows it); before the replay, and first:
            # what the layer delivers waits until connect() returns.
            await self._send({"type": "hello", "instance": settings.INSTANCE_NAME})
            if after is not None:
                self.replayed_to = await self._replay(after)
        except Exception as error:
            failure = _failure(error)
            if failure is None:
                raise
            await self._store_failed(str(failure), f"{failure.store} is unavailable", accepted=True)
            return
        self.refresher = asyncio.create_task(self._refresh())

    async def _store_failed(self, detail, reason, *, accepted):
        """Accept if need be, then close with 4503 naming the store: not a refusal, which would say "log in"."""
        logger.warning("websocket %s: %s", self.room, detail)
        if not accepted:
            await self.accept()
        await self.close(code=4503, reason=reason)

    async def _replay(self, after):
        """Send every message of the room above `after` from the database, in id order; return the last id sent."""
        while True:
            found = await database_sync_to_async(services.messages_after)(room_slug=self.room, after=after,
                                                                          limit=REPLAY_PAGE)
            for message in found:
                await self._send({"type": "message", **message.as_json()})
            if found:
                after = found[-1].id
            if len(found) < REPLAY_PAGE:
                return after

    async def receive(self, text_data=None, bytes_data=None):
        size = len(text_data.encode()) if text_data is not None else len(bytes_data)
        if size > MAX_FRAME:
            await self.close(code=1009, reason=f"a frame is at most {MAX_FRAME} bytes")
            return
        try:
            text, client_id = _post_frame(text_data)
            message, created = await database_sync_to_async(post)(room=self.room, author=self.user,
                                                                    text=text, client_id=client_id)
        except ApiError as bad:
            await self._send({"type": "error", "error": bad.message})
            return
        except Exception as error:
            failure = _failure(error)
            if failure is None:
                raise
            await self._send({"type": "error", "error": f"{failure.store} is unavailable; post again"})
            return
        if created:
            await self._deliver(message.as_json())
        await self._send({"type": "ack", "client_id": str(client_id), "id": message.id})

    async def _deliver(self, message):
        """To every socket in the room through the layer: at most once; a drop is a gap the clients see by `prev`."""
        try:
            await self.channel_layer.group_send(self.group, {"type": "chat.message", "message": message})
        except Exception as error:
            logger.warning("websocket %s: message %s stored but not sent through the layer: %r",
                           self.room, message["id"], error)

    async def chat_message(self, event):
        message = event["message"]
        if message["id"] > self.replayed_to:
            await self._send({"type": "message", **message})

    async def presence_online(self, event):
        self.shown_online = event["online"]
        await self._send({"type": "presence", "online": event["online"]})

    async def _announce(self):
        """Tell the room's sockets (this process's, or every instance's with Redis) who is online now."""
        online = await sockets.online(self.room)
        await self.channel_layer.group_send(self.group, {"type": "presence.online", "online": online})

    async def _refresh(self):
        """Keep this socket's group membership and presence entry alive; show who lapsed meanwhile."""
        while True:
            await asyncio.sleep(settings.SOCKET_EXPIRY / 3)
            try:
                await self.channel_layer.group_add(self.group, self.channel_name)
                await sockets.refresh(self.room, self.channel_name, self.username)
                online = await sockets.online(self.room)
            except Exception as error:
                logger.warning("websocket %s: presence not refreshed: %r", self.room, error)
                continue
            if online != self.shown_online:
                await self.presence_online({"online": online})

    async def disconnect(self, code):
        live.closed(self)
        if self.refresher is not None:
            self.refresher.cancel()
        if not self.joined:
            return
        try:
            await self.channel_layer.group_discard(self.group, self.channel_name)
            await sockets.leave(self.room, self.channel_name, self.username)
            await self._announce()
        except Exception as error:
            logger.warning("websocket %s: leaving: %r", self.room, error)

    async def close(self, code=None, reason=None):
        """Close once, and send nothing after it.

        uvicorn refuses any message after a websocket.close with a
        RuntimeError, which ends the consumer before disconnect() runs: its
        count in chat/live.py stays (a graceful stop then waits its whole
        drain) and its refresher goes on keeping it online. A frame for the
        socket can follow a close at any time: the drain's 1001 while the
        layer delivers a message, or a second close.
        """
        if self.closed_by_us:
            return
        self.closed_by_us = True
        await super().close(code=code, reason=reason)

    async def _send(self, frame):
        if self.closed_by_us:
            return
        try:
            await self.send(text_data=json.dumps(frame))
        except OSError:
            # The client is gone (uvicorn raises ClientDisconnected, an OSError), and its websocket.disconnect
            # is queued behind this event. Raised, it would end the consumer before disconnect() runs, leaving
            # its presence entry and its group membership (kept alive by _refresh) behind for good.
            pass


def _failure(error):
    """The StoreUnavailable behind an error of the database, a store, or the Redis channel layer; else None."""
    if isinstance(error, redis.RedisError):
        return StoreUnavailable("redis", repr(error))
    return dependency_failure(error)


def _after(scope):
    """The `after` of the query string (None without), or ValueError naming what is wrong."""
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("after")
    if values is None:
        return None
    if len(values) != 1 or not values[0].isdigit() or len(values[0]) > 18:
        raise ValueError("'after' must be one message id (digits)")
    return int(values[0])


def _post_frame(text):
    """The text and client_id of a client's frame, or ApiError naming what is wrong with it."""
    if text is None:
        raise ApiError(400, "frames must be JSON text, not binary")
    try:
        data = json.loads(text)
    except ValueError:
        raise ApiError(400, f"the frame is not JSON: {text[:60]!r}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "a frame is a JSON object with a 'type'")
    if data.get("type") != "post":
        raise ApiError(400, f"unknown type {str(data.get('type'))[:40]!r}; a client sends only 'post'")
    return message_input(data)
