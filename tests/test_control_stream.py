"""GET /api/events (control/views.py) while another thread holds the room's lock: the event loop runs on."""

import asyncio
import threading

from control.room import Room
from control.views import _stream

HOLD = 30  # seconds: the longest the lock is held if the loop never lets it go


def test_the_stream_waits_for_the_rooms_lock_off_the_event_loop(tmp_path):
    room = Room(state_dir=tmp_path / "cluster", runs_dir=tmp_path / "runs")
    held, release, let_go_by_loop = threading.Event(), threading.Event(), []

    def holder():  # as a down stopping the load would, for as long as the loop does not say otherwise
        with room.lock:
            held.set()
            let_go_by_loop.append(release.wait(HOLD))

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert held.wait(HOLD)

        async def main():
            stream = asyncio.ensure_future(_stream(room).__anext__())
            await asyncio.sleep(0)  # the stream runs up to its look at the room's source
            release.set()  # only reached while the stream waits for the lock if that wait is off the loop
            stream.cancel()

        asyncio.run(main())
    finally:
        release.set()
        thread.join(HOLD)
    assert let_go_by_loop == [True], f"the event loop stood still for {HOLD} s waiting for the room's lock"
