"""Never returns: the wall-clock timeout must end it."""


def handler(event, context):
    while True:
        pass
