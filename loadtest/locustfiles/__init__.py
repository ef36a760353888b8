"""What `locust -f` loads: the chat users (journeys.py), the WebSocket chatters (sockets.py) and the capacity
step's load shape (capacity_shape.py).

Give Locust the file: `locust -f loadtest/locustfiles/journeys.py`. The
folder alone (`-f loadtest/locustfiles`) would load the capacity shape too,
which turns any run into a capacity step; the experiments name both files
when they want both.
"""
