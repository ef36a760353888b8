"""Where deploy takes its ports (deploy/layout.py): below the kernel's ephemeral range, blocks and single ports apart.

No server: the ranges are read with the ephemeral range monkeypatched, and ports are only checked free.
"""

import pytest

from deploy import layout


@pytest.mark.parametrize("ephemeral", [32768, 20000])
def test_single_ports_and_blocks_lie_below_the_ephemeral_range_and_apart(monkeypatch, ephemeral):
    monkeypatch.setattr(layout, "ephemeral_ports", lambda: (ephemeral, 60999))
    starts, single = layout.port_ranges()
    assert single == range(ephemeral - layout.SINGLE_PORTS, ephemeral)
    assert starts.start == layout.LOWEST_PORT and starts.stop - 1 + layout.BLOCK <= single.start
    ports = [layout.free_port() for _ in range(50)]
    assert all(port in single for port in ports) and len(set(ports)) == 50, "never a port it gave just before"
    base = layout.free_base_port()
    assert base in starts and base + layout.BLOCK <= single.start


def test_an_ephemeral_range_that_leaves_no_room_is_refused_naming_the_setting(monkeypatch):
    monkeypatch.setattr(layout, "ephemeral_ports", lambda: (12000, 60999))
    for take in (layout.free_port, layout.free_base_port):
        with pytest.raises(RuntimeError, match="ephemeral ports start at 12000: .*ip_local_port_range"):
            take()
