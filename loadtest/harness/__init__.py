"""The experiment harness: one recorded history (history.py), checkers over it (checkers.py), a verdict (verdict.py).

The shape is Jepsen's: an experiment records every operation and every
fault it injects into one history, and every figure is computed from that
history afterwards, so `python -m loadtest recheck FOLDER` recomputes a
finished run's figures and verdict, and the checkers are tested on small
hand-written histories (tests/test_checkers.py).
"""
