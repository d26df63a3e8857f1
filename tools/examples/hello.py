"""The example function: returns a greeting and the current time, like the
trivial function of the 2017 serverless evaluation."""
import time


def handler(event, context):
    name = event.get("name", "world") if isinstance(event, dict) else "world"
    return {"message": f"hello, {name}", "time": time.time()}
