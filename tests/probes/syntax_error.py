def handler(event, context):
    x = (1,

return x
