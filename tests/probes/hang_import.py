"""A function whose import does not finish (a module body that waits on something that never
comes), bounded at 60 s so that nothing is left waiting if no timeout fires.
"""
import time

for _ in range(600):
    time.sleep(0.1)


def handler(event, context):
    return "imported"
