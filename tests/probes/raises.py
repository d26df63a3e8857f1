def handler(event, context):
    raise ValueError("boom from probe")
