"""Returns its event, logs a line, and answers to two handler names."""
import time


def handler(event, context):
    print("log line from echo")
    return {"event": event, "time": time.time(), "function": context.function_name}


def f(event, context):
    return {"handler": "f", "event": event}
